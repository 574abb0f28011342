"""Stage ``curate``: a curation recipe over documents (olmoflow.data.curate.curate).

Config: ``recipe`` (an inline recipe mapping; default: the packaged Dolma-3-style recipe),
``overrides`` (``["langid.min_score=0.5", ...]``), ``workers``, ``executor``. The resolved config
holds the full recipe (overrides applied), so editing the recipe reruns the stage. Inputs: ``docs``
(a Dolma JSONL file or directory) and optional ``decontaminate`` (eval items: a JSONL file or a
directory of them). Output: ``documents/`` (kept docs), ``removed/``, ``quarantine/``,
``stats.json``, ``report.md``. Report: the data funnel (documents kept per step, plot).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from olmoflow.flow.registry import (
    ReleaseFiles,
    ReportSection,
    StageArtifact,
    StageConfig,
    StageContext,
    register_stage,
)
from olmoflow.flow.report import fmt
from olmoflow.flow.stages._common import files_in, need
from olmoflow.plots import pyplot, save_figure


class CurateConfig(StageConfig):
    #: the recipe, inline (None: the packaged Dolma-3-style recipe)
    recipe: dict[str, Any] | None = None
    #: recipe overrides (``langid.min_score=0.5``); folded into ``recipe`` when resolved
    overrides: list[str] = Field(default_factory=list)
    workers: int = Field(2, ge=1)
    executor: Literal["local", "ray"] = "local"

    @field_validator("recipe", mode="before")
    @classmethod
    def _inline(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, dict):
            raise ValueError("give the recipe inline as a mapping (or leave it out for the default)")
        return v

    def resolved(self) -> dict[str, Any]:
        """The full, validated recipe with the overrides applied (fails now on a bad recipe)."""
        from olmoflow.data.recipe import load_recipe

        rec = load_recipe(self.recipe, self.overrides)
        return {"recipe": rec.to_dict(), "overrides": [], "workers": self.workers, "executor": self.executor}


# ---- report: the data funnel ---------------------------------------------------------------------

def funnel_rows(stats: Any) -> list[tuple[str, Any, Any, Any, Any]]:
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


def funnel_figure(rows: list[tuple[str, Any, Any, Any, Any]], title: str):
    """Horizontal bars: documents kept after each curation step, first step on top."""
    plt = pyplot()
    if plt is None:
        raise ImportError("matplotlib")
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


def funnel_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    """Per curate stage: a table of documents (and tokens or bytes) in/kept per step, and its plot."""
    lines: list[str] = []
    for a in arts:
        path = next(iter(sorted(a.dir.rglob("stats.json"))), None)
        if path is None:
            lines += [f"{a.name}: no stats.json", ""]
            continue
        stats = json.loads(path.read_text())
        rows = funnel_rows(stats)
        if not rows:
            lines += [f"{a.name}: stats.json has no per-step counts", ""]
            continue
        unit = _size_unit(stats)
        lines += [f"{a.name}: from `{path.relative_to(a.dir.parent.parent)}`", "",
                  f"| step | docs in | docs kept | {unit} in | {unit} kept |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(fmt(x) if x is not None else "-" for x in r) + " |" for r in rows]
        lines.append("")
        if any(isinstance(r[2], int | float) for r in rows):
            png = workdir / "report" / f"funnel-{a.name}.png"
            try:
                save_figure(funnel_figure(rows, f"{a.name}: data funnel (documents kept per step)"), png)
                lines += [f"![{a.name} funnel](report/{png.name})", ""]
            except ImportError:
                lines += ["(matplotlib missing: no plot)", ""]
    return lines


FUNNEL = ReportSection("Data funnel", funnel_section, order=10)
#: curation statistics and decontamination / quarantine reports go into the bundle's data/
DATA_FILES = tuple(ReleaseFiles(pat, "data/{stage}/") for pat in ("stats.json", "*decontam*", "*report*.json",
                                                                   "quarantine*"))


@register_stage("curate", description="curate documents (olmoflow.data.curate)", config=CurateConfig,
                report=(FUNNEL,), release=DATA_FILES,
                libraries=("numpy", "lingua-language-detector", "rensa", "pydivsufsort", "xxhash", "fasttext-numpy2"),
                # curation/ records hold the raw inputs' absolute paths (derived from inputs already hashed)
                volatile_files=("_work/*", "timing.json", "report.md", "curation/*"),
                volatile_keys={"stats.json": ("run_hash", "seconds")})
def run(config: CurateConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.data.curate import curate

    docs = need(inputs, "docs", ctx.stage, "Dolma JSONL documents")
    decon = files_in(inputs["decontaminate"]) if inputs.get("decontaminate") is not None else []
    summary = curate(files_in(docs), out_dir, recipe=config.recipe, overrides=config.overrides,
                     decontaminate=decon, workers=config.workers, executor=config.executor, quiet=ctx.quiet)
    acc = summary.get("accounting", {})
    out = {"docs_in": acc.get("docs_in"), "docs_kept": acc.get("kept"), "docs_removed": acc.get("removed"),
           "quarantined": acc.get("quarantined"), "balanced": acc.get("balanced")}
    if "decontamination" in summary:
        out["decontaminated_docs"] = summary["decontamination"].get("n_docs_removed")
        out["eval_items_matched"] = summary["decontamination"].get("n_items_matched")
    return out
