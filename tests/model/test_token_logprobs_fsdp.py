"""``Olmo.forward(targets=...)`` under FSDP2 (2 processes, gloo, CPU): the head weight saved for the
recomputing backward is the unsharded one, and the reduced gradients equal one process's over the
whole batch (a GRPO-like objective of the per-token log-probs, entropy and logsumexp)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from olmoflow.model import ModelConfig, Olmo

CFG = dict(flavor="olmo3", vocab_size=96, eos_token_id=0, pad_token_id=1, d_model=32, n_layers=2, n_heads=4,
           n_kv_heads=2, mlp_hidden=64, max_seq_len=64, sliding_window=8)


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 96, (4, 12), generator=g)
    targets = ids.roll(-1, 1)
    targets[:, -1] = -100
    targets[1, :5] = -100
    adv = torch.randn(4, 12, generator=g)
    return ids, targets, adv


def _objective(m: Olmo, ids, targets, adv, n_global: int) -> torch.Tensor:
    out = m(ids, targets=targets, return_entropy=True, loss_chunk=7)
    mask = (targets != -100).float()
    ratio = (out["logp"] - out["logp"].detach()).exp()
    return (-(ratio * adv * mask).sum() - 0.01 * (out["entropy"] * mask).sum() + 1e-3 * out["lse"].pow(2).sum()) / n_global


def _model() -> Olmo:
    torch.manual_seed(0)
    return Olmo(ModelConfig(**CFG)).train()


def _worker(rank: int, world: int, port: int, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from olmoflow.train.distributed import apply_fsdp

        m = apply_fsdp(_model(), torch.device("cpu"), bf16=False)
        ids, targets, adv = _batch()
        n_global = int((targets != -100).sum())
        rows = slice(rank * 2, rank * 2 + 2)
        # FSDP2 averages gradients over ranks: scale by the world size, as the trainer does
        (_objective(m, ids[rows], targets[rows], adv[rows], n_global) * world).backward()
        grads = {n: p.grad.full_tensor() for n, p in m.named_parameters()}
        if rank == 0:
            torch.save(grads, out_path)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fsdp_two_processes_match_one(tmp_path):
    out = tmp_path / "grads.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    sharded = torch.load(out)
    m = _model()
    ids, targets, adv = _batch()
    _objective(m, ids, targets, adv, int((targets != -100).sum())).backward()
    rel = {n: float((sharded[n].double() - p.grad.double()).abs().max() / p.grad.double().abs().max())
           for n, p in m.named_parameters()}
    assert max(rel.values()) <= 1e-5, rel
