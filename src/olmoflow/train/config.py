"""``TrainConfig``: everything a pretraining run needs, typed and validated at load time.

A config names the model (a preset or explicit ``ModelConfig`` fields), the token data and its
mixture, the batch geometry (sequence length, micro batch, global batch in tokens), the length of
the run (``steps`` or ``tokens``), the optimizer, the learning-rate schedule and the checkpoint
policy. Batch arithmetic that depends on the number of processes is checked by
:func:`batch_plan` before any training step.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, model_validator

from olmoflow.config import Config, ConfigError
from olmoflow.eval.options import EvalOptions

__all__ = [
    "BatchPlan",
    "CheckpointConfig",
    "DataConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "batch_plan",
    "resolve_model_config",
]

SCHEDULES = ("cosine", "wsd", "linear", "constant")


class DataConfig(Config):
    """Token datasets (``olmoflow tokenize`` output dirs) and how to draw sequences from them."""

    #: token dataset directories (each holds meta.json + shards), or a single one
    paths: list[str] = Field(default_factory=list)
    #: target fraction per source name (the ``source`` of each shard); empty = natural proportions
    mixture: dict[str, float] = Field(default_factory=dict)
    #: "fixed": concatenate and chunk (trains across EOS, like OLMo); "packed": best-fit packing of
    #: whole documents with intra-document attention masks (no prediction across documents)
    mode: Literal["fixed", "packed"] = "fixed"
    #: validation token datasets; empty = no validation
    val_paths: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        for name, r in self.mixture.items():
            if not (r >= 0 and math.isfinite(r)):
                raise ValueError(f"mixture ratio for {name!r} must be a finite number >= 0, got {r}")
        if self.mixture and sum(self.mixture.values()) <= 0:
            raise ValueError("mixture ratios sum to 0")
        return self


class OptimizerConfig(Config):
    """AdamW as in OLMo 2/3 (REFERENCE.md §3)."""

    lr: float = Field(3e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    #: apply weight decay to the input embedding (OLMo 2/3: no)
    decay_embeddings: bool = False
    #: apply weight decay to norm weights and other 1-d parameters (OLMo 2/3 and OLMo-core: yes,
    #: ``decay_norm_and_bias: true``; only the embedding is exempt, REFERENCE.md §3)
    decay_norms: bool = True
    grad_clip: float | None = Field(1.0, gt=0)
    z_loss: float = Field(1e-5, ge=0)


class ScheduleConfig(Config):
    """Learning-rate schedule by name: cosine (with warmup), wsd, linear (to zero), constant."""

    name: Literal["cosine", "wsd", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    #: final lr as a fraction of the peak for cosine / wsd / linear (linear-to-zero: 0)
    final_lr_ratio: float = Field(0.1, ge=0, le=1)
    #: WSD: fraction of the run spent in the final decay (the rest after warmup is stable)
    decay_fraction: float = Field(0.2, gt=0, le=1)


class CheckpointConfig(Config):
    """When and how checkpoints are written."""

    #: save every N steps (0 = only at the end)
    every: int = Field(0, ge=0)
    #: keep all checkpoints (None, the default: intermediate checkpoints are a product) or the last K
    keep_last: int | None = Field(None, ge=1)
    #: also write a consolidated model.safetensors (loadable by olmoflow.model.load) under FSDP
    consolidated: bool = True
    #: verify sha256 of every file when loading (resume / init_from)
    verify: bool = True


class InLoopEvalConfig(EvalOptions):
    """Evaluation inside the training loop (OLMo-core style in-loop evals): the shared eval options
    (``olmoflow.eval.options``: tasks, ppl_data, limit, batch_size, shots, tokenizer, ...) + how often."""

    every: int = Field(100, gt=0)
    #: items per task (None = all); fewer than a standalone eval's default, to keep training fast
    limit: int | None = Field(50, ge=1)


class TrainConfig(Config):
    """A pretraining run. ``run_dir`` receives metrics.jsonl, checkpoints/step-N/ and final/."""

    run_dir: str = "runs/pretrain"
    #: a preset name (``tiny-1m``, ``olmo3-7b``, ...) or explicit ModelConfig fields
    model: str | dict[str, Any] = "tiny-1m"
    #: field overrides applied on top of the preset (e.g. ``vocab_size`` of your tokenizer)
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    #: start from these weights (native checkpoint dir, training checkpoint or HF dir)
    init_from: str | None = None
    #: with ``init_from`` a training checkpoint (or a run's ``final/``): also load its optimizer state
    #: (AdamW moments); default a fresh optimizer, as midtraining and long-context stages start
    init_optimizer: bool = False
    data: DataConfig = Field(default_factory=DataConfig)
    seq_len: int = Field(512, gt=1)
    micro_batch: int = Field(4, gt=0)
    #: tokens per optimizer step across all processes
    global_batch_tokens: int = Field(8192, gt=0)
    #: run length: exactly one of steps / tokens
    steps: int | None = Field(None, gt=0)
    tokens: int | None = Field(None, gt=0)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    seed: int = 0
    #: validation every N steps (0 = only at the end when val_paths is set)
    eval_every: int = Field(0, ge=0)
    #: number of micro batches of validation data per evaluation
    eval_batches: int = Field(8, gt=0)
    #: also validate before the first step (logged as step 0: the starting point of the curves)
    eval_at_start: bool = False
    #: in-loop evaluation (olmoflow.eval tasks + per-source perplexity) every N steps -> RUN_DIR/eval.jsonl
    in_loop_eval: InLoopEvalConfig | None = None
    #: loss-spike guard: skip the update when loss or grad norm > mean + sigma·std of recent steps
    spike_skip: bool = True
    spike_window: int = Field(128, ge=2)
    spike_sigma: float = Field(6.0, gt=0)
    #: steps of history needed before the guard may skip
    spike_warmup: int = Field(20, ge=2)
    #: "auto": bf16 autocast on GPU, fp32 on CPU
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    activation_checkpointing: bool = False
    compile: bool = False
    #: "fused": the model computes LM head + loss + their gradients in chunks of
    #: ``loss_chunk_tokens`` rows and never holds the [tokens, vocab] logits; "logits": the plain
    #: ``lm_loss(model(ids), labels)``. Same losses and gradients within float32 rounding.
    loss_impl: Literal["fused", "logits"] = "fused"
    loss_chunk_tokens: int = Field(1024, gt=0)
    #: log to TensorBoard too (only if the tensorboard package is installed)
    tensorboard: bool = False
    log_every: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if (self.steps is None) == (self.tokens is None):
            raise ValueError("set exactly one of 'steps' or 'tokens'")
        return self

    def total_steps(self) -> int:
        """Optimizer steps of the run (``tokens`` rounded up to whole global batches)."""
        if self.steps is not None:
            return self.steps
        return math.ceil(self.tokens / self.global_batch_tokens)


def resolve_model_config(cfg: TrainConfig):
    """The ``ModelConfig`` this run trains (preset + overrides, or explicit fields)."""
    from olmoflow.config import validate
    from olmoflow.model import PRESETS, ModelConfig

    if isinstance(cfg.model, str):
        if cfg.model not in PRESETS:
            raise ConfigError(f"key 'model': unknown model preset {cfg.model!r} (available: {', '.join(PRESETS)})")
        base = {"name": cfg.model, **PRESETS[cfg.model]}
    else:
        base = dict(cfg.model)
    # errors name the key as written: model.<field> or model_overrides.<field>
    source = "config" if isinstance(cfg.model, str) and not cfg.model_overrides else "model / model_overrides"
    return validate(ModelConfig, {**base, **cfg.model_overrides}, source)


class BatchPlan(Config):
    """How a global batch is split: global = micro_batch · accum_steps · world_size sequences."""

    seq_len: int
    micro_batch: int
    world_size: int
    accum_steps: int
    global_batch_seqs: int
    global_batch_tokens: int
    steps: int


def batch_plan(cfg: TrainConfig, world_size: int = 1) -> BatchPlan:
    """Check that the global batch divides into micro batches on ``world_size`` processes."""
    per_micro = cfg.seq_len * cfg.micro_batch * world_size
    if cfg.global_batch_tokens % per_micro:
        raise ConfigError(
            f"global_batch_tokens={cfg.global_batch_tokens} is not divisible by seq_len × micro_batch × "
            f"processes = {cfg.seq_len} × {cfg.micro_batch} × {world_size} = {per_micro}"
        )
    accum = cfg.global_batch_tokens // per_micro
    return BatchPlan(
        seq_len=cfg.seq_len,
        micro_batch=cfg.micro_batch,
        world_size=world_size,
        accum_steps=accum,
        global_batch_seqs=cfg.micro_batch * accum * world_size,
        global_batch_tokens=cfg.global_batch_tokens,
        steps=cfg.total_steps(),
    )
