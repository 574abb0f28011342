"""The report card: ``WORKDIR/REPORT.md`` summarising every stage of the last run.

Sections: the report card (``flow/card.py``: the final model, training per stage, every evaluation
after every stage with intervals and chance, notes, next commands); stages (status, wall time, key
metrics); then the sections the run's stage types
contribute through their registry entry (``ReportSection``: curate's data funnel, tokenize's token
counts, pretrain's training loss, evaluate's results and checkpoint sweep, ...); the sample
generation (``sample.json``, written by export or any stage); lineage; environment. A section whose
stages did not complete says "not run"; the report never crashes on a partial or failed run.

The helpers below (``fmt``, ``flat``, ``plot_series``, ``plot_grid``) are for stage types' section
renderers; figures are saved with ``olmoflow.plots.save_figure``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError
from olmoflow.flow.card import report_card
from olmoflow.flow.lineage import build_lineage, format_text
from olmoflow.flow.registry import STAGES, StageArtifact, load_builtin_stages, load_plugins
from olmoflow.flow.store import is_complete, read_manifest
from olmoflow.plots import pyplot, save_figure

__all__ = ["NOT_RUN", "flat", "fmt", "load_state", "plot_grid", "plot_series", "table_with_figure", "write_report"]

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


def fmt(v: Any) -> str:
    """A number for a table: 4 significant digits, thousands separators for integers."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": scalar}`` (long strings left out)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, key + "."))
        elif isinstance(v, int | float | str | bool) and not (isinstance(v, str) and len(v) > 60):
            out[key] = v
    return out


def key_metrics(metrics: dict[str, Any], limit: int = 6) -> str:
    flattened = flat(metrics or {})
    items = [f"{k}={fmt(v)}" for k, v in list(flattened.items())[:limit]]
    more = len(flattened) - limit
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
    missing = [(n, piece, why) for n, (_, m) in arts.items() for piece, why in (m.get("optional_missing") or {}).items()]
    if missing:  # (the runner also says so on the console; availability is part of the stage's cache key)
        lines += ["", "Optional parts missing (the stage ran without them; make them available and run again, "
                  "and the stage runs again to include them):", ""]
        lines += [f"- {n}: `{piece}` — {why}" for n, piece, why in missing]
    return lines + [""]


def plot_series(path: Path, series: dict[str, tuple[list, list]], xlabel: str, ylabel: str, title: str) -> bool:
    """One line per ``label -> (xs, ys)`` in one panel, saved to ``path``; False without matplotlib."""
    plt = pyplot()
    if plt is None:
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
    save_figure(fig, path)
    return True


def plot_grid(path: Path, series: dict[str, tuple[list, list]], title: str, max_panels: int = 9) -> bool:
    """One small panel per metric (metrics have different scales); perplexity is left out when
    bits per byte is there (same information)."""
    plt = pyplot()
    if plt is None:
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
    save_figure(fig, path)
    return True


def table_with_figure(a: StageArtifact, workdir: Path, figure: str, caption: str, heading: str = "") -> list[str]:
    """A stage's ``table.md`` under ``NAME: heading``, then its ``figure`` copied into ``workdir/report/``
    (for stages that write their own table and plot); nothing when the table is missing."""
    import shutil

    if not (a.dir / "table.md").is_file():
        return []
    lines = [f"{a.name}:" + (f" {heading}" if heading else ""), "", *(a.dir / "table.md").read_text().splitlines(), ""]
    if (a.dir / figure).is_file():
        dest = workdir / "report" / f"{a.manifest.get('type', 'stage')}-{a.name}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(a.dir / figure, dest)
        lines += [f"![{caption}](report/{dest.name})", ""]
    return lines


def _sample_section(arts: dict[str, tuple[Path, dict]]) -> tuple[list[str], str | None]:
    """The last ``sample.json`` ({prompt, completion, max_new_tokens}) any stage wrote (export does)."""
    for _, (d, _m) in reversed(list(arts.items())):
        p = d / "sample.json"
        if p.is_file():
            s = json.loads(p.read_text())
            text = f"{s.get('prompt', '')}{s.get('completion', '')}"
            return ["## Sample generation", "", f"Prompt: `{s.get('prompt', '')!s}` (greedy, "
                    f"{s.get('max_new_tokens', '?')} new tokens)", "", "```", text, "```", ""], text
    return ["## Sample generation", "", NOT_RUN, ""], None


def register_run_stage_types(state: dict[str, Any]) -> list[str]:
    """Register the built-in stage types and those of the run's ``plugins:`` (for their report
    sections and release files); a plugin that cannot be loaded is returned as a report line."""
    load_builtin_stages()
    plugins = (state.get("resolved_flow") or {}).get("plugins") or []
    if not plugins:
        return []
    base = Path(state["source"]).parent if state.get("source") else Path.cwd()
    try:
        load_plugins(list(plugins), base)
    except Exception as e:  # noqa: BLE001 - a moved plugin file costs its sections, not the report
        return [f"(plugins not loaded: {type(e).__name__}: {e})", ""]
    return []


def stage_sections(state: dict[str, Any], arts: dict[str, tuple[Path, dict]], workdir: Path) -> list[str]:
    """The sections contributed by the run's stage types (registry ``report``), merged by title:
    each renderer gets the completed stages of the types that use it; no completed stage: not run."""
    lines = register_run_stage_types(state)
    stages = state.get("stages") or {}
    # title -> (order, [(renderer, [artifacts])]) in flow order
    titles: dict[str, tuple[int, list[tuple[Any, list[StageArtifact]]]]] = {}
    for name in state.get("order") or list(stages):
        st = STAGES.get((stages.get(name) or {}).get("type", ""))
        for sec in st.report if st is not None else ():
            order, groups = titles.setdefault(sec.title, (sec.order, []))
            titles[sec.title] = (min(order, sec.order), groups)
            group = next((g for g in groups if g[0] is sec.render), None)
            if group is None:
                group = (sec.render, [])
                groups.append(group)
            if name in arts:
                group[1].append(StageArtifact(name, *arts[name]))
    for title, (_, groups) in sorted(titles.items(), key=lambda kv: kv[1][0]):
        lines += [f"## {title}", ""]
        body: list[str] = []
        for render, done in groups:
            if not done:
                continue
            try:
                body += render(done, workdir)
            except Exception as e:  # noqa: BLE001 - a report with one broken section beats no report
                body += [f"(section failed: {type(e).__name__}: {e})", ""]
        lines += body or [NOT_RUN, ""]
    return lines


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
    for section in (lambda: report_card(state, arts, workdir), lambda: _stages_section(state, arts),
                    lambda: stage_sections(state, arts, workdir),
                    lambda: sample_lines, lambda: _lineage_section(state, arts, workdir),
                    lambda: _env_section(arts)):
        try:
            lines += section()
        except Exception as e:  # noqa: BLE001 - a report with one broken section beats no report
            lines += [f"(section failed: {type(e).__name__}: {e})", ""]
    out = workdir / "REPORT.md"
    out.write_text("\n".join(lines))
    return out, sample
