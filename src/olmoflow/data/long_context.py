"""Long-context training documents (Longmino-style, REFERENCE.md §2).

* :func:`gzip_ratio` / :func:`compressibility_filter`: OLMo 3 drops the long documents in the top
  and bottom 20% of gzip compressibility (very compressible = repetitive boilerplate, barely
  compressible = noise, tables of numbers, encoded data) and keeps the middle.
* :func:`concatenate_related`: long documents from short ones that belong together: documents
  whose ids share a prefix (``code/json/decoder.py`` and ``code/json/encoder.py`` are one package)
  are joined in id order up to a target length, like whole modules or books.
* :func:`synthetic_documents`: documents with retrieval targets (a pass key, keyed magic numbers,
  variable chains, word counts) written by the same generators as the RULER-style eval tasks
  (``olmoflow.eval.ruler``), with seeds disjoint from the eval's.

:func:`build_long_documents` does all three and writes Dolma JSONL (``long.jsonl``, source
``long``; ``synthetic.jsonl``, source ``synthetic``) plus ``stats.json``.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError
from olmoflow.io import atomic_write_json, write_jsonl

__all__ = ["build_long_documents", "compressibility_filter", "concatenate_related", "gzip_ratio",
           "synthetic_documents"]

#: offset added to synthetic training seeds so they never coincide with eval items (seed < 10**6)
TRAIN_SEED_OFFSET = 1_000_003


def gzip_ratio(text: str) -> float:
    """Compressed size / raw size of the UTF-8 text (lower = more compressible)."""
    raw = text.encode("utf-8")
    return len(gzip.compress(raw, compresslevel=6, mtime=0)) / max(1, len(raw))


def compressibility_filter(docs: list[dict[str, Any]], drop_low: float = 0.2, drop_high: float = 0.2,
                           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped): drop the ``drop_low`` fraction of documents that compress best and the
    ``drop_high`` fraction that compress worst (ties broken by id, so the split is deterministic).
    Dropped documents carry ``reason`` and ``gzip_ratio``."""
    if not (0 <= drop_low < 1 and 0 <= drop_high < 1 and drop_low + drop_high < 1):
        raise OlmoflowError(f"compressibility filter: drop_low={drop_low}, drop_high={drop_high} must be in [0, 1) "
                            "and sum to < 1")
    scored = sorted(((gzip_ratio(d["text"]), str(d.get("id", i)), i) for i, d in enumerate(docs)))
    n = len(scored)
    lo, hi = int(n * drop_low), n - int(n * drop_high)
    kept, dropped = [], []
    for rank, (ratio, _, i) in enumerate(scored):
        if lo <= rank < hi:
            kept.append(docs[i])
        else:
            why = "most compressible" if rank < lo else "least compressible"
            dropped.append({"id": docs[i].get("id"), "reason": why, "gzip_ratio": round(ratio, 4)})
    kept.sort(key=lambda d: str(d.get("id")))
    return kept, dropped


def _group(doc_id: str, depth: int) -> str:
    parts = doc_id.split("/")
    return "/".join(parts[: min(depth, max(1, len(parts) - 1))])


def concatenate_related(docs: Iterable[dict[str, Any]], min_chars: int, max_chars: int,
                        depth: int = 2) -> list[dict[str, Any]]:
    """Join documents whose ids share their first ``depth`` path parts, in id order, into documents
    of ``min_chars``..``max_chars`` characters (a longer single document is cut at ``max_chars``);
    groups shorter than ``min_chars`` are left out."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        groups.setdefault(_group(str(d["id"]), depth), []).append(d)
    out: list[dict[str, Any]] = []
    for key in sorted(groups):
        pieces: list[list[str]] = [[]]
        size = 0
        for d in sorted(groups[key], key=lambda d: str(d["id"])):
            pieces[-1].append(d["text"])
            size += len(d["text"]) + 2
            if size >= max_chars:
                pieces.append([])
                size = 0
        texts = ["\n\n".join(p)[:max_chars] for p in pieces if p]
        texts = [t for t in texts if len(t) >= min_chars]
        out += [{"id": f"long/{key}/{i}", "text": t, "source": "long"} for i, t in enumerate(texts)]
    return out


def synthetic_documents(n: int, lengths: list[int], seed: int = 0, tasks: list[str] | None = None,
                        count=None) -> list[dict[str, Any]]:
    """``n`` documents cycling over ``tasks`` (default: all RULER tasks) and ``lengths`` (in units
    of ``count``: tokens, or words without one), each a task prompt followed by its answer."""
    from olmoflow.eval.ruler import RULER_TASKS, training_document

    names = tasks or list(RULER_TASKS)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name, length = names[i % len(names)], lengths[rng.randrange(len(lengths))]
        text = training_document(name, length, TRAIN_SEED_OFFSET + seed * 100_000 + i, count)
        out.append({"id": f"synthetic/{name}/{i}", "text": text, "source": "synthetic",
                    "metadata": {"task": name, "length": length}})
    return out


def build_long_documents(docs: Iterable[dict[str, Any]], out_dir: str | Path, *, min_chars: int, max_chars: int,
                         n_synthetic: int, synthetic_lengths: list[int], synthetic_tasks: list[str] | None = None,
                         drop_low: float = 0.2, drop_high: float = 0.2, seed: int = 0,
                         count=None) -> dict[str, Any]:
    """Write ``long.jsonl`` (related documents joined, then the compressibility filter),
    ``synthetic.jsonl`` (retrieval-target documents), ``dropped.jsonl`` (what the filter removed,
    with the reason) and ``stats.json`` into ``out_dir``; returns the stats."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    joined = concatenate_related(docs, min_chars, max_chars)
    kept, dropped = compressibility_filter(joined, drop_low, drop_high)
    synth = synthetic_documents(n_synthetic, synthetic_lengths, seed, synthetic_tasks, count)
    write_jsonl(out / "long.jsonl", kept)
    write_jsonl(out / "synthetic.jsonl", synth)
    write_jsonl(out / "dropped.jsonl", dropped)
    ratios = [gzip_ratio(d["text"]) for d in kept]
    stats = {"joined": len(joined), "kept": len(kept), "dropped": len(dropped), "synthetic": len(synth),
             "kept_chars": sum(len(d["text"]) for d in kept),
             "kept_gzip_ratio_range": [round(min(ratios), 4), round(max(ratios), 4)] if ratios else None}
    atomic_write_json(out / "stats.json", stats)
    return stats
