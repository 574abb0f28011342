"""Evaluate every intermediate checkpoint of a run: a metric-vs-step table and PNG plots.

Checkpoints are ``RUN_DIR/checkpoints/step-N/`` (model.safetensors + config.json, the layout of
``olmoflow.train.checkpoint``); half-written ``.tmp-step-N`` directories are ignored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError
from olmoflow.eval.options import EvalOptions, eval_options

__all__ = ["list_step_dirs", "sweep_checkpoints", "plot_sweep", "sweep_figure"]

_STEP_RE = re.compile(r"^step-(\d+)$")


def list_step_dirs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, dir)`` of every complete checkpoint, by step."""
    root = Path(run_dir)
    if not root.is_dir():
        raise OlmoflowError(f"{root}: run directory not found")
    ck = root / "checkpoints" if (root / "checkpoints").is_dir() else root
    found = []
    for d in ck.iterdir():
        m = _STEP_RE.match(d.name)
        if m and d.is_dir() and ((d / "config.json").is_file() or (d / "model" / "config.json").is_file()):
            found.append((int(m.group(1)), d))
    if not found:
        raise OlmoflowError(f"{ck}: no step-N checkpoint directories (with config.json) found")
    return sorted(found)


def sweep_figure(rows: list[dict[str, Any]], title: str = ""):
    """The matplotlib figure of :func:`plot_sweep`: one panel per (task, metric) against step."""
    from olmoflow.plots import pyplot

    plt = pyplot()
    if plt is None:
        raise ImportError("matplotlib")

    keys = sorted({k for r in rows for k in r["metrics"]})
    n = max(1, len(keys))
    cols = min(3, n)
    nrows = (n + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r["step"], r["metrics"][key]) for r in rows if key in r["metrics"]]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(key.rsplit("/", 1)[-1], fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_sweep(rows: list[dict[str, Any]], out_png: Path, title: str = "") -> Path:
    """One subplot per (task, metric): metric value against training step."""
    from olmoflow.plots import save_figure

    return save_figure(sweep_figure(rows, title), out_png, dpi=100)


def sweep_checkpoints(
    run_dir: str | Path,
    tasks: EvalOptions | list[str] | str,
    out: str | Path | None = None,
    quiet: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate each checkpoint with ``tasks`` (an :class:`EvalOptions`, or task specs plus its
    fields as keywords, as for ``evaluate``); write ``sweep.json``, ``sweep.md`` (table) and
    ``sweep.png`` next to ``out`` (default ``RUN_DIR/eval/sweep.json``)."""
    from rich.table import Table

    from olmoflow.eval.evaluator import (
        evaluate_lm,
        find_tokenizer,
        load_model_and_tokenizer,
        model_provenance,
        resolve_tasks,
    )
    from olmoflow.eval.lm import HarnessLM
    from olmoflow.progress import make_console

    opts = eval_options(tasks, **options)
    specs = resolve_tasks(opts.task_specs(), opts.shots)
    steps = list_step_dirs(run_dir)
    tok_dir = Path(opts.tokenizer) if opts.tokenizer else find_tokenizer(steps[0][1])
    rows = []
    err = make_console(stderr=True, quiet=quiet)
    for i, (step, d) in enumerate(steps, 1):
        err.print(f"checkpoint {i}/{len(steps)}: step {step} ({d})", markup=False, highlight=False)
        model, tok = load_model_and_tokenizer(d, tok_dir, device=opts.device)
        lm = HarnessLM(model, tok, batch_size=opts.batch_size, max_length=opts.max_length, device=opts.device,
                       share_prefix=opts.share_prefix)
        res = evaluate_lm(lm, specs, limit=opts.limit, seed=opts.seed, quiet=quiet)
        metrics = {f"{name}/{k}": v for name, r in res.items() for k, v in r["metrics"].items()}
        rows.append({"step": step, "checkpoint": str(d), "model": model_provenance(d), "metrics": metrics,
                     "primary": {name: r["primary_metric"] for name, r in res.items()}})
    out_json = Path(out) if out else Path(run_dir) / "eval" / "sweep.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    result = {"run_dir": str(run_dir), "tokenizer": str(tok_dir), "seed": opts.seed, "limit": opts.limit,
              "max_length": opts.max_length, "device": str(opts.device),
              "tasks": {t.name: {"config": t.config(), "config_hash": t.config_hash()} for t in specs},
              "checkpoints": rows}
    out_json.write_text(json.dumps(result, indent=1) + "\n")
    keys = sorted({k for r in rows for k in r["metrics"]})
    lines = ["| step | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += ["| " + str(r["step"]) + " | " + " | ".join(f"{r['metrics'].get(k, float('nan')):.4f}" for k in keys) + " |"
              for r in rows]
    out_md = out_json.with_suffix(".md")
    out_md.write_text("\n".join(lines) + "\n")
    out_png = plot_sweep(rows, out_json.with_suffix(".png"), title=f"checkpoint sweep: {Path(run_dir).resolve().name}")
    result["files"] = {"json": str(out_json), "table": str(out_md), "plot": str(out_png)}
    if not quiet:
        primary = [f"{name}/{m}" for name, m in rows[0]["primary"].items()]
        table = Table(title=f"checkpoint sweep: {run_dir} (primary metrics; all in {out_md.name})")
        table.add_column("step", justify="right")
        for k in primary:
            table.add_column(k, justify="right", overflow="fold")
        for r in rows:
            table.add_row(str(r["step"]), *[f"{r['metrics'].get(k, float('nan')):.4f}" for k in primary])
        make_console().print(table)
        make_console().print(f"wrote {out_json}, {out_md}, {out_png}")
    return result
