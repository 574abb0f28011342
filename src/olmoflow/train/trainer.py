"""The training loop: ``Trainer(cfg, objective).run()``; ``pretrain(cfg)`` runs the LM objective.

The loop is the same for every kind of training (see ``train/objective.py``): AdamW + learning-rate
schedule, gradient clipping, loss-spike guard, checkpoints with exact resume, FSDP2 under torchrun,
metrics logging, progress bar and callbacks. What is optimised (batches, loss, normalizer, the state
needed to resume) is the objective's. One optimizer step consumes one global batch, split into micro
batches on each of ``world_size`` processes; the loss is the objective's sum divided by the global
normalizer (e.g. the token count of the whole global batch), so the same config gives the same
losses on 1 or N processes. Everything a step depends on (weights, optimizer moments, objective
state, loss-spike history, RNG) is in the checkpoint, so ``resume=True`` continues bit-identically
on CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from olmoflow.errors import OlmoflowError
from olmoflow.train import checkpoint as C
from olmoflow.train import distributed as D
from olmoflow.train.callbacks import Callback, PeriodicCallback
from olmoflow.train.config import TrainConfig, batch_plan, resolve_model_config
from olmoflow.train.lm import LMObjective, describe_data
from olmoflow.train.metrics import MetricsWriter, make_progress
from olmoflow.train.objective import Objective, RunContext
from olmoflow.train.optim import build_optimizer
from olmoflow.train.schedule import lr_at
from olmoflow.train.spike import SpikeGuard

__all__ = ["Trainer", "estimate_memory", "plan", "pretrain", "train"]


def pretrain(cfg: TrainConfig, quiet: bool = False, resume: bool = False,
             callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Train ``cfg`` with the language-modelling objective; returns the final metrics."""
    return train(cfg, None, quiet=quiet, resume=resume, callbacks=callbacks)


