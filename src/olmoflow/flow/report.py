"""The report card: ``WORKDIR/REPORT.md`` summarising every stage of the last run.

Sections: stages (status, wall time, key metrics), data funnel (curate's stats.json), training
loss (plot of pretrain's metrics.jsonl), evaluation (final metrics and the checkpoint sweep plot),
sample generation, lineage, environment. Anything missing says "not run"; the report never
crashes on a partial or failed run.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError
from olmoflow.flow.lineage import build_lineage, format_text
from olmoflow.flow.store import is_complete, read_manifest
from olmoflow.io import read_jsonl

__all__ = ["load_state", "write_report"]

NOT_RUN = "_not run_"


def load_state(workdir: Path) -> dict[str, Any]:
    """The last run's ``flow.json`` (stage -> artifact), or an error naming the workdir."""
    path = Path(workdir) / "flow.json"
    if not path.is_file():
        raise OlmoflowError(f"{workdir}: no flow.json (not a flow workdir, or nothing has run yet)")
    return json.loads(path.read_text())


def stage_artifacts(workdir: Path, state: dict[str, Any]) -> dict[str, tuple[Path, dict[str, Any]]]:
    """stage name -> (artifact dir, manifest) for the stages of the last run that completed."""
    out = {}
    for name, ent in (state.get("stages") or {}).items():
        if ent.get("artifact"):
            d = Path(workdir) / ent["artifact"]
            if is_complete(d):
                out[name] = (d, read_manifest(d))
    return out


def incomplete_stages(workdir: Path, state: dict[str, Any]) -> list[str]:
    """``"name (why)"`` for every stage of the last run without a complete artifact: failed, not
    run, or missing (its artifact directory was deleted or damaged since)."""
    stages = state.get("stages") or {}
    out = []
    for name in state.get("order") or list(stages):
        ent = stages.get(name) or {}
        if ent.get("artifact") and is_complete(Path(workdir) / ent["artifact"]):
            continue
        why = ("failed" if ent.get("status") == "failed" else
               f"missing: {Path(workdir) / ent['artifact']}" if ent.get("artifact") else "not run")
        out.append(f"{name} ({why})")
    return out


def _by_type(arts: dict[str, tuple[Path, dict]], *types: str) -> list[tuple[str, Path, dict]]:
    return [(n, d, m) for n, (d, m) in arts.items() if m.get("type") in types]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, int | float | str | bool) and not (isinstance(v, str) and len(v) > 60):
            out[key] = v
    return out


def key_metrics(metrics: dict[str, Any], limit: int = 6) -> str:
    flat = _flat(metrics or {})
    items = [f"{k}={_fmt(v)}" for k, v in list(flat.items())[:limit]]
    more = len(flat) - limit
    return ", ".join(items) + (f" (+{more} more)" if more > 0 else "") if items else "-"


# ---- sections -------------------------------------------------------------------------------

def _stages_section(state: dict[str, Any], arts: dict[str, tuple[Path, dict]]) -> list[str]:
    lines = ["## Stages", "", "| stage | type | status | wall time | artifact | key metrics |",
             "|---|---|---|---|---|---|"]
    for name in state.get("order") or list(state.get("stages") or {}):
        ent = (state.get("stages") or {}).get(name, {})
        if name in arts:
            _, m = arts[name]
            status = ent.get("status") or "done"
            status = "cached" if status == "cached" else "done"
            wall = f"{m.get('wall_s', 0):.1f} s"
            lines.append(f"| {name} | {m['type']} | {status} | {wall} | `{m['id'][:12]}` | "
                         f"{key_metrics(m.get('metrics') or {})} |")
        else:
            st = ent.get("status")
            label = "failed" if st == "failed" else "missing" if ent.get("artifact") else "not run"
            lines.append(f"| {name} | {ent.get('type', '?')} | {label} | - | - | - |")
    return lines + [""]


