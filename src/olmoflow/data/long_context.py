"""Long-context training documents (Longmino-style, REFERENCE.md §2).

* :func:`gzip_ratio` / :func:`compressibility_filter`: OLMo 3 drops the long documents in the top
  and bottom 20% of gzip compressibility (very compressible = repetitive boilerplate, barely
  compressible = noise, tables of numbers, encoded data) and keeps the middle.
* :func:`concatenate_related`: long documents from short ones that belong together: documents
  whose ids share a prefix (``code/json/decoder.py`` and ``code/json/encoder.py`` are one package)
  are joined in id order up to a target length, like whole modules or books.
* :func:`synthetic_documents`: documents with retrieval targets (a pass key, keyed magic numbers,
  variable chains, word counts) written by the same generators as the RULER-style eval tasks
  (``olmoflow.eval.ruler``), with seeds disjoint from the eval's, and the training-only ``copy``
  drill (:func:`copy_drill`): a list of random words and numbers, then the same list again.

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

__all__ = ["TRAINING_TASKS", "build_long_documents", "compressibility_filter", "concatenate_related",
           "copy_drill", "gzip_ratio", "synthetic_documents", "vocab_words"]

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


#: synthetic training documents that are not eval tasks
TRAINING_TASKS = ("copy",)


def vocab_words(tok_dir: str | Path) -> list[str]:
    """The lowercase alphabetic words (3 letters or more) that a tokenizer encodes as one token after
    a space: the copy drill's items, so that each listed word is one symbol to copy."""
    from olmoflow.tokenizer import load_tokenizer

    tok = load_tokenizer(Path(tok_dir))
    out = set()
    for piece in tok.get_vocab():
        word = tok.decode([tok.token_to_id(piece)])
        if word.startswith(" ") and word[1:].isalpha() and word[1:].islower() and len(word) > 3:
            out.add(word[1:])
    return sorted(out)


def copy_drill(rng: random.Random, length: int, count=None, words: list[str] | None = None,
               number_share: float = 0.35) -> str:
    """A list of random words and 5-digit numbers, 0-4 filler sentences, then the same list again,
    about ``length`` units (``count``; words without one) in all.

    Why: a pass-key answer is a copy of digits seen far back, and a tiny model that finds the key
    but has no general copy mechanism (an induction circuit) emits the key's digits out of order
    (docs/train.md). Every token of the repeated list is a copy target at a varying distance, the
    classic setting in which induction heads form."""
    from olmoflow.eval.ruler import _SENTENCES, _WORDS

    count = count or (lambda t: len(t.split()))
    pool = words or list(_WORDS)
    n_fill = rng.randrange(5)
    fill = " ".join(_SENTENCES[(j + rng.randrange(len(_SENTENCES))) % len(_SENTENCES)] for j in range(n_fill))

    def text(items: list[str]) -> str:
        lst = " ".join(items)
        return " ".join(p for p in ("Copy the list.", f"{lst}.", fill, "The list again:", f"{lst}.") if p)

    items: list[str] = []
    while True:
        item = str(rng.randint(10_000, 99_999)) if rng.random() < number_share else rng.choice(pool)
        if items and count(text(items + [item])) > length:
            return text(items)
        items.append(item)


def synthetic_documents(n: int, lengths: list[int], seed: int = 0, tasks: list[str] | None = None,
                        count=None, words: list[str] | None = None) -> list[dict[str, Any]]:
    """``n`` documents cycling over ``tasks`` (default: all RULER tasks; also ``copy``, the
    training-only :func:`copy_drill` with items from ``words``) and ``lengths`` (in units of
    ``count``: tokens, or words without one), each a task prompt followed by its answer."""
    from olmoflow.eval.ruler import RULER_TASKS, training_document

    names = tasks or list(RULER_TASKS)
    unknown = [t for t in names if t not in RULER_TASKS and t not in TRAINING_TASKS]
    if unknown:
        raise OlmoflowError(f"synthetic_tasks: unknown task {unknown[0]!r} "
                            f"(available: {', '.join([*RULER_TASKS, *TRAINING_TASKS])})")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name, length = names[i % len(names)], lengths[rng.randrange(len(lengths))]
        doc_seed = TRAIN_SEED_OFFSET + seed * 100_000 + i
        if name == "copy":
            text = copy_drill(random.Random(f"copy-{doc_seed}"), length, count, words)
        else:
            text = training_document(name, length, doc_seed, count)
        out.append({"id": f"synthetic/{name}/{i}", "text": text, "source": "synthetic",
                    "metadata": {"task": name, "length": length}})
    return out


def build_long_documents(docs: Iterable[dict[str, Any]], out_dir: str | Path, *, min_chars: int, max_chars: int,
                         n_synthetic: int, synthetic_lengths: list[int], synthetic_tasks: list[str] | None = None,
                         drop_low: float = 0.2, drop_high: float = 0.2, seed: int = 0,
                         count=None, words: list[str] | None = None) -> dict[str, Any]:
    """Write ``long.jsonl`` (related documents joined, then the compressibility filter),
    ``synthetic.jsonl`` (retrieval-target documents), ``dropped.jsonl`` (what the filter removed,
    with the reason) and ``stats.json`` into ``out_dir``; returns the stats."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    joined = concatenate_related(docs, min_chars, max_chars)
    kept, dropped = compressibility_filter(joined, drop_low, drop_high)
    synth = synthetic_documents(n_synthetic, synthetic_lengths, seed, synthetic_tasks, count, words)
    write_jsonl(out / "long.jsonl", kept)
    write_jsonl(out / "synthetic.jsonl", synth)
    write_jsonl(out / "dropped.jsonl", dropped)
    ratios = [gzip_ratio(d["text"]) for d in kept]
    stats = {"joined": len(joined), "kept": len(kept), "dropped": len(dropped), "synthetic": len(synth),
             "kept_chars": sum(len(d["text"]) for d in kept),
             "kept_gzip_ratio_range": [round(min(ratios), 4), round(max(ratios), 4)] if ratios else None}
    atomic_write_json(out / "stats.json", stats)
    return stats