def train(cfg: TrainConfig, objective: Objective | None, quiet: bool = False, resume: bool = False,
          callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Run the loop on ``objective`` (default: :class:`LMObjective` of ``cfg``); returns the final
    metrics (also under torchrun: every rank returns them)."""
    info = D.init_distributed()
    try:
        return Trainer(cfg, info, objective=objective, quiet=quiet, resume=resume, callbacks=callbacks).run()
    except BaseException as e:
        r, lost = D.rank(), D.peer_failure(e)
        D.abort()  # an error on one rank must not leave it (and the others) waiting at a barrier
        if lost:  # the failed rank prints the cause; the others stop with one line, no traceback
            raise OlmoflowError(f"rank {r}: stopped because another process of this run failed "
                                "(its error is above)") from None
        raise


def config_callbacks(cfg: TrainConfig, seed: int) -> list[Callback]:
    """Callbacks a config asks for: in-loop evaluation (``olmoflow.eval``'s public EvalCallback)."""
    ev = cfg.in_loop_eval
    if ev is None or not (ev.tasks or ev.ppl_data):
        return []
    from olmoflow.eval import EvalCallback

    return [PeriodicCallback(EvalCallback(ev.tasks, every_n_steps=ev.every, ppl_data=ev.ppl_data or None,
                                          limit=ev.limit, batch_size=ev.batch_size, tokenizer=ev.tokenizer,
                                          seed=seed, quiet=True))]


def estimate_memory(model_cfg, cfg: TrainConfig, world_size: int, bf16: bool) -> dict[str, float]:
    """Rough peak memory per process in GiB: fp32 weights + grads + AdamW moments (sharded over
    processes) plus activations of one micro batch (bf16 if ``bf16``; blocks only keep their input
    under activation checkpointing) and the fp32 logits + their gradient (of one chunk of
    ``loss_chunk_tokens`` rows with the fused loss)."""
    p = model_cfg.num_params()
    b, t, d, n_layers, v = cfg.micro_batch, cfg.seq_len, model_cfg.d_model, model_cfg.n_layers, model_cfg.vocab_size
    act_bytes = 2 if bf16 else 4
    per_block = 17 * b * t * d * act_bytes + 4 * b * t * model_cfg.mlp_hidden * act_bytes
    acts = (n_layers * b * t * d * act_bytes + per_block) if cfg.activation_checkpointing else n_layers * per_block
    rows = min(b * t, cfg.loss_chunk_tokens) if cfg.loss_impl == "fused" else b * t
    logits = rows * v * (4 + 4 + act_bytes)
    states = 16 * p / world_size
    gib = 1024**3
    return {
        "params_grads_optimizer_gib": states / gib,
        "activations_gib": acts / gib,
        "logits_gib": logits / gib,
        "total_gib": (states + acts + logits) / gib,
    }


def plan(cfg: TrainConfig, world_size: int = 1, check_data: bool = True) -> dict[str, Any]:
    """The resolved plan of a run (what ``--dry-run`` prints); validates config and data."""
    model_cfg = _model_config(cfg)
    bp = batch_plan(cfg, world_size)
    _check_geometry(cfg, model_cfg)
    out: dict[str, Any] = {
        "model": model_cfg.name,
        "parameters": model_cfg.num_params(),
        "non_embedding_parameters": model_cfg.num_params(include_embedding=False),
        **bp.model_dump(),
        "total_tokens": bp.steps * bp.global_batch_tokens,
        "schedule": cfg.schedule.model_dump(),
        "lr": cfg.optimizer.lr,
        "flops_per_token": model_cfg.flops_per_token(cfg.seq_len),
        "memory_per_gpu_bf16": estimate_memory(model_cfg, cfg, world_size, bf16=True),
    }
    if check_data:
        out.update(describe_data(cfg, model_cfg.vocab_size, out["total_tokens"]))
    return out


#: ModelConfig fields that set parameter shapes: an ``init_from`` checkpoint fixes them
_SHAPE_FIELDS = ("flavor", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "mlp_hidden")


def _model_config(cfg: TrainConfig):
    """The model of this run: the preset/fields + ``model_overrides``, or with ``init_from`` the
    checkpoint's architecture + the overrides that keep its parameter shapes (context length, RoPE /
    YaRN, sliding window, token ids: what a midtraining or long-context stage changes)."""
    if not cfg.init_from:
        return resolve_model_config(cfg)
    from olmoflow.config import validate
    from olmoflow.model.config import ModelConfig
    from olmoflow.model.io import read_config

    base = read_config(cfg.init_from)
    # null means "derive it" (n_kv_heads, head_dim, mlp_hidden): the checkpoint's value is that
    overrides = {k: v for k, v in cfg.model_overrides.items() if not (k in _SHAPE_FIELDS and v is None)}
    for key in _SHAPE_FIELDS:
        if key in overrides and overrides[key] != getattr(base, key):
            raise OlmoflowError(
                f"key 'model_overrides.{key}': {overrides[key]!r} differs from the init_from checkpoint's "
                f"{getattr(base, key)!r} ({cfg.init_from}); its weights fix the model's shape"
            )
    vocab = overrides.pop("vocab_size", base.vocab_size)
    if vocab > base.vocab_size:
        raise OlmoflowError(
            f"key 'model_overrides.vocab_size': {vocab} is larger than the init_from checkpoint's embedding "
            f"({base.vocab_size} rows, {cfg.init_from})"
        )  # a smaller tokenizer vocabulary is fine: the embedding keeps its padded rows
    return validate(ModelConfig, {**base.model_dump(), **overrides}, f"model_overrides on {cfg.init_from}")


def _check_geometry(cfg: TrainConfig, model_cfg) -> None:
    if cfg.seq_len > model_cfg.max_seq_len:
        raise OlmoflowError(f"key 'seq_len': {cfg.seq_len} exceeds the model's max_seq_len {model_cfg.max_seq_len}")


class Trainer:
    """Holds the model, optimizer, objective and run state; :meth:`run` trains to the last step."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo, objective: Objective | None = None, quiet: bool = False,
                 resume: bool = False, callbacks: list[Callback] | None = None):
        from olmoflow.model import Olmo

        self.cfg, self.info = cfg, info
        self.world, self.rank = info.world_size, info.rank
        # --- everything that can be wrong with the input fails here, before any step
        self.model_cfg = _model_config(cfg)
        self.plan = batch_plan(cfg, self.world)
        _check_geometry(cfg, self.model_cfg)
        self.device = info.device
        self.bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and self.device.type == "cuda")
        self.objective = objective if objective is not None else LMObjective(cfg)
        self.objective.setup(RunContext(self.model_cfg, self.device, self.rank, self.world, cfg.seed, self._autocast))
        self.callbacks = list(callbacks) if callbacks is not None else config_callbacks(cfg, cfg.seed)
        if self.world > 1 and any(cb.single_process for cb in self.callbacks):
            raise OlmoflowError("in_loop_eval runs in a single process for now; "
                                "evaluate checkpoints with `olmoflow eval --checkpoints RUN_DIR`")
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_root = self.run_dir / "checkpoints"
        self.resume_from = C.latest_checkpoint(self.ckpt_root) if resume else None
        if not resume and C.latest_checkpoint(self.ckpt_root) is not None:
            raise OlmoflowError(
                f"{self.ckpt_root}: run directory already has checkpoints; pass --resume or use a new run_dir"
            )
        # --- model: same init on every rank (seeded), then parallelism from outside
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)  # checkpoints store these states: seed them so reruns are byte-identical
        np.random.seed(cfg.seed)
        self.model = Olmo(self.model_cfg, init=False)
        self.model.init_weights(generator=torch.Generator().manual_seed(cfg.seed))
        if cfg.init_from:
            self._init_from(cfg.init_from)
        self.model.to(self.device)
        if cfg.activation_checkpointing:
            D.apply_activation_checkpointing(self.model)
        if cfg.compile:
            D.apply_compile(self.model)
        if self.world > 1:
            D.apply_fsdp(self.model, self.device, self.bf16)
        self.model.train()
        self.optimizer = build_optimizer(self.model, cfg.optimizer)
        if cfg.init_from and cfg.init_optimizer and self.resume_from is None:
            self._init_optimizer(cfg.init_from)
        self.guard = SpikeGuard(cfg.spike_window, cfg.spike_sigma, cfg.spike_warmup, enabled=cfg.spike_skip)
        self.step = 0
        self.tokens = 0
        self.skipped_total = 0
        self.quiet = quiet
        self.log = MetricsWriter(self.run_dir, enabled=self.rank == 0, tensorboard=cfg.tensorboard)
        if self.resume_from is not None:
            self._resume(self.resume_from)
        else:
            self.log.rewind(0)
        if self.rank == 0:
            (self.run_dir / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))

    # ------------------------------------------------------------------ state

    def _init_from(self, path: str) -> None:
        from olmoflow.model import load

        if (Path(path) / C.MANIFEST).is_file():
            C.verify_checkpoint(path)
        src = load(path)
        self.model.load_state_dict(src.state_dict())

    def _init_optimizer(self, path: str) -> None:
        """Load the optimizer state of the training checkpoint at ``path`` (a run's ``final/``
        names its checkpoint in ``checkpoint.txt``); its weights are the ones already loaded."""
        ckpt = Path(path)
        if (ckpt / "checkpoint.txt").is_file():
            ckpt = Path((ckpt / "checkpoint.txt").read_text().strip())
        if not (ckpt / "dcp").is_dir():
            raise OlmoflowError(f"key 'init_optimizer': {path} holds no optimizer state (not a training checkpoint)")
        C.load_checkpoint(ckpt, self.model, self.optimizer, verify=self.cfg.checkpoint.verify, restore_rng=False)

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "objective": self.objective.state_dict(),
            "tokens": self.tokens,
            "skipped_total": self.skipped_total,
            "spike_guard": self.guard.state_dict(),
            "schedule": {"name": self.cfg.schedule.name, "lr": self._lr(self.step)},
            "config": self.cfg.model_dump(mode="json"),
        }

    def _resume(self, path: Path) -> None:
        state = C.load_checkpoint(path, self.model, self.optimizer, verify=self.cfg.checkpoint.verify)
        self.step = int(state["step"])
        # checkpoints before the objective split kept the LM data position at the top level
        self.objective.load_state_dict(state.get("objective") or {"data_position": state["data_position"]})
        self.tokens = int(state["tokens"])
        self.skipped_total = int(state["skipped_total"])
        self.guard.load_state_dict(state["spike_guard"])
        self.log.rewind(self.step)
        self.log.event("resume", checkpoint=str(path), step=self.step)

    def save(self) -> Path:
        path = C.save_checkpoint(
            self.ckpt_root, self.step, self.model, self.optimizer, self._trainer_state(), self.model_cfg,
            consolidated=self.cfg.checkpoint.consolidated,
        )
        if self.rank == 0:
            C.prune_checkpoints(self.ckpt_root, self.cfg.checkpoint.keep_last)
        self.log.event("checkpoint", step=self.step, path=str(path))
        return path

    # ------------------------------------------------------------------ compute

    def _lr(self, step: int) -> float:
        return lr_at(self.cfg.optimizer.lr, self.cfg.schedule, step, self.plan.steps)

    def _autocast(self):
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over one global batch; returns its metrics record."""
        t0 = time.perf_counter()
        obj = self.objective
        lr = self._lr(self.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        mbs = obj.next_batch(self.model)
        local = sum(obj.normalizer(mb) for mb in mbs)
        n_global = D.all_reduce_sum(torch.tensor(float(local), device=self.device)).item()
        if n_global == 0 and not obj.allow_empty:
            raise OlmoflowError(f"{obj.name}: a global batch has nothing to learn from "
                                "(no target tokens: documents of length 1, or fully masked examples?)")
        if n_global == 0:
            return self._empty_step(lr, t0)
        sums = torch.zeros(len(obj.metric_names), dtype=torch.float64, device=self.device)
        fsdp = self.world > 1
        for a, mb in enumerate(mbs):
            if fsdp:
                self.model.set_requires_gradient_sync(a == len(mbs) - 1)
            loss_sum, metrics = obj.loss(self.model, mb)
            # FSDP averages gradients over ranks, hence × world: the result is sum / n_global
            (loss_sum * (self.world / n_global)).backward()
            sums += torch.stack([metrics[k].double() for k in obj.metric_names])
        D.all_reduce_sum(sums)
        values = dict(zip(obj.metric_names, (sums / n_global).tolist()))
        watched = values[obj.metric_names[0]]
        grad_norm = self._clip_grads()
        skip = self.guard.should_skip(watched, grad_norm)
        if skip:
            self.skipped_total += 1
            self.log.event("skip", step=self.step + 1, loss=watched, grad_norm=grad_norm)
        else:
            self.optimizer.step()
            self.guard.record(watched, grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        obj.commit()
        step_tokens = obj.step_tokens()
        self.tokens += step_tokens
        dt = time.perf_counter() - t0
        return {
            "step": self.step,
            **values,
            **obj.step_metrics(),
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": self.tokens,
            "tokens_per_s": step_tokens / dt,
            "skipped": int(skip),
            "skipped_total": self.skipped_total,
        }

    def _empty_step(self, lr: float, t0: float) -> dict[str, Any]:
        """A step whose global batch had nothing to learn from: no update, logged as skipped."""
        obj = self.objective
        self.log.event("empty_batch", step=self.step + 1)
        self.skipped_total += 1
        self.step += 1
        obj.commit()
        self.tokens += obj.step_tokens()
        return {"step": self.step, **{k: 0.0 for k in obj.metric_names}, **obj.step_metrics(), "lr": lr,
                "grad_norm": 0.0, "tokens": self.tokens, "tokens_per_s": obj.step_tokens() / (time.perf_counter() - t0),
                "skipped": 1, "skipped_total": self.skipped_total}

    def _clip_grads(self) -> float:
        params = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = self.cfg.optimizer.grad_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        if hasattr(norm, "full_tensor"):  # DTensor under FSDP
            norm = norm.full_tensor()
        return float(norm)

    def evaluate(self) -> dict[str, float] | None:
        """The objective's validation metrics (None without validation data)."""
        return self.objective.validate(self.model)

    # ------------------------------------------------------------------ loop

    def run(self) -> dict[str, Any]:
        cfg, total = self.cfg, self.plan.steps
        self.log.event("start", step=self.step, total_steps=total, world_size=self.world,
                       plan=self.plan.model_dump(), objective=self.objective.name)
        last: dict[str, Any] = {}
        last_ckpt: Path | None = None
        watched = self.objective.metric_names[0]
        progress = make_progress(disable=self.quiet or self.rank != 0)
        with progress:
            task = progress.add_task(self.objective.name, total=total, completed=self.step, loss="-", tok_s="-")
            if cfg.eval_at_start and self.step == 0:
                start = self.evaluate()
                if start:
                    self.log.step({"step": 0, **start})
            while self.step < total:
                rec = self.train_step()
                step_keys = set(rec)
                if self.step == total or (cfg.eval_every and self.step % cfg.eval_every == 0):
                    rec.update(self.evaluate() or {})
                for cb in self.callbacks:
                    cb.on_step_end(self.step, total, self.model, self.run_dir, rec)
                # a step with a validation or callback result is always logged (else the result is lost)
                if self.step % cfg.log_every == 0 or self.step == total or set(rec) - step_keys:
                    self.log.step(rec)
                progress.update(task, completed=self.step, loss=f"{rec[watched]:.4f}",
                                tok_s=f"{rec['tokens_per_s']:,.0f}")
                if self.step == total or (cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0):
                    last_ckpt = self.save()
                last = rec
        if last_ckpt is None:  # resumed at the end: the final checkpoint exists already
            last_ckpt = C.latest_checkpoint(self.ckpt_root)
        if self.rank == 0 and last_ckpt is not None:
            self._write_final(last_ckpt)
        for cb in self.callbacks:
            cb.on_train_end(self.step, self.model, self.run_dir)
        self.log.event("end", step=self.step, tokens=self.tokens, skipped_total=self.skipped_total)
        self.log.close()
        D.barrier()
        out = {k: v for k, v in last.items() if k != "tokens_per_s"}
        out.update(step=self.step, tokens=self.tokens, skipped_total=self.skipped_total,
                   run_dir=str(self.run_dir), checkpoint=str(last_ckpt) if last_ckpt else None)
        return out
    def _write_final(self, ckpt: Path) -> None:
        """``RUN_DIR/final``: the last weights as a plain model dir (hard links, no copy)."""
        final = self.run_dir / "final"
        tmp = self.run_dir / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in ("model.safetensors", "config.json"):
            if not (ckpt / name).is_file():
                return
            try:
                os.link(ckpt / name, tmp / name)
            except OSError:
                shutil.copy2(ckpt / name, tmp / name)
        (tmp / "checkpoint.txt").write_text(f"{ckpt}\n")
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
