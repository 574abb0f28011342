"""``curate``: run a curation recipe over input documents and write a reported, resumable output dir."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from olmoflow.config import config_hash
from olmoflow.data.documents import Shard, damage_warning, expand_inputs
from olmoflow.data.executors import make_executor
from olmoflow.data.pipeline import WORK, plan_segments, run_pipeline
from olmoflow.data.recipe import load_recipe
from olmoflow.data.report import accounting, decontamination_report, write_report
from olmoflow.errors import OlmoflowError


def _fingerprint(shards: list[Shard]) -> str:
    """Identity of the inputs (paths, sizes, mtimes) so a changed input invalidates old markers."""
    rows = []
    for s in shards:
        paths = [s.path] if s.kind != "text" else [os.path.join(s.path, f) for f in s.files]
        for p in paths:
            try:
                st = os.stat(p)
                rows.append((s.name, p, st.st_size, st.st_mtime_ns))
            except OSError:
                rows.append((s.name, p, -1, -1))
    return config_hash({"inputs": rows})


def _sorted_step(s: dict[str, Any]) -> dict[str, Any]:
    """Step stats with sorted sub-dicts, so stats.json does not depend on merge order (resume)."""
    return {k: dict(sorted(v.items())) if isinstance(v, dict) else v for k, v in s.items()}


def curate(
    inputs: str | Path | list[str | Path],
    output: str | Path,
    recipe: str | Path | dict[str, Any] | None = None,
    decontaminate: list[str] | tuple[str, ...] = (),
    workers: int = 2,
    executor: str = "local",
    overrides: list[str] | tuple[str, ...] = (),
    quiet: bool = False,
    keep_work: bool = False,
) -> dict[str, Any]:
    """Curate ``inputs`` into ``output`` with ``recipe`` (default: the packaged Dolma-3-style recipe).

    The recipe is validated completely before any work. Output: ``documents/``, ``attributes/``,
    ``removed/``, ``quarantine/``, ``stats.json``, ``report.md`` (+ PNG histograms,
    ``decontamination.json``). Rerunning the same command resumes an interrupted run. Returns the
    summary written to ``stats.json``. Each damaged input file (truncated or corrupt) is named in a
    one-line warning on stderr and listed in ``damaged_files``.
    """
    rec = load_recipe(recipe, list(overrides), list(decontaminate))
    shards = expand_inputs(inputs, rec.files_per_shard)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with make_executor(executor, workers, quiet) as ex:
        stats = run_pipeline(rec, shards, output, ex, _fingerprint(shards))
    elapsed = time.time() - t0
    steps = rec.build()
    order = [s.name for s in steps]
    data = stats.to_dict()
    run_info = json.loads((output / WORK / "run.json").read_text())
    summary: dict[str, Any] = {
        "recipe": rec.name,
        "run_hash": run_info["run_hash"],
        "n_shards": len(shards),
        "accounting": accounting(data),
        "steps": {n: _sorted_step(data["steps"][n]) for n in order if n in data["steps"]},
        "counters": dict(sorted(data["counters"].items())),
        "histograms": {k: dict(sorted(v.items(), key=lambda kv: float(kv[0])))
                       for k, v in sorted(data["histograms"].items())},
        "damaged_files": data.get("damaged_files", []),
    }
    for rec in summary["damaged_files"]:  # in the driver, so local and Ray runs (and resumes) say the same
        print(damage_warning(rec), file=sys.stderr)
    decon_steps = [s.name for s in steps if s.cfg.step == "decontaminate" and getattr(s.cfg, "eval_files", None)]
    if decon_steps:
        summary["decontamination"] = decontamination_report(output, decon_steps)
        (output / "decontamination.json").write_text(json.dumps(summary["decontamination"], indent=1))
    write_report(output, summary, order)
    (output / "timing.json").write_text(json.dumps(
        {"seconds": round(elapsed, 3), "workers": workers, "executor": executor,
         "docs_per_s": round(summary["accounting"]["docs_in"] / max(elapsed, 1e-9), 1)}))
    if not keep_work:  # intermediate shards are no longer needed; markers stay so reruns are no-ops
        work = output / WORK
        for seg in range(len(plan_segments(steps))):
            for f in (work / f"seg{seg}").glob("*.jsonl.zst"):
                f.unlink()
            for f in (work / f"seg{seg}").glob("*.collect.pkl"):
                f.unlink()
        for d in work.glob("g*"):
            if d.is_dir():
                for f in d.glob("*.decision.pkl"):
                    f.unlink()
        shutil.rmtree(work / "tmp", ignore_errors=True)
    summary["seconds"] = round(elapsed, 3)
    if summary["accounting"]["kept"] == 0:
        raise OlmoflowError(nothing_kept(summary, output))
    return summary


def nothing_kept(summary: dict[str, Any], output: Path, top: int = 3) -> str:
    """The one-line error of a curation that kept no document: how many came in and the most
    frequent reasons they were removed or quarantined (a run that keeps nothing is a failure)."""
    acc = summary["accounting"]
    reasons: dict[str, int] = {}
    for step, st in (summary.get("steps") or {}).items():
        for why, n in (st.get("removed") or {}).items():
            reasons[f"{step}: {why}"] = reasons.get(f"{step}: {why}", 0) + n
    for why, n in (acc.get("quarantined_by_reason") or {}).items():
        reasons[f"quarantined: {why}"] = n
    ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    why = "; ".join(f"{r} ({n})" for r, n in ranked) or "no input documents"
    return (f"curation kept 0 of {acc['docs_in']} documents; top reasons: {why} "
            f"(see {Path(output) / 'report.md'}; loosen the recipe with overrides such as STEP.KEY=VALUE)")
