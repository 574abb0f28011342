"""torchrun on CPU: FSDP2 + gloo matches a single process; a 2-process checkpoint resumes on 1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from train_testlib import random_docs, tiny_config, write_token_dataset

from olmoflow.model import load
from olmoflow.train import TrainConfig, pretrain
from olmoflow.train.metrics import read_metrics

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.mark.slow
def test_fsdp_two_processes_match_one_and_resume_on_one(tmp_path):
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(200, 0), "code": random_docs(80, 1)})
    # 256 tokens/step = seq 32 × micro 2 × accum 2 × 2 processes (accum 4 on one process); grad norms
    # are ~1-2, so clipping at 0.5 acts every step and needs the global norm over both shards. The
    # fused loss (chunks of 24 of a micro batch's 64 tokens) runs inside the FSDP root's forward.
    base = tiny_config(tmp_path / "fsdp", data, steps=6, global_batch_tokens=256, checkpoint={"every": 3},
                       optimizer={"lr": 3e-3, "grad_clip": 0.5}, loss_impl="fused", loss_chunk_tokens=24)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(base))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "olmoflow.cli", "pretrain", "--config", str(cfg_file), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    # the 2-process run also checkpoints activations: the same losses as the plain 1-process run
    res = subprocess.run(cmd + ["activation_checkpointing=true"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ref = pretrain(TrainConfig.model_validate({**base, "run_dir": str(tmp_path / "single")}), quiet=True)

    def losses(run):
        return [r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl")]

    def close(a, b, rel=1e-5):  # fp32 reduction order differs between 1 and 2 processes
        return abs(a - b) <= rel * abs(b)

    two, one = losses("fsdp"), losses("single")
    assert len(two) == len(one) == 6
    assert max(abs(a - b) for a, b in zip(two, one)) < 1e-4
    m2, m1 = read_metrics(tmp_path / "fsdp" / "metrics.jsonl"), read_metrics(tmp_path / "single" / "metrics.jsonl")
    for r2, r1 in zip(m2, m1):
        assert close(r2["loss"], r1["loss"]) and close(r2["grad_norm"], r1["grad_norm"]), (r2, r1)
        assert (r2["lr"], r2["tokens"]) == (r1["lr"], r1["tokens"])
    # consolidated weights written by rank 0 load as a plain model and match the single-process run
    w2, w1 = load(tmp_path / "fsdp" / "final").state_dict(), load(tmp_path / "single" / "final").state_dict()
    assert max(float((w2[k] - w1[k]).abs().max()) for k in w1) < 1e-4
    # resume the 2-process step-3 checkpoint in 1 process: steps 4-6 follow the same curve
    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "fsdp" / "checkpoints" / "step-3", tmp_path / "resumed" / "checkpoints" / "step-3")
    out = pretrain(TrainConfig.model_validate({**base, "run_dir": str(tmp_path / "resumed")}), quiet=True,
                   resume=True)
    assert out["step"] == 6
    resumed = read_metrics(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [4, 5, 6]
    assert max(abs(r["loss"] - b) for r, b in zip(resumed, one[3:])) < 1e-4
    assert all(close(r["loss"], b["loss"]) and close(r["grad_norm"], b["grad_norm"]) for r, b in zip(resumed, m1[3:]))
    assert abs(out["loss"] - ref["loss"]) < 1e-4
    assert torch.isfinite(torch.tensor(two)).all()
    # and the other way: the 1-process step-3 checkpoint resumes under torchrun with 2 processes
    (tmp_path / "up" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "single" / "checkpoints" / "step-3", tmp_path / "up" / "checkpoints" / "step-3")
    res = subprocess.run(cmd + ["--resume", f"run_dir={tmp_path / 'up'}"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    up = read_metrics(tmp_path / "up" / "metrics.jsonl")
    assert [r["step"] for r in up] == [4, 5, 6]
    assert max(abs(r["loss"] - b) for r, b in zip(up, one[3:])) < 1e-4
    assert all(close(r["loss"], b["loss"]) and close(r["grad_norm"], b["grad_norm"]) for r, b in zip(up, m1[3:]))


@pytest.mark.slow
def test_error_on_one_rank_stops_all_ranks_with_one_line(tmp_path):
    """Rank 0 alone fails (it cannot create the checkpoint dir, as on a full disk) while rank 1
    waits in a collective: the run ends promptly with the failing rank's one-line error and a
    one-line note from the other rank, not a hang until the collective timeout or a traceback."""
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(60, 0)})
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").write_text("not a directory")  # only rank 0 creates the checkpoint dir
    cfg = tiny_config(run, data, steps=2, global_batch_tokens=128, checkpoint={"every": 1})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "olmoflow.cli", "pretrain", "--config", str(cfg_file), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    try:
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("an error on one rank left the torchrun job hanging")
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("olmoflow pretrain: error:")]
    assert any(str(run / "checkpoints") in ln for ln in errors), res.stderr[-3000:]
    assert "[rank1]: Traceback" not in res.stderr and "[rank0]: Traceback" not in res.stderr, res.stderr[-3000:]
