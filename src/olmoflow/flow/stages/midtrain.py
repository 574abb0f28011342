"""Stages ``midtrain`` and ``long_context``: continue a trained model on a new mix of datasets.

Both are pretraining's loop and objective (``olmoflow.train``) started from a checkpoint's weights
(input ``init_from``; a fresh optimizer unless ``init_optimizer: true``), with a learning rate that
warms up briefly and decays linearly to exactly 0 on the last step (the default ``schedule``).

Inputs: ``init_from`` (a training run artifact, soup or model dir), optional ``tokenizer`` and
``val`` (token datasets for validation loss); every other input is a token dataset, mixed by
``mix: {INPUT: ratio}`` (default: in proportion to their tokens). A dataset keeps its own source
proportions inside its share (``olmoflow.train.anneal``).

``long_context`` also switches RoPE to YaRN on the full-attention layers only (sliding-window
layers keep plain RoPE, as OLMo 3), raises ``seq_len`` and ``max_seq_len``, and packs whole
documents with intra-document attention masks (``data.mode: packed``). ``yarn.original_context``
defaults to the sequence length the init model was trained at, ``yarn.factor`` to
``seq_len / original_context``.

The artifact is a training run dir (``metrics.jsonl``, ``checkpoints/``, ``final/``) like
pretrain's; both stages resume after a kill exactly like pretrain.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from olmoflow.config import Config
from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import StageContext, register_stage
from olmoflow.flow.stages._common import model_dir, need, plain
from olmoflow.flow.stages.pretrain import LOSS, RELEASE, resume_point
from olmoflow.flow.stages.pretrain import config_class as pretrain_config_class

#: inputs that are not token datasets of the mix
NOT_DATA = ("init_from", "model", "tokenizer", "val")
VOLATILE = ("log.jsonl", "tensorboard/*", "checkpoints/*/rng.json", "checkpoints/*/manifest.json")


class YarnSettings(Config):
    """YaRN for the full-attention layers (OLMo 3: factor 8, beta_fast 32, beta_slow 1, 8192 -> 65536)."""

    #: None: seq_len / original_context
    factor: float | None = None
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    #: the context the model was trained at (None: the init run's seq_len, else its max_seq_len)
    original_context: int | None = Field(None, gt=0)

    @field_validator("factor")
    @classmethod
    def _above_one(cls, v: float | None) -> float | None:
        if v is not None and not v > 1.0:
            raise ValueError(f"must be > 1 (YaRN stretches the original context by this factor), got {v}")
        return v


def _linear_to_zero():
    from olmoflow.train.config import ScheduleConfig

    return ScheduleConfig(name="linear", warmup_steps=0, final_lr_ratio=0.0)


@functools.cache
def midtrain_config_class():
    """``MidtrainConfig``: pretrain's stage config + the dataset mix; linear-to-0 by default."""
    from olmoflow.train.config import ScheduleConfig

    base = pretrain_config_class()

    class MidtrainConfig(base):  # type: ignore[misc, valid-type]
        #: input name -> share of the mix (token datasets); empty: in proportion to their tokens
        mix: dict[str, float] = Field(default_factory=dict)
        schedule: ScheduleConfig = Field(default_factory=_linear_to_zero)

    return MidtrainConfig


@functools.cache
def long_context_config_class():
    """``LongContextConfig``: midtrain's + YaRN settings; packed documents by default."""
    from olmoflow.train.config import DataConfig

    class LongContextConfig(midtrain_config_class()):  # type: ignore[misc, valid-type]
        yarn: YarnSettings = Field(default_factory=YarnSettings)
        data: DataConfig = Field(default_factory=lambda: DataConfig(mode="packed"))

    return LongContextConfig


def datasets_of(inputs: dict[str, Path], stage: str) -> dict[str, str]:
    """The token-dataset inputs (every input but ``init_from`` / ``tokenizer`` / ``val``)."""
    data = {k: str(v) for k, v in sorted(inputs.items()) if k not in NOT_DATA}
    if not data:
        raise OlmoflowError(f"stage {stage!r}: needs at least one token dataset input besides init_from")
    return data


def anneal_config(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext,
                  datasets: dict[str, str], mix: dict[str, float] | None, init: Path,
                  model_overrides: dict[str, Any] | None = None, seed: int | None = None):
    """The ``TrainConfig`` of an anneal from ``init`` on ``datasets`` mixed by ``mix``."""
    from olmoflow.config import validate
    from olmoflow.flow.stages.pretrain import _tokenizer_ids
    from olmoflow.train.anneal import dataset_mixture
    from olmoflow.train.config import TrainConfig

    cfg = {k: v for k, v in config.model_dump(mode="json").items() if k in TrainConfig.model_fields}
    cfg["data"] = {**cfg["data"], "paths": list(datasets.values()),
                   "mixture": dataset_mixture(datasets, mix, key="mix")}
    if inputs.get("val") is not None:
        cfg["data"]["val_paths"] = [str(inputs["val"])]
    cfg["init_from"] = str(model_dir(init))
    overrides = dict(cfg.get("model_overrides") or {})
    if inputs.get("tokenizer") is not None:
        overrides = {**_tokenizer_ids(inputs["tokenizer"]), **overrides}
    cfg["model_overrides"] = {**overrides, **(model_overrides or {})}
    cfg["run_dir"] = str(out_dir)
    cfg["seed"] = seed if seed is not None else (config.seed if "seed" in config.model_fields_set else ctx.seed)
    return validate(TrainConfig, cfg, f"stage {ctx.stage}")


