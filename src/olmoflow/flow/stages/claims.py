"""Stage ``claims``: check stated claims against the metrics other stages measured, with their controls.

A claim compares a *treatment* (one metric of one input artifact) with a *control* (one metric, or the
mean of several: e.g. a soup against its ingredients) and states the expected difference::

    claims:
      type: claims
      config:
        claims:
          - claim: delta-learning DPO beats continuing SFT on the chosen answers
            treatment: {input: dpo, metric: "chat:arith.jsonl.accuracy"}
            control: {input: sft_chosen, metric: "chat:arith.jsonl.accuracy"}
            min_diff: 0.0            # treatment - control must be > 0 (strictly: min_diff_strict)
      inputs: {dpo: "${stages.eval_dpo}", sft_chosen: "${stages.eval_sft_chosen}"}

Bounds: ``min_diff`` / ``max_diff`` on treatment − control, ``min_value`` / ``max_value`` on the
treatment alone; a claim holds when every bound given holds. ``metric`` is a dotted path into the
input's manifest metrics (task names may contain dots: the longest matching key wins). Where the
input is an evaluation, the task's item count gives each accuracy its binomial 95% interval. A claim
that does not hold is reported as such with its numbers; the stage never fails because of it.
Output: ``claims.json``; report section "Claims".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from olmoflow.config import Config
from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import ReportSection, StageArtifact, StageConfig, StageContext, register_stage
from olmoflow.io import read_jsonl


class Side(Config):
    #: the stage input (a name under ``inputs:``) whose manifest holds the metric
    input: str
    #: dotted path into that artifact's metrics, e.g. ``chat:arith.jsonl.accuracy`` or ``heldout_acc``
    metric: str
    #: ``final``: the artifact's final metrics (manifest); ``first``: the first value its training log
    #: (``metrics.jsonl``) recorded, e.g. an RL run's held-out accuracy before its first update
    at: Literal["final", "first"] = "final"
    #: items the metric was measured on (for its 95% interval) where the artifact does not say
    n: int | None = None


class Claim(Config):
    claim: str
    treatment: Side
    control: Side | list[Side] | None = None
    min_diff: float | None = None
    max_diff: float | None = None
    min_value: float | None = None
    max_value: float | None = None
    #: ``min_diff`` is a strict bound (treatment − control > min_diff): "beats", not "matches"
    strict: bool = True
    note: str = ""

    @model_validator(mode="after")
    def _has_a_bound(self) -> Claim:
        if all(b is None for b in (self.min_diff, self.max_diff, self.min_value, self.max_value)):
            raise ValueError(f"claim {self.claim!r}: give at least one of min_diff, max_diff, min_value, max_value")
        if (self.min_diff is not None or self.max_diff is not None) and self.control is None:
            raise ValueError(f"claim {self.claim!r}: min_diff/max_diff need a control")
        return self


class ClaimsConfig(StageConfig):
    claims: list[Claim] = Field(min_length=1)


def lookup(metrics: dict[str, Any], path: str) -> Any:
    """``metrics`` at dotted ``path``, where keys may themselves contain dots (longest key first)."""
    if path in metrics:
        return metrics[path]
    for key in sorted(metrics, key=len, reverse=True):
        if path.startswith(key + ".") and isinstance(metrics[key], dict):
            return lookup(metrics[key], path[len(key) + 1:])
    raise KeyError(path)


def _measure(side: Side, inputs: dict[str, Path], stage: str) -> dict[str, Any]:
    if side.input not in inputs:
        raise OlmoflowError(f"stage {stage!r}: claim input {side.input!r} is not one of its inputs "
                            f"({', '.join(sorted(inputs)) or 'none'})")
    d = Path(inputs[side.input])
    manifest = json.loads((d / "manifest.json").read_text())
    records = [manifest.get("metrics") or {}]
    if side.at == "first":
        log = d / "metrics.jsonl"
        records = read_jsonl(log, skip_bad=True) if log.is_file() else []
    for rec in records:
        try:
            value = lookup(rec, side.metric)
            break
        except KeyError:
            continue
    else:
        raise OlmoflowError(f"stage {stage!r}: input {side.input!r} ({d.name}) has no metric {side.metric!r}"
                            + (" in its metrics.jsonl" if side.at == "first" else ""))
    if not isinstance(value, int | float):
        raise OlmoflowError(f"stage {stage!r}: metric {side.metric!r} of {side.input!r} is not a number: {value!r}")
    out: dict[str, Any] = {"input": side.input + (" (start)" if side.at == "first" else ""),
                           "stage": manifest.get("stage"), "metric": side.metric,
                           "value": float(value), "artifact": manifest.get("id", "")[:12]}
    if side.n is not None:
        out["n"] = side.n
    res = d / "results.json"
    if res.is_file():
        results = json.loads(res.read_text())
        for task, t in (results.get("tasks") or {}).items():
            if side.metric.startswith(task + "."):
                out["n"] = int(t.get("n_items") or 0)
                out["model_stage"] = (results.get("model") or {}).get("stage")
    return out


def evaluate_claim(c: Claim, inputs: dict[str, Path], stage: str) -> dict[str, Any]:
    """Measure both sides of one claim and say whether it holds."""
    t = _measure(c.treatment, inputs, stage)
    controls = [] if c.control is None else [c.control] if isinstance(c.control, Side) else c.control
    cs = [_measure(s, inputs, stage) for s in controls]
    control = sum(x["value"] for x in cs) / len(cs) if cs else None
    diff = None if control is None else t["value"] - control
    checks = []
    if c.min_diff is not None:
        checks.append((f"diff {'>' if c.strict else '≥'} {c.min_diff:g}",
                       diff > c.min_diff if c.strict else diff >= c.min_diff))
    if c.max_diff is not None:
        checks.append((f"diff ≤ {c.max_diff:g}", diff <= c.max_diff))
    if c.min_value is not None:
        checks.append((f"value ≥ {c.min_value:g}", t["value"] >= c.min_value))
    if c.max_value is not None:
        checks.append((f"value ≤ {c.max_value:g}", t["value"] <= c.max_value))
    return {"claim": c.claim, "treatment": t, "controls": cs, "control": control, "diff": diff,
            "expected": ", ".join(x for x, _ in checks), "holds": all(ok for _, ok in checks), "note": c.note}


def _fmt(side: dict[str, Any]) -> str:
    from olmoflow.flow.card import wilson_interval

    v, n = side["value"], side.get("n")
    if n and 0.0 <= v <= 1.0:
        lo, hi = wilson_interval(v, n)
        return f"{v:.3g} [{lo:.2f}, {hi:.2f}] (n={n}, {side['input']})"
    return f"{v:.4g} ({side['input']})"


def _overlap(t: dict[str, Any], controls: list[dict[str, Any]]) -> bool:
    """Whether a treatment's and its single control's accuracy intervals overlap (a "holds" that the item
    counts cannot tell from noise)."""
    from olmoflow.flow.card import wilson_interval

    if len(controls) != 1 or not t.get("n") or not controls[0].get("n"):
        return False
    c = controls[0]
    if not (0.0 <= t["value"] <= 1.0 and 0.0 <= c["value"] <= 1.0):
        return False
    (tl, th), (cl, ch) = wilson_interval(t["value"], t["n"]), wilson_interval(c["value"], c["n"])
    return tl <= ch and cl <= th


def _section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    lines = []
    for a in arts:
        rows = json.loads((a.dir / "claims.json").read_text())["claims"]
        held = sum(r["holds"] for r in rows)
        lines += [f"{a.name}: {held} of {len(rows)} claims reproduced (seed {a.manifest.get('seed')}). Accuracies "
                  "carry their binomial 95% interval; a claim whose numbers do not bear it out says so.", "",
                  "| claim | treatment | control | difference | expected | reproduced |", "|---|---|---|---|---|---|"]
        for r in rows:
            ctrl = ("-" if not r["controls"] else _fmt(r["controls"][0]) if len(r["controls"]) == 1 else
                    f"mean {r['control']:.4g} of " + ", ".join(f"{c['value']:.4g}" for c in r["controls"]))
            diff = "-" if r["diff"] is None else f"{r['diff']:+.3g}"
            verdict = "**yes**" if r["holds"] else "**no**"
            if r["holds"] and r["diff"] is not None and _overlap(r["treatment"], r["controls"]):
                verdict += " (within the 95% intervals: not a measured difference)"
            lines.append(f"| {r['claim']} | {_fmt(r['treatment'])} | {ctrl} | {diff} | {r['expected']} | {verdict} |")
        notes = [f"- {r['claim']}: {r['note']}" for r in rows if r.get("note")]
        lines += [""] + (notes + [""] if notes else [])
    return lines


@register_stage("claims", description="check claims (treatment vs control metrics) and report them",
                config=ClaimsConfig, report=(ReportSection("Claims", _section, order=5),))
def run(config: ClaimsConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    rows = [evaluate_claim(c, inputs, ctx.stage) for c in config.claims]
    (out_dir / "claims.json").write_text(json.dumps({"claims": rows}, indent=2) + "\n")
    return {"claims": len(rows), "reproduced": sum(r["holds"] for r in rows)}
