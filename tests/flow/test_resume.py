"""A killed training stage resumes from its latest complete checkpoint when the flow is re-run,
and ends with the same artifact an uninterrupted run produces (CPU, same flow and seed)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from olmoflow.flow import StageFailed, load_flow, run_flow
from olmoflow.flow.store import read_manifest

TOY_PLUGIN = str(Path(__file__).with_name("toy_stages.py").resolve())
STEPS, EVERY = 30, 5


def _pretrain_flow() -> dict:
    """A toy token dataset -> a real ``pretrain`` stage (tiny-1m, a few ms per step)."""
    return {
        "name": "resume",
        "seed": 3,
        "plugins": [TOY_PLUGIN],
        "stages": {
            "tokens": {"type": "toy_tokens", "config": {"vocab_size": 256, "n_docs": 200}},
            "pretrain": {"type": "pretrain",
                         "config": {"model": "tiny-1m", "model_overrides": {"vocab_size": 256}, "seq_len": 32,
                                    "micro_batch": 2, "global_batch_tokens": 64, "steps": STEPS,
                                    "checkpoint": {"every": EVERY}},
                         "inputs": {"data": "${stages.tokens}"}},
        },
    }


def _run_captured(path: Path, workdir: Path, *overrides: str):
    """run_flow in this process; returns (result, what it printed)."""
    buf = io.StringIO()
    res = run_flow(load_flow(path, list(overrides)), workdir, quiet=True, console=Console(file=buf, width=200))
    return res, buf.getvalue()


def _complete_steps(ckpt_root: Path) -> list[int]:
    return sorted(int(p.parent.name[5:]) for p in ckpt_root.glob("step-*/manifest.json"))


def _curve(run_dir: Path) -> list[tuple]:
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["z_loss"], r["grad_norm"], r["lr"], r["tokens"], r["skipped"]) for r in recs]


def test_killed_pretrain_stage_resumes_from_its_checkpoint_bit_identically(flow_file, tmp_path, cli, one_thread,
                                                                           sigkill_run):
    path = flow_file(_pretrain_flow())
    wd = tmp_path / "w"
    sigkill_run(path, wd, f"artifacts/pretrain-*/checkpoints/step-{EVERY}/manifest.json")
    (left,) = (wd / "artifacts").glob("pretrain-*")
    assert not (left / "COMPLETE").exists()
    steps = _complete_steps(left / "checkpoints")
    assert steps and steps[-1] < STEPS, "the run finished before it was killed"
    latest = steps[-1]
    # a torn save (no manifest) newer than every complete checkpoint must be ignored, not loaded
    torn = left / "checkpoints" / f"step-{latest + EVERY}"
    torn.mkdir(exist_ok=True)
    (torn / "manifest.json").unlink(missing_ok=True)
    (torn / "model.safetensors").write_bytes(b"torn")

    # (c) another config is another stage key: it starts from step 0; the leftover stays resumable
    changed, out = _run_captured(path, wd, "pretrain.steps=10")
    assert "resuming from" not in out
    assert f"stage pretrain: not resuming artifacts/{left.name}" in out
    new = changed.stages["pretrain"].artifact_dir
    assert new != left and read_manifest(new)["resumed_from_step"] is None
    assert [r[0] for r in _curve(new)] == list(range(1, 11))
    assert not (left / "COMPLETE").exists() and _complete_steps(left / "checkpoints") == steps

    # (a) the same flow again (real CLI): resumes from the latest complete checkpoint and finishes
    p = cli("run", str(path), "--workdir", str(wd))
    assert f"stage pretrain: resuming from step {latest} (of {STEPS}) in artifacts/{left.name}" in p.stdout
    assert "1 stage(s) run, 1 cached" in p.stdout
    m = read_manifest(left)
    assert m["resumed_from_step"] == latest and (left / "COMPLETE").is_file()
    events = [json.loads(x) for x in (left / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "resume"] == [latest]

    # (b) equal to an uninterrupted run: weights bytes, metrics curve, artifact id
    ref = run_flow(load_flow(path), tmp_path / "ref", quiet=True)
    ref_dir = ref.stages["pretrain"].artifact_dir
    assert (left / "final" / "model.safetensors").read_bytes() == (ref_dir / "final" / "model.safetensors").read_bytes()
    assert _curve(left) == _curve(ref_dir) and len(_curve(left)) == STEPS
    assert m["id"] == ref.ids()["pretrain"]
    assert m["metrics"] == read_manifest(ref_dir)["metrics"]
    assert read_manifest(ref_dir)["resumed_from_step"] is None


def test_resumable_stage_resumes_only_its_own_leftover_with_a_checkpoint(flow_file, toy_flow, tmp_path,
                                                                         monkeypatch):
    """Runner rules, with a fast toy stage that resumes (same hook as pretrain)."""
    flow = toy_flow(train={"steps": 6})
    flow["stages"]["train"]["type"] = "toy_train_resumable"
    path, wd = flow_file(flow), tmp_path / "w"
    clean = run_flow(load_flow(path), tmp_path / "clean", quiet=True)

    def interrupted(at_step: int) -> Path:
        monkeypatch.setenv("TOY_FAIL_AT_STEP", str(at_step))  # not in the config: the stage key is unchanged
        with pytest.raises(StageFailed, match=f"toy failure at step {at_step}"):
            run_flow(load_flow(path), wd, quiet=True)
        monkeypatch.delenv("TOY_FAIL_AT_STEP")
        (left,) = [d for d in (wd / "artifacts").glob("train-*") if not (d / "COMPLETE").exists()]
        return left

    # no complete checkpoint yet (every 2 steps): started over
    left = interrupted(1)
    res, out = _run_captured(path, wd)
    assert f"stage train: the interrupted run in artifacts/{left.name} left no complete checkpoint" in out
    assert read_manifest(left)["resumed_from_step"] is None and res.ids() == clean.ids()

    # a leftover whose record is not this stage key's (e.g. from an older olmoflow): wiped, not resumed
    shutil.rmtree(left)
    left = interrupted(5)
    record = json.loads((left / ".stage.json").read_text())
    (left / ".stage.json").write_text(json.dumps({**record, "cache_key": "0" * 64}))
    res, out = _run_captured(path, wd)
    assert f"stage train: artifacts/{left.name} was not written by this stage's config" in out
    assert "resuming from" not in out and read_manifest(left)["resumed_from_step"] is None

    # its own leftover: resumed from the latest checkpoint (step 4); the artifact is a clean run's
    shutil.rmtree(left)
    left = interrupted(5)
    assert (left / "error.txt").is_file()
    res, out = _run_captured(path, wd)
    assert f"stage train: resuming from step 4 (of 6) in artifacts/{left.name} (checkpoints/step4)" in out
    assert res.executed == ["train"] and res.ids() == clean.ids()  # eval: cached, same train artifact
    assert read_manifest(left)["resumed_from_step"] == 4
    assert not (left / "error.txt").exists() and not (left / ".stage.json").exists()