def _train(cfg, datasets: dict[str, str], ctx: StageContext, out_dir: Path, name: str) -> dict[str, Any]:
    from olmoflow.train.anneal import DatasetMixObjective
    from olmoflow.train.metrics import read_metrics
    from olmoflow.train.trainer import train

    resume = ctx.resume_from is not None
    metrics = plain(train(cfg, DatasetMixObjective(cfg, datasets, name=name), quiet=ctx.quiet, resume=resume))
    if resume and "loss" not in metrics:  # killed after its last checkpoint: no step ran now
        last = (read_metrics(out_dir / "metrics.jsonl") or [{}])[-1]
        metrics = {**{k: v for k, v in last.items() if k != "tokens_per_s"}, **metrics}
    for k in ("run_dir", "checkpoint"):
        metrics.pop(k, None)
    return metrics


def _init(inputs: dict[str, Path], stage: str) -> Path:
    if inputs.get("init_from") is None and inputs.get("model") is not None:
        return Path(inputs["model"])
    return need(inputs, "init_from", stage, "the checkpoint to start from: a training run artifact or model dir")


@register_stage("midtrain", description="anneal from a checkpoint on a new mix of datasets, lr linearly to 0",
                config=midtrain_config_class, report=(LOSS,), release=RELEASE, fork_input="init_from",
                libraries=("torch", "numpy", "safetensors"), volatile_files=VOLATILE,
                volatile_keys={"metrics.jsonl": ("tokens_per_s",)}, resume_point=resume_point)
def run_midtrain(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    datasets = datasets_of(inputs, ctx.stage)
    cfg = anneal_config(config, inputs, out_dir, ctx, datasets, config.mix, _init(inputs, ctx.stage))
    return _train(cfg, datasets, ctx, out_dir, "midtrain")


def yarn_overrides(config: Any, init: Path, stage: str) -> dict[str, Any]:
    """``model_overrides`` of a long-context stage: max_seq_len and YaRN on the full layers; checks
    the lengths against what the model's attention needs (one-line errors naming the key)."""
    from olmoflow.model.io import read_config
    from olmoflow.train.anneal import trained_context

    base = read_config(model_dir(init))
    y = config.yarn
    original = y.original_context or trained_context(init) or base.max_seq_len
    seq = config.seq_len
    window = base.sliding_window if "sliding" in base.layer_types else None
    if window and seq % window:
        raise OlmoflowError(f"stage {stage!r}: key 'seq_len': {seq} is not a multiple of the model's sliding_window "
                            f"{window} (the sliding layers tile the sequence in windows)")
    if seq % original:
        raise OlmoflowError(f"stage {stage!r}: key 'seq_len': {seq} is not a multiple of the original context "
                            f"{original} (yarn.original_context)")
    factor = y.factor if y.factor is not None else seq / original
    if not factor > 1:
        raise OlmoflowError(f"stage {stage!r}: key 'yarn.factor': {factor:g} must be > 1 (seq_len {seq} must exceed "
                            f"the original context {original})")
    if base.rope_scaling is not None:
        raise OlmoflowError(f"stage {stage!r}: input 'init_from' already uses YaRN ({init}); extend a model once")
    rope = {"factor": factor, "beta_fast": y.beta_fast, "beta_slow": y.beta_slow, "original_max_seq_len": original}
    return {"max_seq_len": max(seq, base.max_seq_len), "rope_scaling": rope}


@register_stage("long_context", description="context extension: YaRN on full-attention layers, packed long "
                "documents with document masks, lr linearly to 0", config=long_context_config_class,
                report=(LOSS,), release=RELEASE, fork_input="init_from", libraries=("torch", "numpy", "safetensors"),
                volatile_files=VOLATILE, volatile_keys={"metrics.jsonl": ("tokens_per_s",)}, resume_point=resume_point)
def run_long_context(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    init = _init(inputs, ctx.stage)
    datasets = datasets_of(inputs, ctx.stage)
    overrides = yarn_overrides(config, init, ctx.stage)
    cfg = anneal_config(config, inputs, out_dir, ctx, datasets, config.mix, init, model_overrides=overrides)
    metrics = _train(cfg, datasets, ctx, out_dir, "long_context")
    return {**metrics, "yarn": overrides["rope_scaling"]}