def _funnel_rows(stats: Any) -> list[tuple[str, Any, Any, Any, Any]]:
    """(step, docs_in, docs_out, tokens_in, tokens_out) from a curate stats.json, in a few shapes."""
    steps = stats.get("steps") if isinstance(stats, dict) else stats
    if isinstance(steps, dict):
        steps = [{"name": k, **v} for k, v in steps.items() if isinstance(v, dict)]
    rows = []
    for s in steps or []:
        if not isinstance(s, dict):
            continue
        name = s.get("name") or s.get("step") or "?"

        def g(*keys: str, s: dict = s) -> Any:
            return next((s[k] for k in keys if k in s), None)

        rows.append((str(name), g("docs_in", "documents_in", "in_docs"), g("docs_out", "documents_out", "kept", "out_docs"),
                     g("tokens_in", "bytes_in"), g("tokens_out", "bytes_out")))
    return rows


def _size_unit(stats: Any) -> str:
    """'tokens' if the curation stats count tokens, else 'bytes'."""
    steps = stats.get("steps") if isinstance(stats, dict) else stats
    first = next(iter(steps.values() if isinstance(steps, dict) else steps or []), {})
    return "tokens" if isinstance(first, dict) and "tokens_in" in first else "bytes"


def _save(fig, path: Path) -> bool:
    """Write a report figure (no software stamp: bytes depend only on the data) and free it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True


def funnel_figure(rows: list[tuple[str, Any, Any, Any, Any]], title: str):
    """Horizontal bars: documents kept after each curation step, first step on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if isinstance(r[2], int | float)]
    names = [r[0] for r in rows]
    kept = [r[2] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * max(len(rows), 1)), dpi=100)
    ax.barh(range(len(rows)), kept, color="#3b6ea8")
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()
    for y, (_, d_in, d_out, *_rest) in enumerate(rows):
        if isinstance(d_in, int | float) and d_in:
            ax.text(d_out, y, f" {d_out:,} ({100 * d_out / d_in:.0f}%)", va="center", fontsize=7)
    ax.set_xlim(0, max(kept, default=1) * 1.25 or 1)
    ax.set_xlabel("documents kept after step")
    ax.set_ylabel("curation step")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _funnel_plot(path: Path, rows: list[tuple[str, Any, Any, Any, Any]], title: str) -> bool:
    try:
        fig = funnel_figure(rows, title)
    except ImportError:
        return False
    return _save(fig, path)


