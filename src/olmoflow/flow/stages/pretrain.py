"""Stage ``pretrain``: wraps ``olmoflow.train.pretrain`` (TrainConfig minus the paths the runner fills).

Inputs: ``data`` (a token dataset dir: tokenize/mix output), optional ``val`` (token dataset) and
``init_from`` (checkpoint or artifact; ``olmoflow fork`` points it at a checkpoint), optional
``tokenizer`` (only to set the model's vocab size / eos / pad from it). The artifact is the run dir:
``metrics.jsonl``, ``checkpoints/step-N/``, ``final/``. The seed is the flow's unless the stage
config gives its own ``seed``.

Resumable: when a flow is re-run after this stage was killed, the runner asks :func:`resume_point`
for the latest complete checkpoint of the leftover run dir, and the stage continues with the
trainer's own exact resume (``pretrain(..., resume=True)``), so the artifact equals an
uninterrupted run's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olmoflow.config import ConfigError
from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import ResumePoint, StageContext, register_stage
from olmoflow.flow.stages._common import model_dir, plain

#: TrainConfig keys the runner fills from inputs / the artifact dir; they are not part of the config
RUNNER_KEYS = ("run_dir", "init_from")


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """Validate against ``TrainConfig`` and return it with defaults, without runner-filled paths."""
    from olmoflow.config import validate
    from olmoflow.train.config import TrainConfig

    for k in RUNNER_KEYS:
        if k in config:
            raise ConfigError(f"key '{k}' is set by the runner; give it as an input instead")
    data = dict(config.get("data") or {})
    if data.get("paths") or data.get("val_paths"):
        raise ConfigError("key 'data.paths'/'data.val_paths': give token datasets as inputs 'data' / 'val'")
    cfg = validate(TrainConfig, {**config, "run_dir": "."}, "pretrain config")
    out = cfg.model_dump(mode="json")
    for k in RUNNER_KEYS:
        out.pop(k, None)
    out["data"].pop("paths", None)
    out["data"].pop("val_paths", None)
    if "seed" not in config:  # the flow seed (StageContext.seed) is used; a stage's own seed wins
        out.pop("seed", None)
    return out


def train_config(config: dict[str, Any], inputs: dict[str, Path], out_dir: Path, ctx: StageContext):
    """The ``TrainConfig`` for this stage: config + input paths + the seed (the stage's own, else the flow's)."""
    from olmoflow.config import validate
    from olmoflow.train.config import TrainConfig

    if "data" not in inputs:
        raise OlmoflowError(f"stage {ctx.stage!r}: needs an input 'data' (a token dataset)")
    cfg = dict(config)
    cfg["data"] = {**(cfg.get("data") or {}), "paths": [str(inputs["data"])]}
    if inputs.get("val") is not None:
        cfg["data"]["val_paths"] = [str(inputs["val"])]
    if inputs.get("init_from") is not None:
        cfg["init_from"] = str(model_dir(inputs["init_from"]))
    if inputs.get("tokenizer") is not None:
        cfg["model_overrides"] = {**_tokenizer_ids(inputs["tokenizer"]), **(cfg.get("model_overrides") or {})}
    cfg["run_dir"] = str(out_dir)
    cfg["seed"] = cfg.get("seed", ctx.seed)
    return validate(TrainConfig, cfg, f"stage {ctx.stage}")


def resume_point(config: dict[str, Any], out_dir: Path) -> ResumePoint | None:
    """The checkpoint the trainer resumes from in ``out_dir`` (its own choice, ``latest_checkpoint``:
    the newest ``step-N`` whose files match its manifest; a torn save has none and is skipped)."""
    from olmoflow.config import validate
    from olmoflow.train.checkpoint import latest_checkpoint
    from olmoflow.train.config import TrainConfig

    ckpt = latest_checkpoint(Path(out_dir) / "checkpoints")
    if ckpt is None:
        return None
    total = validate(TrainConfig, {**config, "run_dir": str(out_dir)}, "pretrain config").total_steps()
    return ResumePoint(step=int(ckpt.name.removeprefix("step-")), total=total, checkpoint=ckpt)


def _tokenizer_ids(tok_dir: Path) -> dict[str, Any]:
    """vocab_size / eos / pad of a tokenizer dir, so the model matches the tokenizer."""
    from olmoflow.tokenizer import load_tokenizer

    tok = load_tokenizer(tok_dir)
    out: dict[str, Any] = {"vocab_size": tok.get_vocab_size()}
    for key, name in (("eos_token_id", "<|endoftext|>"), ("pad_token_id", "<|pad|>")):
        tid = tok.token_to_id(name)
        if tid is not None:
            out[key] = tid
    return out


@register_stage("pretrain", description="pretrain a model (olmoflow.train)", fork_input="init_from",
                resolve_config=resolve,
                # rng.json holds python/numpy global RNG state (not derived from the seed, and not used
                # by training); a checkpoint's manifest.json lists its sha256, so both are left out
                volatile_files=("log.jsonl", "tensorboard/*", "checkpoints/*/rng.json", "checkpoints/*/manifest.json"),
                volatile_keys={"metrics.jsonl": ("tokens_per_s",)}, resume_point=resume_point)
def run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.train import pretrain
    from olmoflow.train.metrics import read_metrics

    cfg = train_config(config, inputs, out_dir, ctx)
    metrics = plain(pretrain(cfg, quiet=ctx.quiet, resume=ctx.resume_from is not None))
    if ctx.resume_from is not None and "loss" not in metrics:  # killed after its last checkpoint: no step
        last = (read_metrics(out_dir / "metrics.jsonl") or [{}])[-1]  # ran now, so take the last logged one
        metrics = {**{k: v for k, v in last.items() if k != "tokens_per_s"}, **metrics}
    for k in ("run_dir", "checkpoint"):  # absolute paths: the manifest records the artifact instead
        metrics.pop(k, None)
    return metrics
