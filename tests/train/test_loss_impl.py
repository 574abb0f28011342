"""``loss_impl``: the fused chunked LM-head loss trains like the plain logits loss and is deterministic."""

from __future__ import annotations

import torch
from train_testlib import random_docs, tiny_config, write_token_dataset

from olmoflow.model import get_preset, load
from olmoflow.train import TrainConfig, pretrain
from olmoflow.train.metrics import read_metrics
from olmoflow.train.trainer import estimate_memory


def _run(tmp_path, data, val, name: str, **kw) -> tuple[list[dict], dict[str, torch.Tensor]]:
    # packed mode: doc_ids and ignored label rows; 2 micro batches per step; val loss at steps 2 and 4
    cfg = tiny_config(tmp_path / name, data, steps=4, eval_every=2, eval_batches=2,
                      data={"paths": [str(data)], "val_paths": [str(val)], "mode": "packed"}, **kw)
    pretrain(TrainConfig.model_validate(cfg), quiet=True)
    return read_metrics(tmp_path / name / "metrics.jsonl"), load(tmp_path / name / "final").state_dict()


def test_fused_loss_trains_like_logits_loss_and_is_deterministic(tmp_path):
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(80, 0), "code": random_docs(40, 1)})
    val = write_token_dataset(tmp_path / "val", {"web": random_docs(20, 5)})
    assert TrainConfig(steps=1).loss_impl == "fused"  # the default
    # 24 rows per chunk: 64 tokens per micro batch are 3 chunks, the last one partial
    fused, w_fused = _run(tmp_path, data, val, "fused", loss_impl="fused", loss_chunk_tokens=24)
    plain, w_plain = _run(tmp_path, data, val, "plain", loss_impl="logits")
    assert len(fused) == len(plain) == 4
    for f, p in zip(fused, plain):
        for key in ("loss", "z_loss") + (("val_loss",) if "val_loss" in p else ()):
            assert abs(f[key] - p[key]) <= 1e-5 * abs(p[key]), (key, f, p)
        # step 1's gradient is of the same weights: float32 rounding only; later steps start from weights
        # that Adam moved apart by up to ~5e-5 (below), which the gradient norm sees (measured 3e-5 relative on one CPU)
        tol = 1e-5 if f["step"] == 1 else 1e-4
        assert abs(f["grad_norm"] - p["grad_norm"]) <= tol * abs(p["grad_norm"]), (f, p)
    assert [("val_loss" in r) for r in fused] == [False, True, False, True]
    # Adam normalises each element's step, so elements whose gradient is ~0 turn float32 rounding
    # into visible moves (observed 5e-5 on ~0.1% of weights, and 1.5e-4 on another CPU's MKL kernels,
    # the code before the trainer split included; lr 3e-3, 4 steps): far below a real difference (~lr)
    assert max(float((w_fused[k] - w_plain[k]).abs().max()) for k in w_plain) < 5e-4
    # the same fused run again: byte-identical weights and losses
    again, w_again = _run(tmp_path, data, val, "again", loss_impl="fused", loss_chunk_tokens=24)
    assert all(torch.equal(w_again[k], w_fused[k]) for k in w_fused)
    assert [(r["loss"], r["grad_norm"]) for r in again] == [(r["loss"], r["grad_norm"]) for r in fused]


def test_memory_estimate_counts_one_chunk_of_logits():
    model = get_preset("olmo3-7b")
    cfg = dict(steps=1, seq_len=8192, micro_batch=1)
    fused = estimate_memory(model, TrainConfig(**cfg, loss_chunk_tokens=1024), 1, bf16=True)
    plain = estimate_memory(model, TrainConfig(**cfg, loss_impl="logits"), 1, bf16=True)
    assert plain["logits_gib"] == 8 * fused["logits_gib"]
