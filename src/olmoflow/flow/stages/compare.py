"""Stage ``compare``: several models on the same tasks, side by side (the controls of a staged flow).

Inputs: every input but ``tokenizer`` and those named by the tasks (``{inputs.NAME}``) is a model
(a training run artifact, soup or model dir), compared in the order of ``models`` (default: input
names sorted). Config: ``tasks`` (evaluate-stage specs); a spec containing ``{length}`` is run once
per entry of ``lengths`` (``passkey:{length}:{inputs.tokenizer}``) and also plotted as the primary
metric against the length, one line per model; ``limit``, ``batch_size``.

Output: ``results.json`` (model -> task -> primary metric), ``table.md``, ``by_length.png``.
Report: the table and the plot (e.g. midtraining vs continued pretraining on held-out math; passkey
accuracy at 1x/2x/4x the original context before and after a context extension).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import Field

from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import ReportSection, StageArtifact, StageConfig, StageContext, register_stage
from olmoflow.flow.stages._common import model_dir

_REF = re.compile(r"\{inputs\.([A-Za-z0-9_\-]+)\}")


class CompareConfig(StageConfig):
    tasks: list[str] = Field(min_length=1)
    lengths: list[int] = Field(default_factory=list)
    #: model inputs in table order (None: sorted input names)
    models: list[str] | None = None
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    #: a sentence for the report saying what is compared and what the control is
    claim: str = ""


def _plot(results: dict[str, dict[str, float]], groups: dict[str, list[tuple[int, str]]], path: Path) -> bool:
    from olmoflow.plots import pyplot, save_figure

    plt = pyplot()
    if plt is None or not groups:
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    for ax, (family, pts) in zip(axes[0], groups.items()):
        for model, res in results.items():
            ax.plot([x for x, _ in pts], [res[t] for _, t in pts], marker="o", label=model)
        ax.set_xscale("log", base=2)
        ax.set_xticks([x for x, _ in pts])
        ax.set_xticklabels([str(x) for x, _ in pts])
        ax.set_xlabel("prompt length (tokens)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(family, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def compare_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    from olmoflow.flow.report import table_with_figure

    return [ln for a in arts for ln in table_with_figure(
        a, workdir, "by_length.png", f"{a.name}: accuracy vs length", (a.manifest.get("config") or {}).get("claim") or "")]


COMPARE = ReportSection("Model comparisons", compare_section, order=35)


@register_stage("compare", description="evaluate several models on the same tasks, side by side",
                config=CompareConfig, report=(COMPARE,), libraries=("torch", "tokenizers"),
                volatile_files=("by_length.png",))
def run(config: CompareConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.eval.evaluator import evaluate
    from olmoflow.eval.options import eval_options
    from olmoflow.flow.stages.evaluate import _fill

    named = {m for t in config.tasks for m in _REF.findall(t)}
    models = config.models or [k for k in sorted(inputs) if k != "tokenizer" and k not in named]
    missing = [m for m in models if m not in inputs]
    if missing or not models:
        raise OlmoflowError(f"stage {ctx.stage!r}: key 'models' names {missing or models}, which are not inputs")
    wd = Path(ctx.workdir).resolve()
    specs: list[tuple[str, str, int | None, str]] = []  # (label, spec, length, family)
    for t in config.tasks:
        family = t.split(":")[0]
        if "{length}" in t:
            if not config.lengths:
                raise OlmoflowError(f"stage {ctx.stage!r}: task {t!r} uses {{length}} but key 'lengths' is empty")
            specs += [(f"{family}:{n}", _fill(t.replace("{length}", str(n)), inputs, ctx.stage, wd), n, family)
                      for n in config.lengths]
        else:
            specs.append((t.split(":{")[0].split(":/")[0], _fill(t, inputs, ctx.stage, wd), None, family))
    tok = inputs.get("tokenizer")
    opts = eval_options([s for _, s, _, _ in specs], limit=config.limit, batch_size=config.batch_size, seed=ctx.seed,
                        tokenizer=str(tok) if tok is not None else None)
    results: dict[str, dict[str, float]] = {}
    metric_of: dict[str, str] = {}
    with contextlib.chdir(wd):
        for m in models:
            res = evaluate(model_dir(inputs[m]), opts, quiet=True)["tasks"]
            row = {}
            for (label, _, _, _), r in zip(specs, res.values()):
                row[label] = float(r["metrics"][r["primary_metric"]])
                metric_of[label] = r["primary_metric"]
            results[m] = row
    lines = ["| task (metric) | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for label, _, _, _ in specs:
        lines.append(f"| {label} ({metric_of[label]}) | " + " | ".join(f"{results[m][label]:.3f}" for m in models) + " |")
    n_items = config.limit
    lines += ["", f"{n_items or 'all'} items per task, seed {ctx.seed}."]
    groups: dict[str, list[tuple[int, str]]] = {}
    for label, _, n, family in specs:
        if n is not None:
            groups.setdefault(family, []).append((n, label))
    (out_dir / "results.json").write_text(json.dumps({"results": results, "metrics": metric_of}, indent=1) + "\n")
    (out_dir / "table.md").write_text("\n".join(lines) + "\n")
    _plot(results, groups, out_dir / "by_length.png")
    return {"results": results}
