"""The language-modelling objective: next-token cross-entropy + z-loss over token datasets.

Used by pretraining, midtraining and long-context extension (the same objective on another mix,
sequence length or RoPE). Batches come from a seeded :class:`MixtureSampler` over token datasets
(fixed-length chunks or packed whole documents with intra-document attention); the normalizer is
the number of target tokens, so the loss is the token mean over the global batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from olmoflow.errors import OlmoflowError
from olmoflow.train.config import TrainConfig, batch_plan
from olmoflow.train.data import (
    IGNORE_INDEX,
    DataPosition,
    MixtureSampler,
    build_sources,
    collate,
    open_token_dataset,
)
from olmoflow.train.objective import Objective, RunContext

__all__ = ["LMObjective", "describe_data", "load_token_data"]


def load_token_data(paths: list[str], vocab_size: int, key: str):
    """Open the token datasets at ``paths`` (checked against the model's vocabulary)."""
    if not paths:
        raise OlmoflowError(f"key '{key}': no token dataset given")
    return [open_token_dataset(p, vocab_size) for p in paths]


def describe_data(cfg: TrainConfig, vocab_size: int, total_tokens: int) -> dict[str, Any]:
    """What ``--dry-run`` says about the data; fails like the start of training would."""
    datasets = load_token_data(cfg.data.paths, vocab_size, "data.paths")
    names = sorted({shard.source for ds in datasets for shard in ds.shards})
    unknown = sorted(set(cfg.data.mixture) - set(names))
    if unknown:  # the check MixtureSampler makes at the start of training
        raise OlmoflowError(f"data.mixture names unknown source(s) {unknown} (available: {names})")
    n_tokens = sum(ds.n_tokens for ds in datasets)
    if cfg.data.val_paths:
        load_token_data(cfg.data.val_paths, vocab_size, "data.val_paths")
    return {"data_tokens": n_tokens, "epochs": total_tokens / max(1, n_tokens)}


class LMObjective(Objective):
    """Token-mean cross-entropy (+ ``z_loss`` · logsumexp²) of a :class:`TrainConfig`'s data."""

    name = "pretrain"
    metric_names = ("loss", "z_loss")

    def __init__(self, cfg: TrainConfig, name: str = "pretrain"):
        self.cfg, self.name = cfg, name
        self.pos = DataPosition()
        self._next: DataPosition | None = None

    def setup(self, run: RunContext) -> None:
        super().setup(run)
        self.plan = batch_plan(self.cfg, run.world_size)
        train, val = self.build_sources(run)
        self.sampler = MixtureSampler(train, self.cfg.data.mixture, self.cfg.seed)
        # a fixed order (seed 0, whatever the run's seed) over all val sources: the first
        # eval_batches × micro_batch sequences sample every source, and runs compare on one val set
        self.val_sampler = MixtureSampler(val, seed=0) if val else None

    def build_sources(self, run: RunContext) -> tuple[list, list | None]:
        """Training and validation sources: indexable sequences of ``{"input_ids", "labels"
        [, "doc_ids"]}`` of ``seq_len`` tokens, one per source name (what the mixture weighs)."""
        cfg, pad, vocab = self.cfg, run.model_cfg.pad_token_id, run.model_cfg.vocab_size
        train = build_sources(load_token_data(cfg.data.paths, vocab, "data.paths"), cfg.data.mode, cfg.seq_len, pad)
        val = None
        if cfg.data.val_paths:
            val_data = load_token_data(cfg.data.val_paths, vocab, "data.val_paths")
            val = build_sources(val_data, cfg.data.mode, cfg.seq_len, pad)
        return train, val

    # ------------------------------------------------------------------ batches

    def next_batch(self, model: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
        p, rank = self.plan, self.run.rank
        slots, self._next = self.sampler.positions(self.pos, p.global_batch_seqs)
        per_rank = p.micro_batch * p.accum_steps
        mine = slots[rank * per_rank : (rank + 1) * per_rank]
        return [
            collate([self.sampler.get(*s) for s in mine[a * p.micro_batch : (a + 1) * p.micro_batch]])
            for a in range(p.accum_steps)
        ]

    def normalizer(self, micro_batch: dict[str, torch.Tensor]) -> float:
        return int((micro_batch["labels"] != IGNORE_INDEX).sum())

    def commit(self) -> None:
        if self._next is None:
            raise RuntimeError("commit() without next_batch()")
        self.pos, self._next = self._next, None

    def step_tokens(self) -> int:
        return self.plan.global_batch_tokens

    # ------------------------------------------------------------------ loss

    def loss(self, model, micro_batch):
        loss_sum, ce_sum, z_sum = self._forward_sum(model, micro_batch)
        return loss_sum, {"loss": ce_sum, "z_loss": z_sum}

    def _forward_sum(self, model, batch: dict[str, torch.Tensor]):
        """(loss sum incl. z-loss, ce sum, z sum) of one micro batch."""
        from olmoflow.model import lm_loss

        dev = self.run.device
        ids = batch["input_ids"].to(dev)
        doc_ids = batch["doc_ids"].to(dev) if "doc_ids" in batch else None
        labels = batch["labels"].to(dev)
        loss_kw = dict(z_loss=self.cfg.optimizer.z_loss, ignore_index=IGNORE_INDEX, reduction="sum")
        if self.cfg.loss_impl == "fused":  # inside the model's forward: FSDP has the head unsharded
            with self.run.autocast():
                loss, parts = model(ids, doc_ids=doc_ids, labels=labels, loss_chunk=self.cfg.loss_chunk_tokens,
                                    **loss_kw)
        else:
            with self.run.autocast():
                logits = model(ids, doc_ids=doc_ids)
            loss, parts = lm_loss(logits, labels, **loss_kw)
        return loss, parts["ce"], parts["z"]

    @torch.no_grad()
    def validate(self, model) -> dict[str, float] | None:
        """Token-mean CE over the first ``eval_batches × micro_batch`` validation sequences
        (the same sequences for any number of processes)."""
        from olmoflow.train import distributed as D

        if self.val_sampler is None:
            return None
        rank, world = self.run.rank, self.run.world_size
        mb = self.cfg.micro_batch
        n = min(self.cfg.eval_batches * mb, self.val_sampler.epoch_size)
        mine = list(range(n))[rank::world]
        n_micro = math.ceil(math.ceil(n / world) / mb)
        model.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.run.device)
        for a in range(n_micro):
            idx = mine[a * mb : (a + 1) * mb]
            items = [self.val_sampler.get(0, i) for i in idx]
            while len(items) < mb:  # keep every rank in lockstep (FSDP); padding carries no labels
                filler = dict(self.val_sampler.get(0, 0))
                filler["labels"] = filler["labels"] * 0 + IGNORE_INDEX
                items.append(filler)
            batch = collate(items)
            _, ce_sum, _ = self._forward_sum(model, batch)
            sums += torch.stack([ce_sum.double(), (batch["labels"] != IGNORE_INDEX).sum().double().to(self.run.device)])
        model.train()
        D.all_reduce_sum(sums)
        return {"val_loss": float(sums[0] / sums[1].clamp(min=1))}

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {"data_position": self.pos.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos = DataPosition(**state["data_position"])
