"""Shared helpers for flow tests: a toy flow built from the test-only stage types in toy_stages.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

TOY_PLUGIN = str(Path(__file__).with_name("toy_stages.py").resolve())
REPO = Path(__file__).resolve().parents[2]


def make_toy_flow(**stage_config) -> dict:
    """corpus -> curate -> vocab ; (curate, vocab) -> train -> eval.  ``train={...}`` updates a stage config."""
    flow = {
        "name": "toy",
        "seed": 7,
        "plugins": [TOY_PLUGIN],
        "stages": {
            "corpus": {"type": "toy_source", "config": {"n_docs": 30}, "inputs": {"seed_text": "raw.txt"}},
            "curate": {"type": "toy_curate", "config": {"max_words": 10}, "inputs": {"docs": "${stages.corpus}"}},
            "vocab": {"type": "toy_vocab", "inputs": {"docs": {"stage": "curate"}}},
            "train": {"type": "toy_train", "config": {"steps": 4, "checkpoint_every": 2},
                      "inputs": {"data": "${stages.curate}", "vocab": "${stages.vocab}"}},
            "eval": {"type": "toy_eval", "inputs": {"model": "${stages.train}"}},
        },
    }
    for name, cfg in stage_config.items():
        flow["stages"][name]["config"].update(cfg)
    return flow


@pytest.fixture
def flow_file(tmp_path: Path):
    """Write a toy flow (plus its raw source file) into tmp_path/flowdir and return a writer."""
    d = tmp_path / "flowdir"
    d.mkdir()
    (d / "raw.txt").write_text("raw source line one\nraw source line two\n")

    def write(flow: dict | None = None, name: str = "toy.yaml") -> Path:
        p = d / name
        p.write_text(yaml.safe_dump(flow or make_toy_flow(), sort_keys=False))
        return p

    return write


def _cli_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real ``olmoflow`` CLI in a subprocess."""
    p = subprocess.run([sys.executable, "-m", "olmoflow.cli", *args], capture_output=True, text=True,
                       cwd=cwd, env=_cli_env(), timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"olmoflow {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def sigkill_run_when(flow: Path, workdir: Path, pattern: str, timeout_s: float = 120) -> None:
    """Start ``olmoflow run FLOW`` in a subprocess and SIGKILL it as soon as a file matching
    ``pattern`` (a glob under ``workdir``) exists: a run killed mid-stage, as by the OOM killer."""
    proc = subprocess.Popen([sys.executable, "-m", "olmoflow.cli", "run", str(flow), "--workdir", str(workdir),
                             "--quiet"], env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + timeout_s
        while not list(workdir.glob(pattern)):
            assert proc.poll() is None, "run ended before it could be killed:\n" + proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, f"no {pattern} after {timeout_s} s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def toy_flow():
    """The toy flow builder: ``toy_flow(train={"steps": 6})``."""
    return make_toy_flow


@pytest.fixture
def cli():
    """Run the real ``olmoflow`` CLI in a subprocess: ``cli("run", path, check=False)``."""
    return run_cli


@pytest.fixture
def sigkill_run():
    """``sigkill_run(flow_path, workdir, glob)``: run a flow and SIGKILL it once ``glob`` exists."""
    return sigkill_run_when


@pytest.fixture
def one_thread(monkeypatch):
    """One intra-op thread here and in subprocesses, so in-process and CLI runs compare bit for bit."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
