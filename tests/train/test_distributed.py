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
    # 256 tokens/step = seq 32 × micro 2 × accum 2 × 2 processes (accum 4 on one process)
    base = tiny_config(tmp_path / "fsdp", data, steps=6, global_batch_tokens=256, checkpoint={"every": 3})
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(base))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "olmoflow.cli", "pretrain", "--config", str(cfg_file), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ref = pretrain(TrainConfig.model_validate({**base, "run_dir": str(tmp_path / "single")}), quiet=True)

    def losses(run):
        return [r["loss"] for r in read_metrics(tmp_path / run / "metrics.jsonl")]

    two, one = losses("fsdp"), losses("single")
    assert len(two) == len(one) == 6
    assert max(abs(a - b) for a, b in zip(two, one)) < 1e-4
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
