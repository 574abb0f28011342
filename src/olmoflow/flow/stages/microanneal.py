"""Stage ``microanneal``: does a candidate dataset earn its place in the midtraining mix?

From one checkpoint (input ``init_from``), anneal (midtrain's settings: lr linearly to 0) on the
``baseline`` token dataset alone, and for every other token-dataset input on ``candidate_share``
of that candidate + the rest baseline, all for the same number of tokens and with the same seed;
then evaluate the start and every anneal on ``tasks`` (evaluate-stage specs; ``{inputs.NAME}``
names an input). Several candidates share the one baseline run.

Output: ``runs/<name>/`` (each a training run dir), ``results.json`` (metrics per run),
``table.md`` (per-task deltas vs the baseline anneal, candidates ranked by mean delta) and
``deltas.png``. ``olmoflow microanneal --config FILE`` runs the same from the command line.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pydantic import Field

from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import ReportSection, StageArtifact, StageContext, register_stage
from olmoflow.flow.stages._common import model_dir, need
from olmoflow.flow.stages.midtrain import anneal_config, midtrain_config_class

#: metrics where lower is better (perplexity-style)
LOWER_IS_BETTER = ("bits_per_byte", "loss", "ppl")


@functools.cache
def config_class():
    base = midtrain_config_class()

    class MicroannealConfig(base):  # type: ignore[misc, valid-type]
        #: share of each candidate in its anneal (the rest is baseline); OLMo 3: 50/50
        candidate_share: float = Field(0.5, gt=0, le=1)
        #: eval task specs (evaluate-stage syntax, ``{inputs.NAME}`` allowed)
        tasks: list[str] = Field(min_length=1)
        limit: int | None = Field(None, ge=1)
        eval_batch_size: int = Field(8, ge=1)

    return MicroannealConfig


def _primary(metrics: dict[str, Any]) -> dict[str, float]:
    """task -> its primary metric value from evaluate()'s result."""
    out = {}
    for name, r in metrics.items():
        m = r.get("metrics", r)
        key = r.get("primary_metric") or next(iter(m), None)
        if key in m and isinstance(m[key], int | float):
            out[f"{name} ({key})"] = float(m[key])
    return out


def _better(metric: str, delta: float) -> float:
    return -delta if any(k in metric for k in LOWER_IS_BETTER) else delta


def table(results: dict[str, dict[str, float]], candidates: list[str]) -> list[str]:
    """Markdown: per metric, start / baseline / each candidate (delta vs baseline); then the ranking."""
    metrics = list(results["baseline"])
    head = "| metric | start | baseline | " + " | ".join(f"{c} (Δ)" for c in candidates) + " |"
    lines = [head, "|---" * (3 + len(candidates)) + "|"]
    for m in metrics:
        cells = [f"{results['start'].get(m, float('nan')):.4g}", f"{results['baseline'][m]:.4g}"]
        cells += [f"{results[c][m]:.4g} ({results[c][m] - results['baseline'][m]:+.4g})" for c in candidates]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    first = metrics[0]
    wins = {c: sum(_better(m, results[c][m] - results["baseline"][m]) > 0 for m in metrics) for c in candidates}
    ranked = sorted(candidates, key=lambda c: (-_better(first, results[c][first] - results["baseline"][first]), -wins[c]))
    lines += ["", f"Ranking by the first task, {first} (then by the number of metrics improved): "
              + ", ".join(f"{i + 1}. {c} ({results[c][first] - results['baseline'][first]:+.4g}; better than the "
                          f"baseline anneal on {wins[c]} of {len(metrics)})" for i, c in enumerate(ranked))]
    return lines


def _plot(results: dict[str, dict[str, float]], candidates: list[str], path: Path) -> bool:
    from olmoflow.plots import pyplot, save_figure

    plt = pyplot()
    if plt is None:
        return False
    metrics = list(results["baseline"])
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(metrics)), 3.5))
    w = 0.8 / max(1, len(candidates))
    for j, c in enumerate(candidates):
        xs = [i + j * w for i in range(len(metrics))]
        ax.bar(xs, [results[c][m] - results["baseline"][m] for m in metrics], width=w, label=c)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([i + w * (len(candidates) - 1) / 2 for i in range(len(metrics))])
    ax.set_xticklabels([m.replace(" (", "\n(") for m in metrics], fontsize=7)
    ax.set_ylabel("candidate - baseline")
    ax.set_title("microanneal: eval deltas vs the baseline anneal")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def microanneal_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    from olmoflow.flow.report import table_with_figure

    return [ln for a in arts for ln in table_with_figure(a, workdir, "deltas.png", f"{a.name} deltas")]


