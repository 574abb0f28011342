"""What the post-training stage wrappers (chat_data, sft, pairs, dpo, rlvr) share: configs without
the paths the runner fills, input resolution, and the report section of the post-training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import model_validator

from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import (
    ReportSection,
    ResumePoint,
    StageArtifact,
    StageConfig,
    StageContext,
    refuse_runner_keys,
)
from olmoflow.flow.stages._common import model_dir, need
from olmoflow.io import read_jsonl

#: keys of the post-training configs that the runner fills from inputs / the artifact dir
RUNNER_KEYS = ("run_dir", "init_from", "tokenizer", "reference")


def runner_config(base: type, data_keys: tuple[str, ...]) -> type[StageConfig]:
    """``base`` (SFTConfig, DPOConfig, GRPOConfig) as a stage config: the runner fills the paths, so
    a flow file setting them is an error naming the input to use instead."""

    class StageCfg(base, StageConfig):  # type: ignore[misc, valid-type]
        @model_validator(mode="before")
        @classmethod
        def _fill_paths(cls, data: Any) -> Any:
            if isinstance(data, dict):
                refuse_runner_keys(data, RUNNER_KEYS)
                d = data.get("data")
                if isinstance(d, dict) and any(d.get(k) for k in data_keys):
                    raise ValueError(f"key 'data': give the data files as inputs, not {list(data_keys)}")
                # placeholders so the base validators (which require them) accept a stage config
                data = {**data, "run_dir": ".", "init_from": "<input>", "tokenizer": "<input>",
                        "data": {**(d or {}), data_keys[0]: ["<input>"]}}
            return data

        def resolved(self) -> dict[str, Any]:
            out = self.model_dump(mode="json")
            for k in RUNNER_KEYS:
                out.pop(k, None)
            for k in data_keys:
                out["data"].pop(k, None)
            if "seed" not in self.model_fields_set:
                out.pop("seed", None)
            return out

    StageCfg.__name__ = f"{base.__name__}Stage"
    return StageCfg


def find_file(path: Path, names: tuple[str, ...], stage: str, what: str) -> Path:
    """``path`` if a file, else the first of ``names`` inside it."""
    path = Path(path)
    if path.is_file():
        return path
    for n in names:
        if (path / n).is_file():
            return path / n
    raise OlmoflowError(f"stage {stage!r}: {path} has no {' / '.join(names)} ({what})")


def train_inputs(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext, cfg_cls: type,
                 data: dict[str, Any]) -> Any:
    """The full training config: the stage config + model, tokenizer and data paths + the seed."""
    from olmoflow.config import validate

    cfg = config.model_dump(mode="json")
    cfg["init_from"] = str(model_dir(need(inputs, "model", ctx.stage, "the model to start from")))
    cfg["tokenizer"] = str(need(inputs, "tokenizer", ctx.stage, "a tokenizer dir"))
    if inputs.get("reference") is not None:
        cfg["reference"] = str(model_dir(inputs["reference"]))
    cfg["data"] = {**cfg["data"], **data}
    cfg["run_dir"] = str(out_dir)
    cfg["seed"] = config.seed if "seed" in config.model_fields_set else ctx.seed
    return validate(cfg_cls, cfg, f"stage {ctx.stage}")


def resume_point(config: Any, out_dir: Path) -> ResumePoint | None:
    from olmoflow.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(Path(out_dir) / "checkpoints")
    if ckpt is None:
        return None
    return ResumePoint(step=int(ckpt.name.removeprefix("step-")), total=config.total_steps(), checkpoint=ckpt)


def finish(metrics: dict[str, Any]) -> dict[str, Any]:
    for k in ("run_dir", "checkpoint"):
        metrics.pop(k, None)
    return metrics


# ---------------------------------------------------------------------------- report


def _records(a: StageArtifact) -> list[dict[str, Any]]:
    path = a.dir / "metrics.jsonl"
    return [r for r in read_jsonl(path, skip_bad=True) if "step" in r] if path.is_file() else []


def _curves(arts: list[StageArtifact], workdir: Path, keys: tuple[str, ...], title: str, fname: str,
            ylabel: str) -> list[str]:
    """One plot of ``keys`` over steps for every artifact (the runs of one kind side by side)."""
    from olmoflow.flow.report import plot_series

    series = {}
    for a in arts:
        recs = _records(a)
        for k in keys:
            pts = [(r["step"], r[k]) for r in recs if r.get(k) is not None]
            if pts:
                series[f"{a.name}: {k}"] = ([p[0] for p in pts], [p[1] for p in pts])
    if not series:
        return []
    png = workdir / "report" / fname
    ok = plot_series(png, series, "step", ylabel, title)
    return ["", f"![{title}](report/{png.name})" if ok else "(matplotlib missing: no plot)", ""]


def _table(arts: list[StageArtifact], cols: tuple[str, ...]) -> list[str]:
    lines = ["| stage | steps | seed | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for a in arts:
        recs = _records(a)
        if not recs:
            continue
        last = recs[-1]
        seed = (a.manifest.get("seeds") or {}).get("seed", a.manifest.get("seed", ""))
        vals = []
        for c in cols:
            v = next((r[c] for r in reversed(recs) if r.get(c) is not None), None)
            vals.append("-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append(f"| {a.name} | {last['step']} | {seed} | " + " | ".join(vals) + " |")
    return lines


def sft_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    lines = ["Supervised fine-tuning: loss on assistant tokens only (token mean over the global batch)."]
    lines += ["", *_table(arts, ("loss", "val_loss"))]
    return lines + _curves(arts, workdir, ("loss",), "SFT loss (assistant tokens)", "sft-loss.png", "loss")


def dpo_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    lines = ["DPO on delta-learning pairs: reward accuracy = share of pairs whose chosen reward exceeds the "
             "rejected one; margin = mean reward difference."]
    lines += ["", *_table(arts, ("loss", "reward_acc", "reward_margin", "chosen_logratio", "rejected_logratio"))]
    return lines + _curves(arts, workdir, ("reward_acc", "reward_margin"), "DPO reward accuracy and margin",
                           "dpo-rewards.png", "value")


def rl_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    lines = ["RLVR (GRPO): reward of the sampled groups and accuracy on held-out prompts (greedy; with "
             "`eval_samples`, also pass@1 averaged over samples at the rollout temperature); runs with "
             "`reward: random` are the spurious-reward control."]
    lines += ["", *_table(arts, ("reward_mean", "zero_std_dropped_frac", "retired_prompts", "entropy", "kl",
                                  "clip_high"))]
    gains = ["", "| stage | reward | seed | held-out items | metric | at start | at end | change (points) |",
             "|---|---|---|---|---|---|---|---|"]
    for a in arts:
        cfg = a.manifest.get("config") or {}
        seed = cfg.get("seed", a.manifest.get("seed", ""))
        n = (cfg.get("data") or {}).get("heldout_limit", "")
        for key, label in (("heldout_acc", "greedy"), ("heldout_pass1", "pass@1 (sampled)")):
            acc = [r for r in _records(a) if r.get(key) is not None]
            if len(acc) < 2:
                continue
            first, last = acc[0], acc[-1]
            gains.append(f"| {a.name} | {cfg.get('reward', 'verifier')} | {seed} | {n} | {label} | "
                         f"{first[key]:.3f} (step {first['step']}) | {last[key]:.3f} (step {last['step']}) | "
                         f"{100 * (last[key] - first[key]):+.1f} |")
    if len(gains) > 3:
        lines += gains
    lines += _curves(arts, workdir, ("reward_mean", "heldout_acc", "heldout_pass1"),
                     "RLVR reward and held-out accuracy", "rl-curves.png", "reward / accuracy")
    return lines


SFT = ReportSection("Post-training: SFT", sft_section, order=30)
DPO = ReportSection("Post-training: DPO", dpo_section, order=31)
RL = ReportSection("Post-training: RLVR", rl_section, order=32)