def _funnel_section(arts: dict[str, tuple[Path, dict]], workdir: Path | None = None) -> list[str]:
    lines = ["## Data funnel", ""]
    cur = [(n, d, m) for n, (d, m) in arts.items() if m.get("type") == "curate" or (d / "stats.json").is_file()]
    if not cur:
        return lines + [NOT_RUN, ""]
    for name, d, _ in cur:
        path = next(iter(sorted(d.rglob("stats.json"))), None)
        if path is None:
            lines += [f"{name}: no stats.json", ""]
            continue
        stats = json.loads(path.read_text())
        rows = _funnel_rows(stats)
        if not rows:
            lines += [f"{name}: stats.json has no per-step counts", ""]
            continue
        unit = _size_unit(stats)
        lines += [f"{name}: from `{path.relative_to(d.parent.parent)}`", "",
                  f"| step | docs in | docs kept | {unit} in | {unit} kept |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append("| " + " | ".join(_fmt(x) if x is not None else "-" for x in r) + " |")
        lines.append("")
        if workdir is not None and any(isinstance(r[2], int | float) for r in rows):
            png = workdir / "report" / f"funnel-{name}.png"
            if _funnel_plot(png, rows, f"{name}: data funnel (documents kept per step)"):
                lines += [f"![{name} funnel](report/{png.name})", ""]
    toks = [(n, m, json.loads((d / "meta.json").read_text())) for n, (d, m) in arts.items() if (d / "meta.json").is_file()
            and m.get("type") in ("tokenize", "mix")]
    if toks:
        lines += ["Token datasets:", "", "| stage | docs | tokens | tokens per source |", "|---|---|---|---|"]
        for n, _m, meta in toks:
            per = ", ".join(f"{k}: {_fmt(v)}" for k, v in (meta.get("sources") or {}).items())
            lines.append(f"| {n} | {_fmt(meta.get('n_docs', '-'))} | {_fmt(meta.get('n_tokens', '-'))} | {per} |")
        lines.append("")
    return lines


def _plot(path: Path, series: dict[str, tuple[list, list]], xlabel: str, ylabel: str, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _plot_grid(path: Path, series: dict[str, tuple[list, list]], title: str, max_panels: int = 9) -> bool:
    """One small panel per metric (metrics have different scales); perplexity is left out when
    bits per byte is there (same information)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = [k for k in series if not ("perplexity" in k and any("bits_per_byte" in j for j in series))]
    keys = keys[:max_panels]
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.5 * rows), dpi=100, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        xs, ys = series[key]
        ax.plot(xs, ys, marker="o")
        ax.set_title(key if len(key) <= 40 else "…" + key[-39:], fontsize=8)
        ax.set_xlabel("training step", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _loss_section(workdir: Path, arts: dict[str, tuple[Path, dict]]) -> list[str]:
    lines = ["## Training loss", ""]
    runs = [(n, d, m) for n, (d, m) in arts.items() if (d / "metrics.jsonl").is_file()
            or m.get("type") in ("pretrain", "midtrain", "longcontext", "sft")]
    found = False
    for name, d, _ in runs:
        path = d / "metrics.jsonl"
        if not path.is_file():
            path = next(iter(sorted(d.rglob("metrics.jsonl"))), None)
        if path is None:
            continue
        recs = [r for r in read_jsonl(path, skip_bad=True) if "step" in r and "loss" in r]
        if not recs:
            continue
        found = True
        png = workdir / "report" / f"loss-{name}.png"
        ok = _plot(png, {"loss": ([r["step"] for r in recs], [r["loss"] for r in recs])}, "step", "loss",
                   f"{name}: training loss")
        first, last = recs[0], recs[-1]
        lines.append(f"{name}: {len(recs)} logged steps, loss {first['loss']:.4g} (step {first['step']}) -> "
                     f"{last['loss']:.4g} (step {last['step']})")
        lines += ["", f"![{name} loss](report/{png.name})" if ok else "(matplotlib missing: no plot)", ""]
    return lines + ([] if found else [NOT_RUN, ""])


def _sweep_points(d: Path, m: dict) -> dict[str, tuple[list, list]]:
    """metric -> (steps, values) from an eval artifact's checkpoint sweep, in a few shapes."""
    path = next(iter(sorted(d.rglob("sweep.json"))), None) or next(iter(sorted(d.rglob("checkpoints.json"))), None)
    data: Any = json.loads(path.read_text()) if path else (m.get("metrics") or {}).get("sweep")
    if isinstance(data, dict) and "checkpoints" in data:
        data = data["checkpoints"]
    if isinstance(data, dict):  # {step: {metric: value}}
        data = [{"step": k, **v} for k, v in data.items() if isinstance(v, dict)]
    series: dict[str, tuple[list, list]] = {}
    for row in data or []:
        if not isinstance(row, dict) or "step" not in row:
            continue
        try:
            step = int(row["step"])
        except (TypeError, ValueError):
            continue
        for k, v in _flat({k: v for k, v in row.items() if k not in ("step", "model")}).items():
            k = k.removeprefix("metrics.")
            if isinstance(v, int | float) and not isinstance(v, bool):
                xs, ys = series.setdefault(k, ([], []))
                xs.append(step)
                ys.append(v)
    return series


def _eval_section(workdir: Path, arts: dict[str, tuple[Path, dict]]) -> list[str]:
    lines = ["## Evaluation", ""]
    evs = [(n, d, m) for n, (d, m) in arts.items() if m.get("type") == "evaluate" or (d / "sweep.json").is_file()]
    if not evs:
        return lines + [NOT_RUN, ""]
    for name, d, m in evs:
        flat = _flat({k: v for k, v in (m.get("metrics") or {}).items() if k != "sweep"})
        if flat:
            lines += [f"{name} (final model):", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]
            lines.append("")
        series = _sweep_points(d, m)
        if series:
            png = workdir / "report" / f"eval-{name}.png"
            ok = _plot_grid(png, series, f"{name}: metrics over checkpoints")
            lines += [f"Checkpoint sweep: {len(next(iter(series.values()))[0])} checkpoints, "
                      f"{len(series)} metrics.", "",
                      f"![{name} sweep](report/{png.name})" if ok else "(matplotlib missing: no plot)", ""]
        else:
            lines += ["Checkpoint sweep: " + NOT_RUN, ""]
    return lines


def _sample_section(arts: dict[str, tuple[Path, dict]]) -> tuple[list[str], str | None]:
    for _, (d, _m) in reversed(list(arts.items())):
        p = d / "sample.json"
        if p.is_file():
            s = json.loads(p.read_text())
            text = f"{s.get('prompt', '')}{s.get('completion', '')}"
            return ["## Sample generation", "", f"Prompt: `{s.get('prompt', '')!s}` (greedy, "
                    f"{s.get('max_new_tokens', '?')} new tokens)", "", "```", text, "```", ""], text
    return ["## Sample generation", "", NOT_RUN, ""], None


def _lineage_section(state: dict[str, Any], arts: dict[str, tuple[Path, dict]], workdir: Path) -> list[str]:
    lines = ["## Lineage", ""]
    order = [n for n in (state.get("order") or []) if n in arts]
    if not order:
        return lines + [NOT_RUN, ""]
    final = order[-1]
    try:
        lin = build_lineage(arts[final][0], workdir)
    except OlmoflowError as e:
        return lines + [f"lineage unavailable: {e}", ""]
    srcs = ", ".join([n.label.removeprefix("source ") for n in lin.sources()]
                     + [f"{n.label} (generated, no inputs)" for n in lin.roots()]) or "none"
    lines += [f"Final artifact `{arts[final][1]['id'][:12]}` ({final}) descends from {len(lin.stages())} "
              f"artifacts; raw sources: {srcs}.", ""]
    if state.get("fork"):
        f = state["fork"]
        lines += [f"Forked from `{f.get('from')}` at stage {f.get('stage')} (input {f.get('input')}).", ""]
    return lines + ["```", format_text(lin), "```", ""]


def _env_section(arts: dict[str, tuple[Path, dict]]) -> list[str]:
    lines = ["## Environment", ""]
    if not arts:
        return lines + [NOT_RUN, ""]
    m = list(arts.values())[-1][1]
    env, code = m.get("environment") or {}, m.get("code_version") or {}
    lines += ["| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    lines += [f"| code version | {code.get('version')} |",
              f"| git commit | {code.get('git_commit') or 'n/a'}{' (dirty)' if code.get('git_dirty') else ''} |", ""]
    return lines


def write_report(workdir: Path) -> tuple[Path, str | None]:
    """Write ``WORKDIR/REPORT.md`` (+ ``report/*.png``); returns (path, sample generation or None)."""
    workdir = Path(workdir).resolve()
    state = load_state(workdir)
    arts = stage_artifacts(workdir, state)
    total = sum((m.get("wall_s") or 0) for _, m in arts.values())
    sample_lines, sample = _sample_section(arts)
    lines = [f"# olmoflow report: {state.get('flow')}", "",
             f"- flow file: `{state.get('source')}`", f"- seed: {state.get('seed')}",
             f"- workdir: `{workdir}`", f"- run: {state.get('started')} -> {state.get('ended')}",
             f"- stages complete: {len(arts)}/{len(state.get('order') or [])}, "
             f"total stage wall time {total:.1f} s",
             f"- report written {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}", ""]
    for section in (lambda: _stages_section(state, arts), lambda: _funnel_section(arts, workdir),
                    lambda: _loss_section(workdir, arts), lambda: _eval_section(workdir, arts),
                    lambda: sample_lines, lambda: _lineage_section(state, arts, workdir),
                    lambda: _env_section(arts)):
        try:
            lines += section()
        except Exception as e:  # noqa: BLE001 - a report with one broken section beats no report
            lines += [f"(section failed: {type(e).__name__}: {e})", ""]
    out = workdir / "REPORT.md"
    out.write_text("\n".join(lines))
    return out, sample