MICROANNEAL = ReportSection("Microanneals", microanneal_section, order=21)


@register_stage("microanneal", description="anneal on candidate + baseline data vs baseline alone; eval deltas",
                config=config_class, report=(MICROANNEAL,), libraries=("torch", "numpy", "safetensors", "tokenizers"),
                volatile_files=("runs/*/log.jsonl", "runs/*/checkpoints/*/rng.json", "runs/*/checkpoints/*/manifest.json",
                                "deltas.png"),
                volatile_keys={"runs/*/metrics.jsonl": ("tokens_per_s",)})
def run(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    import contextlib

    from olmoflow.eval.evaluator import evaluate
    from olmoflow.eval.options import eval_options
    from olmoflow.flow.stages.evaluate import _fill
    from olmoflow.flow.stages.midtrain import _train

    init = need(inputs, "init_from", ctx.stage, "the checkpoint to anneal from")
    baseline = str(need(inputs, "baseline", ctx.stage, "the baseline token dataset"))
    cands = {k: str(v) for k, v in sorted(inputs.items())
             if k not in ("init_from", "baseline", "tokenizer", "val") and (Path(v) / "meta.json").is_file()}
    if not cands:
        raise OlmoflowError(f"stage {ctx.stage!r}: needs at least one candidate token dataset input besides 'baseline'")
    if "baseline" in cands or "start" in cands:
        raise OlmoflowError(f"stage {ctx.stage!r}: an input may not be named 'start'")
    share = config.candidate_share
    wd = Path(ctx.workdir).resolve()
    tasks = [_fill(t, inputs, ctx.stage, wd) for t in config.tasks]
    tok = inputs.get("tokenizer")
    opts = eval_options(tasks, limit=config.limit, batch_size=config.eval_batch_size, seed=ctx.seed,
                        tokenizer=str(tok) if tok is not None else None)
    runs = {"baseline": ({"baseline": baseline}, {"baseline": 1.0})}
    for c, path in cands.items():
        runs[c] = ({"baseline": baseline, c: path}, {"baseline": 1.0 - share, c: share})
    results: dict[str, dict[str, float]] = {}
    with contextlib.chdir(wd):
        results["start"] = _primary(evaluate(model_dir(init), opts, quiet=True)["tasks"])
    train_metrics = {}
    for name, (datasets, mix) in runs.items():
        run_dir = out_dir / "runs" / name
        cfg = anneal_config(config, inputs, run_dir, ctx, datasets, mix, init)
        train_metrics[name] = _train(cfg, datasets, ctx, run_dir, f"microanneal:{name}")
        with contextlib.chdir(wd):
            res = evaluate(run_dir / "final", opts, out=run_dir / "eval.json", quiet=True)
        results[name] = _primary(res["tasks"])
    (out_dir / "results.json").write_text(json.dumps({"results": results, "train": train_metrics,
                                                      "candidate_share": share}, indent=1) + "\n")
    lines = table(results, list(cands))
    (out_dir / "table.md").write_text("\n".join(lines) + "\n")
    _plot(results, list(cands), out_dir / "deltas.png")
    return {"results": results}


def microanneal_main(argv: list[str]) -> int:
    """``olmoflow microanneal --config FLOW_STAGE.yaml --out DIR INPUT=PATH ...``: the stage outside a flow."""
    import argparse

    from olmoflow.config import validate
    from olmoflow.flow.registry import StageContext

    ap = argparse.ArgumentParser(prog="olmoflow microanneal",
                                 description="anneal a checkpoint on candidate+baseline vs baseline data; eval deltas")
    ap.add_argument("--config", required=True, help="YAML with the stage config (steps, tasks, candidate_share, ...)")
    ap.add_argument("--out", required=True, help="output dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("inputs", nargs="+", help="NAME=PATH: init_from=, baseline=, tokenizer=, and candidates")
    args = ap.parse_args(argv)
    import yaml

    raw = yaml.safe_load(Path(args.config).read_text()) or {}
    cfg = validate(config_class(), raw, args.config)
    inputs = {}
    for item in args.inputs:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise OlmoflowError(f"input {item!r}: give NAME=PATH")
        if not Path(path).exists():
            raise OlmoflowError(f"input {name!r}: {path} does not exist")
        inputs[name] = Path(path).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(stage="microanneal", seed=args.seed, workdir=Path.cwd(), quiet=args.quiet)
    run(cfg, inputs, out, ctx)
    print((out / "table.md").read_text())
    return 0
