"""The report card at the top of REPORT.md: how good the flow's model is, what each stage added, and
what to do next (after nanochat's report card).

It reads only what stages already write: manifests (wall time, tokens, metrics), each training
stage's ``metrics.jsonl`` (loss curves) and each evaluation's ``results.json`` (primary metric, item
count, per-item scores). Rows are evaluations, columns are the models they scored in flow order, so a
stage's contribution is the change from one column to the next; every accuracy carries its binomial
95% interval (Wilson) and the chance level, so a reader can tell a gain from noise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from olmoflow.io import read_jsonl
from olmoflow.plots import pyplot, save_figure

__all__ = ["final_model", "next_commands", "report_card", "wilson_interval"]

#: metrics where lower is better
LOWER_IS_BETTER = ("bits_per_byte", "perplexity", "loss")


def wilson_interval(p: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% binomial (Wilson score) interval of an accuracy ``p`` measured on ``n`` items."""
    if n <= 0:
        return (0.0, 1.0)
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def final_model(state: dict[str, Any], arts: dict[str, tuple[Path, dict]]) -> tuple[str, Path] | None:
    """(stage, checkpoint dir) of the last completed stage, in flow order, that produced a model (a
    ``final/`` checkpoint with its config: any training stage, plugins' included)."""
    for name in reversed([n for n in state.get("order") or [] if n in arts]):
        d, _ = arts[name]
        if (d / "final" / "config.json").is_file():
            return name, d / "final"
    return None


def next_commands(model: Path, workdir: Path) -> list[tuple[str, str]]:
    """(what, command) to use and fork a flow's final model."""
    return [("chat with it", f"olmoflow chat --model {model}"),
            ("serve it (OpenAI API + web chat)", f"olmoflow serve --model {model}"),
            ("evaluate it", f"olmoflow eval --model {model} --tasks arc_easy"),
            ("fork the flow from one of its checkpoints",
             f"olmoflow fork --from {model} --flow FLOW.yaml --workdir {workdir.parent / (workdir.name + '-fork')}")]


# ---- evaluations ------------------------------------------------------------------------------

def _chance(task: dict[str, Any]) -> float | None:
    """Chance level of a task's primary metric: 1/choices for ranked choices, 0 for free-form
    answers, None where chance is not a number (perplexity)."""
    kind = (task.get("config") or {}).get("kind")
    items = task.get("items") or []
    if kind in ("rc", "mc") and items and all("loglikelihoods" in it for it in items):
        return sum(1 / len(it["loglikelihoods"]) for it in items) / len(items)
    if kind in ("gen", "chat", "code", "ruler") or kind is None and "exact_match" in (task.get("metrics") or {}):
        return 0.0
    return None


def eval_rows(state: dict[str, Any], arts: dict[str, tuple[Path, dict]]) -> tuple[list[str], dict]:
    """(model stages in flow order, {task: {"metric", "chance", stage: (value, n)}}) from every
    completed evaluation's results.json; a model scored twice on a task keeps the larger sample."""
    order = [n for n in state.get("order") or [] if n in arts]
    tasks: dict[str, dict[str, Any]] = {}
    models: set[str] = set()
    for name in order:
        d, m = arts[name]
        p = d / "results.json"
        if m.get("type") != "evaluate" or not p.is_file():
            continue
        res = json.loads(p.read_text())
        model = (res.get("model") or {}).get("stage") or name
        for tname, t in (res.get("tasks") or {}).items():
            metric = t.get("primary_metric")
            value = (t.get("metrics") or {}).get(metric)
            if not isinstance(value, int | float):
                continue
            row = tasks.setdefault(tname, {"metric": metric, "chance": _chance(t)})
            n = int(t.get("n_items") or 0)
            if model not in row or n > row[model][1]:
                row[model] = (float(value), n)
            models.add(model)
    return [n for n in order if n in models], tasks


def _cell(value: float, n: int, metric: str) -> str:
    if metric.startswith("acc") or metric in ("exact_match", "accuracy", "pass@1"):
        lo, hi = wilson_interval(value, n)
        return f"{value:.2f} [{lo:.2f}, {hi:.2f}]"
    return f"{value:.4g}"


