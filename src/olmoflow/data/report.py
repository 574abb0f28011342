"""Curation reports: stats.json, report.md, histogram PNGs and the decontamination report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from olmoflow.data.documents import read_jsonl


def accounting(stats: dict[str, Any]) -> dict[str, Any]:
    """Docs in = kept + removed (by step and reason) + quarantined, checked."""
    c = stats.get("counters", {})
    removed = {name: sum(s["removed"].values()) for name, s in sorted(stats["steps"].items()) if s["removed"]}
    acc = {
        "docs_in": int(c.get("records_read", 0)),
        "kept": int(c.get("kept", 0)),
        "removed": int(sum(removed.values())),
        "quarantined": int(c.get("quarantined", 0)),
        "removed_by_step": removed,
        "quarantined_by_reason": {k.split(":", 1)[1]: int(v) for k, v in sorted(c.items())
                                  if k.startswith("quarantined:")},
        "extra_copies_from_upsampling": int(c.get("extra_copies", 0)),
    }
    acc["balanced"] = acc["docs_in"] == acc["kept"] + acc["removed"] + acc["quarantined"]
    return acc


def decontamination_report(output: Path, step_names: list[str]) -> dict[str, Any]:
    """Matched eval items and removed documents, read back from the removed-docs files."""
    items: dict[str, list[str]] = {}
    removed = []
    for f in sorted((output / "removed").glob("*.jsonl.gz")):
        for doc, _ in read_jsonl(f, max_doc_bytes=1 << 40):
            if doc is None or doc.get("removed_by") not in step_names:
                continue
            matches = (doc.get("attributes") or {}).get("decontam_matches", [])
            removed.append({"id": doc["id"], "source": doc.get("source"), "matches": matches})
            for m in matches:
                items.setdefault(m["item"], []).append(doc["id"])
    return {
        "n_items_matched": len(items),
        "n_docs_removed": len(removed),
        "items": {k: sorted(v) for k, v in sorted(items.items())},
        "removed_docs": sorted(removed, key=lambda r: r["id"]),
    }


def _histogram_png(hist: dict[str, int], path: Path, title: str, xlabel: str, numeric_sort: bool = True) -> None:
    from olmoflow.plots import pyplot, save_figure

    plt = pyplot()
    if plt is None:
        raise ImportError("matplotlib")

    keys = sorted(hist, key=float) if numeric_sort else sorted(hist)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar([str(k) for k in keys], [hist[k] for k in keys], color="#3b6ea8")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    if len(keys) > 12:
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.set_yscale("log" if max(hist.values(), default=1) > 50 else "linear")
    fig.subplots_adjust(left=0.12, right=0.97, top=0.88, bottom=0.3 if len(keys) > 12 else 0.17)
    save_figure(fig, path)


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f}"


def write_report(output: Path, summary: dict[str, Any], step_order: list[str]) -> None:
    """Write stats.json, report.md and histogram PNGs into ``output``."""
    (output / "stats.json").write_text(json.dumps(summary, indent=1, sort_keys=False))
    acc = summary["accounting"]
    steps = summary["steps"]
    lines = [
        f"# Curation report — recipe `{summary['recipe']}`",
        "",
        f"Inputs: {summary['n_shards']} shards. Run hash `{summary['run_hash']}`.",
        "",
        "## Accounting",
        "",
        f"docs in **{acc['docs_in']}** = kept **{acc['kept']}** + removed **{acc['removed']}** "
        f"+ quarantined **{acc['quarantined']}** → "
        + ("**balanced** ✓" if acc["balanced"] else "**NOT balanced** ✗"),
        "",
    ]
    if acc["extra_copies_from_upsampling"]:
        lines += [f"Upsampling added {acc['extra_copies_from_upsampling']} extra copies (not counted above).", ""]
    if acc["quarantined_by_reason"]:
        lines += ["Quarantined by reason: " + ", ".join(f"{k}: {v}" for k, v in acc["quarantined_by_reason"].items()), ""]
    if summary.get("damaged_files"):
        lines += ["Damaged input files (records before the damage kept, the rest of the file missing):", ""]
        lines += [f"- `{d['file']}` line {d['line']}: {d['reason']}" for d in summary["damaged_files"]] + [""]
    lines += [
        "## Steps",
        "",
        "| step | docs in | docs out | MB in | MB out | removed (reason: count) | counters |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for name in step_order:
        s = steps.get(name)
        if s is None:
            continue
        rem = ", ".join(f"{k}: {v}" for k, v in sorted(s["removed"].items())) or "–"
        cnt = ", ".join(f"{k}: {v:g}" for k, v in sorted(s["counters"].items())) or "–"
        lines.append(f"| {name} | {s['docs_in']} | {s['docs_out']} | {_mb(s['bytes_in'])} | {_mb(s['bytes_out'])} "
                     f"| {rem} | {cnt} |")
    lines.append("")
    hists = summary.get("histograms", {})
    if hists.get("minhash_cluster_sizes"):
        _histogram_png(hists["minhash_cluster_sizes"], output / "dedup_cluster_sizes.png",
                       "MinHash cluster sizes", "cluster size (docs)")
        h = hists["minhash_cluster_sizes"]
        lines += ["## Dedup clusters", "", "![cluster sizes](dedup_cluster_sizes.png)", "",
                  "size: clusters — " + ", ".join(f"{k}: {h[k]}" for k in sorted(h, key=int)), ""]
    if hists.get("quality_score"):
        _histogram_png(hists["quality_score"], output / "quality_scores.png", "Quality scores (kept docs)",
                       "score bucket")
        lines += ["## Quality scores", "", "![quality scores](quality_scores.png)", ""]
    decon = summary.get("decontamination")
    if decon is not None:
        lines += ["## Decontamination", "",
                  f"{decon['n_items_matched']} eval items matched; {decon['n_docs_removed']} documents removed "
                  "(details in `decontamination.json`).", ""]
        for item, docs in list(decon["items"].items())[:50]:
            lines.append(f"- `{item}` ← {', '.join(f'`{d}`' for d in docs[:10])}")
        lines.append("")
    lines += ["## Outputs", "",
              "- `documents/*.jsonl.gz` kept documents (Dolma JSONL)",
              "- `attributes/*.jsonl.gz` per-document attributes (scores, flags), line-aligned with documents",
              "- `removed/*.jsonl.gz` removed documents with `removed_by` and `reason`",
              "- `quarantine/*.jsonl.gz` bad input records with file, line and reason", ""]
    (output / "report.md").write_text("\n".join(lines))
