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

import functools
from pathlib import Path
from typing import Any

from pydantic import model_validator

from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import (
    ReleaseFiles,
    ReportSection,
    ResumePoint,
    StageArtifact,
    StageConfig,
    StageContext,
    refuse_runner_keys,
    register_stage,
)
from olmoflow.flow.report import plot_series
from olmoflow.flow.stages._common import model_dir, plain
from olmoflow.io import read_jsonl

#: TrainConfig keys the runner fills from inputs / the artifact dir; they are not part of the config
RUNNER_KEYS = ("run_dir", "init_from")


@functools.cache
def config_class() -> type[StageConfig]:
    """``PretrainConfig``: ``TrainConfig`` without the paths the runner fills (a function because
    it imports olmoflow.train, which registering the stage must not)."""
    from olmoflow.train.config import TrainConfig

    class PretrainConfig(TrainConfig, StageConfig):
        run_dir: str = "."  # set by the runner (the artifact dir)

        @model_validator(mode="before")
        @classmethod
        def _no_runner_paths(cls, data: Any) -> Any:
            if isinstance(data, dict):
                refuse_runner_keys(data, RUNNER_KEYS)
                d = data.get("data")
                if isinstance(d, dict) and (d.get("paths") or d.get("val_paths")):
                    raise ValueError("key 'data.paths'/'data.val_paths': give token datasets as inputs 'data' / 'val'")
            return data

        def resolved(self) -> dict[str, Any]:
            """Defaults filled, without runner-filled paths; ``seed`` only if the config gives one
            (else the flow seed, StageContext.seed, is used)."""
            out = self.model_dump(mode="json")
            for k in RUNNER_KEYS:
                out.pop(k, None)
            out["data"].pop("paths", None)
            out["data"].pop("val_paths", None)
            if "seed" not in self.model_fields_set:
                out.pop("seed", None)
            return out

    return PretrainConfig


def train_config(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext):
    """The ``TrainConfig`` for this stage: config + input paths + the seed (the stage's own, else the flow's)."""
    from olmoflow.config import validate
    from olmoflow.train.config import TrainConfig

    if "data" not in inputs:
        raise OlmoflowError(f"stage {ctx.stage!r}: needs an input 'data' (a token dataset)")
    cfg = config.model_dump(mode="json")
    cfg["data"] = {**cfg["data"], "paths": [str(inputs["data"])]}
    if inputs.get("val") is not None:
        cfg["data"]["val_paths"] = [str(inputs["val"])]
    if inputs.get("init_from") is not None:
        cfg["init_from"] = str(model_dir(inputs["init_from"]))
    if inputs.get("tokenizer") is not None:
        cfg["model_overrides"] = {**_tokenizer_ids(inputs["tokenizer"]), **(cfg.get("model_overrides") or {})}
    cfg["run_dir"] = str(out_dir)
    cfg["seed"] = config.seed if "seed" in config.model_fields_set else ctx.seed
    return validate(TrainConfig, cfg, f"stage {ctx.stage}")


def resume_point(config: Any, out_dir: Path) -> ResumePoint | None:
    """The checkpoint the trainer resumes from in ``out_dir`` (its own choice, ``latest_checkpoint``:
    the newest ``step-N`` whose files match its manifest; a torn save has none and is skipped)."""
    from olmoflow.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(Path(out_dir) / "checkpoints")
    if ckpt is None:
        return None
    return ResumePoint(step=int(ckpt.name.removeprefix("step-")), total=config.total_steps(), checkpoint=ckpt)


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


def loss_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    """Per training run: first and last logged loss, and the loss curve (``metrics.jsonl``)."""
    lines: list[str] = []
    for a in arts:
        path = a.dir / "metrics.jsonl"
        if not path.is_file():
            path = next(iter(sorted(a.dir.rglob("metrics.jsonl"))), None)
        if path is None:
            continue
        recs = [r for r in read_jsonl(path, skip_bad=True) if "step" in r and "loss" in r]
        if not recs:
            continue
        png = workdir / "report" / f"loss-{a.name}.png"
        ok = plot_series(png, {"loss": ([r["step"] for r in recs], [r["loss"] for r in recs])}, "step", "loss",
                         f"{a.name}: training loss")
        first, last = recs[0], recs[-1]
        lines.append(f"{a.name}: {len(recs)} logged steps, loss {first['loss']:.4g} (step {first['step']}) -> "
                     f"{last['loss']:.4g} (step {last['step']})")
        lines += ["", f"![{a.name} loss](report/{png.name})" if ok else "(matplotlib missing: no plot)", ""]
    return lines


LOSS = ReportSection("Training loss", loss_section, order=20)
#: the final weights are the bundle's model/ (native format; an export stage's replace them) and
#: the training log its logs/<stage>.metrics.jsonl
RELEASE = (ReleaseFiles("final", "model", mode="replace"), ReleaseFiles("metrics.jsonl", "logs/{stage}.metrics.jsonl"))


@register_stage("pretrain", description="pretrain a model (olmoflow.train)", fork_input="init_from",
                config=config_class, report=(LOSS,), release=RELEASE, libraries=("torch", "numpy", "safetensors"),
                # rng.json holds python/numpy global RNG state (not derived from the seed, and not used
                # by training); a checkpoint's manifest.json lists its sha256, so both are left out
                volatile_files=("log.jsonl", "tensorboard/*", "checkpoints/*/rng.json", "checkpoints/*/manifest.json"),
                volatile_keys={"metrics.jsonl": ("tokens_per_s",)}, resume_point=resume_point)
def run(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
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