def _eval_notes(stages: list[str], tasks: dict[str, dict]) -> list[str]:
    """Say which stage-to-stage changes are within noise (the intervals overlap)."""
    notes = []
    for tname, row in tasks.items():
        done = [s for s in stages if s in row]
        for a, b in zip(done, done[1:]):
            (va, na), (vb, nb) = row[a], row[b]
            if not (row["metric"].startswith("acc") or row["metric"] in ("exact_match", "accuracy")):
                continue
            (la, ha), (lb, hb) = wilson_interval(va, na), wilson_interval(vb, nb)
            if vb != va and lb <= ha and la <= hb:
                notes.append(f"{tname}: {a} → {b} changed {100 * (vb - va):+.0f} points, within the 95% "
                             f"intervals ({na} and {nb} items): not a measured difference.")
    return notes


def _eval_plot(path: Path, stages: list[str], tasks: dict[str, dict]) -> bool:
    plt = pyplot()
    rows = {t: r for t, r in tasks.items() if r["chance"] is not None and sum(s in r for s in stages) >= 2}
    if plt is None or not rows:
        return False
    fig, ax = plt.subplots(figsize=(7.2, 3.8), dpi=100)
    for tname, row in rows.items():
        xs = [k for k, s in enumerate(stages) if s in row]
        ys = [row[stages[k]][0] for k in xs]
        ci = [wilson_interval(*row[stages[k]]) for k in xs]
        # (clamped: at 0 or 1 the interval's float bound can land a hair inside the point)
        err = [[max(0.0, y - lo) for y, (lo, _) in zip(ys, ci)], [max(0.0, hi - y) for y, (_, hi) in zip(ys, ci)]]
        line = ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{tname} ({row['metric']})")
        ax.axhline(row["chance"], linestyle=":", color=line[0].get_color(), alpha=0.7)
    ax.set_xticks(range(len(stages)), stages, rotation=20, fontsize=8)
    ax.set_xlabel("model after stage")
    ax.set_ylabel("primary metric (95% interval)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Evaluations after each stage (dotted: chance)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
    return True


# ---- training ---------------------------------------------------------------------------------

def _curve(d: Path) -> list[dict[str, Any]]:
    p = d / "metrics.jsonl"
    return [r for r in read_jsonl(p, skip_bad=True) if isinstance(r, dict) and "step" in r] if p.is_file() else []


def _ema(ys: list[float], beta: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average (starts at the first value, no lag from zero)."""
    out, acc = [], 0.0
    for t, y in enumerate(ys, 1):
        acc = beta * acc + (1 - beta) * y
        out.append(acc / (1 - beta**t))
    return out


def _loss_plot(path: Path, curves: dict[str, list[dict]]) -> bool:
    """One panel per training stage: the raw per-step value (thin), its moving average (thick) and
    validation loss / held-out accuracy where the stage measured them. RL stages show their training
    reward (GRPO's loss is not a progress measure)."""
    plt = pyplot()
    curves = {k: v for k, v in curves.items() if any("loss" in r for r in v)}
    if plt is None or not curves:
        return False
    cols = min(3, len(curves))
    rows = (len(curves) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.7 * cols, 2.7 * rows), dpi=100, squeeze=False)
    for ax, (name, recs) in zip(axes.flat, curves.items()):
        key = "reward_mean" if any("reward_mean" in r for r in recs) else "loss"
        label = "train reward" if key == "reward_mean" else "loss"
        recs = [r for r in recs if isinstance(r.get(key), int | float)]
        xs, ys = [r["step"] for r in recs], [r[key] for r in recs]
        ax.plot(xs, ys, linewidth=0.6, alpha=0.4, label=label)
        ax.plot(xs, _ema(ys), linewidth=1.8, label=f"{label} (moving avg)")
        val = [(r["step"], r["val_loss"]) for r in recs if r.get("val_loss") is not None]
        if val:
            ax.plot(*zip(*val), marker="o", label="validation loss")
        held = [(r["step"], r["heldout_acc"]) for r in recs if r.get("heldout_acc") is not None]
        if held:
            ax.plot(*zip(*held), marker="s", label="held-out accuracy")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=7)
        ax.set_ylabel(label if not held else "reward / accuracy", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _params(final: Path | None) -> str:
    if final is None:
        return "-"
    try:
        from olmoflow.model.io import read_config

        cfg = read_config(final)
    except Exception:  # noqa: BLE001 - the card still shows the rest
        return "-"
    return f"{cfg.num_params():,} ({cfg.num_params(include_embedding=False):,} without embeddings)"


def _data_notes(arts: dict[str, tuple[Path, dict]]) -> list[str]:
    notes = []
    for name, (_, m) in arts.items():
        rep = (m.get("metrics") or {}).get("repetition") or {}
        for src, r in rep.items():
            if isinstance(r, int | float) and r >= 5:
                notes.append(f"{name}: source `{src}` is repeated {r:.1f}× to reach its share of the mix (a "
                             "small source upsampled heavily; its held-out numbers may look better than its size "
                             "suggests).")
        cfg = m.get("config") or {}
        if m.get("type") == "evaluate" and cfg.get("sweep_limit") and cfg.get("limit") and \
                cfg.get("sweep", True) and cfg["sweep_limit"] != cfg["limit"]:
            notes.append(f"{name}: the checkpoint sweep scores {cfg['sweep_limit']} items per task and the final "
                         f"evaluation {cfg['limit']}, so the sweep's last point and the final number can differ.")
    return notes


def _traced_answer(state: dict[str, Any], arts: dict[str, tuple[Path, dict]]) -> list[str]:
    """The last traced sample (a trace_index stage's ``traced_sample.json``): the answer with the spans
    found verbatim in the training data in bold, and the first document behind each."""
    for name in reversed([n for n in state.get("order") or [] if n in arts]):
        p = arts[name][0] / "traced_sample.json"
        if p.is_file():
            from olmoflow.trace.tracer import render_markdown

            res = json.loads(p.read_text())
            return [f"Traced answer ({name}; prompt `{res.get('prompt', '')}`; bold: spans found verbatim in the "
                    "training data, section \"Traced sample\" below):", "", *render_markdown(res, docs_per_span=1)]
    return []


def report_card(state: dict[str, Any], arts: dict[str, tuple[Path, dict]], workdir: Path) -> list[str]:
    """The ``## Report card`` section's lines (figures saved under ``workdir/report``)."""
    lines = ["## Report card", ""]
    fm = final_model(state, arts)
    order = [n for n in state.get("order") or [] if n in arts]
    total = sum((arts[n][1].get("wall_s") or 0) for n in order)
    lines += [f"- final model: {'`' + str(fm[1]) + '` (stage ' + fm[0] + ')' if fm else '-'}",
              f"- parameters: {_params(fm[1] if fm else None)}",
              f"- total stage wall time: {total:.0f} s", ""]
    train = [(n, arts[n]) for n in order if isinstance((arts[n][1].get("metrics") or {}).get("tokens"), int)]
    if train:
        lines += ["| training stage | type | steps | tokens seen | wall time | tokens/s | final loss |",
                  "|---|---|---|---|---|---|---|"]
        for n, (_, m) in train:
            met, wall = m.get("metrics") or {}, m.get("wall_s") or 0
            rate = f"{met['tokens'] / wall:,.0f}" if wall else "-"
            loss = f"{met['loss']:.4g}" if isinstance(met.get("loss"), int | float) else "-"
            lines.append(f"| {n} | {m['type']} | {met.get('step', '-')} | {met['tokens']:,} | {wall:.1f} s | "
                         f"{rate} | {loss} |")
        lines.append("")
        if _loss_plot(workdir / "report" / "card-loss.png", {n: _curve(d) for n, (d, _) in train}):
            lines += ["![training curves](report/card-loss.png)", ""]
    stages, tasks = eval_rows(state, arts)
    if tasks:
        lines += ["Primary metric of each evaluation (the one marked in each task's config) on the model after "
                  "each stage, with its binomial 95% interval; chance is what guessing scores.", "",
                  "| evaluation | primary metric | chance | items | " + " | ".join(stages) + " |",
                  "|---|---|---|---|" + "---|" * len(stages)]
        for tname, row in tasks.items():
            metric = row["metric"] + (" ↓" if row["metric"].startswith(LOWER_IS_BETTER) else "")
            chance = "-" if row["chance"] is None else f"{row['chance']:.2f}"
            ns = sorted({row[s][1] for s in stages if s in row})
            cells = [_cell(*row[s], row["metric"]) if s in row else "-" for s in stages]
            lines.append(f"| {tname} | **{metric}** | {chance} | {'/'.join(map(str, ns))} | " + " | ".join(cells) + " |")
        lines.append("")
        if _eval_plot(workdir / "report" / "card-evals.png", stages, tasks):
            lines += ["![evaluations after each stage](report/card-evals.png)", ""]
    notes = _eval_notes(stages, tasks) + _data_notes(arts)
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    lines += _traced_answer(state, arts)
    if fm:
        lines += ["### Next", "", "```"]
        for what, cmd in next_commands(fm[1], workdir):
            lines += [f"# {what}", cmd]
        lines += ["```", ""]
    return lines
