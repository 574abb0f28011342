"""Decontamination against evaluation items (pre/midtraining style).

Each eval item (JSONL with ``id`` and ``text``, or question-style fields) is cut into word 5-grams
weighted by IDF over the eval set, so n-grams shared by many items (template phrases) count little.
A training document contaminates an item when the IDF-weighted share of the item's 5-grams present
in the document reaches ``threshold`` (0.8). Items shorter than ``short_item_words`` (13) words need a
near-verbatim match instead: their whole word sequence (case, punctuation and spacing ignored) must
appear contiguously in the document. Contaminated documents are removed; the matches are kept in
the removed record and summarised in the run's decontamination report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from olmoflow.data.steps.base import Context, Doc, Step, StepConfig, set_attr
from olmoflow.data.text import ngram_hashes, word_hashes, words
from olmoflow.errors import OlmoflowError

TEXT_FIELDS = ("text", "question", "problem", "prompt", "input", "query")


class DecontaminateConfig(StepConfig):
    eval_files: list[str] = Field(default_factory=list)
    ngram: int = Field(default=5, ge=1, le=13)
    threshold: float = Field(default=0.8, gt=0.0, le=1.0)
    short_item_words: int = Field(default=13, ge=1)
    remove: bool = True


def item_text(obj: dict[str, Any]) -> str | None:
    """The text of an eval item: ``text`` or the first question-like field."""
    for f in TEXT_FIELDS:
        v = obj.get(f)
        if isinstance(v, str) and v.strip():
            return v
    return None


def load_eval_items(paths: list[str]) -> list[tuple[str, str]]:
    """(item_id, text) for every item in the eval JSONL files; ids are prefixed by the file stem."""
    items = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise OlmoflowError(f"decontamination file not found: {path}")
        with open(path, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise OlmoflowError(f"{path}:{ln}: invalid JSON ({e.msg})") from None
                text = item_text(obj)
                if text is None:
                    raise OlmoflowError(f"{path}:{ln}: eval item has no 'text' or question field")
                items.append((f"{path.stem}:{obj.get('id', ln)}", text))
    return items


class EvalIndex:
    """5-gram index of eval items with IDF weights, plus exact word-sequence keys for short items."""

    def __init__(self, items: list[tuple[str, str]], n: int = 5, short_words: int = 13):
        self.n = n
        self.ids = [i for i, _ in items]
        self.grams: dict[int, list[int]] = {}
        self.item_grams: list[np.ndarray] = []
        self.short: dict[int, dict[int, list[int]]] = {}  # length k -> hash of k words -> items
        self.short_seq: dict[int, str] = {}
        self.is_short = np.zeros(len(items), dtype=bool)
        df: dict[int, int] = {}
        for k, (_, text) in enumerate(items):
            toks = words(text)
            wh = word_hashes(toks)
            if len(toks) < short_words:
                self.is_short[k] = True
                self.short_seq[k] = " ".join(toks)
                key = int(ngram_hashes(wh, len(toks))[0]) if toks else 0
                self.short.setdefault(len(toks), {}).setdefault(key, []).append(k)
                self.item_grams.append(np.zeros(0, dtype=np.uint64))
                continue
            g = np.unique(ngram_hashes(wh, n))
            self.item_grams.append(g)
            for h in g.tolist():
                df[h] = df.get(h, 0) + 1
                self.grams.setdefault(h, []).append(k)
        n_items = max(len(items), 1)
        self.idf = {h: math.log((n_items + 1) / (c + 1)) + 1.0 for h, c in df.items()}
        self.item_weight = np.array([sum(self.idf[h] for h in g.tolist()) for g in self.item_grams])
        self.all_grams = np.array(sorted(self.grams), dtype=np.uint64)

    def match(self, text: str, threshold: float) -> list[tuple[str, float]]:
        """Eval items contaminating ``text`` as (item_id, score), sorted by id."""
        toks = words(text)
        if not toks:
            return []
        wh = word_hashes(toks)
        hits: dict[int, float] = {}
        if len(self.all_grams):
            dg = np.unique(ngram_hashes(wh, self.n))
            present = dg[np.isin(dg, self.all_grams, assume_unique=True)]
            for h in present.tolist():
                w = self.idf[h]
                for k in self.grams[h]:
                    hits[k] = hits.get(k, 0.0) + w
        out = []
        for k, s in hits.items():
            score = s / self.item_weight[k]
            if score >= threshold - 1e-9:
                out.append((self.ids[k], round(float(score), 4)))
        if self.short:
            joined = None
            for length, table in self.short.items():
                if length == 0 or length > len(toks):
                    continue
                for h in np.unique(ngram_hashes(wh, length)).tolist():
                    for k in table.get(h, ()):
                        joined = joined if joined is not None else " " + " ".join(toks) + " "
                        if f" {self.short_seq[k]} " in joined:  # verify: guards against hash collisions
                            out.append((self.ids[k], 1.0))
        return sorted(set(out))


class Decontaminate(Step):
    """Remove documents that contain evaluation items (see module docstring)."""

    Config = DecontaminateConfig

    def setup(self) -> None:
        c: DecontaminateConfig = self.cfg  # type: ignore[assignment]
        self.index = EvalIndex(load_eval_items(c.eval_files), c.ngram, c.short_item_words)

    def process(self, doc: Doc, ctx: Context) -> Doc | None:
        c: DecontaminateConfig = self.cfg  # type: ignore[assignment]
        if not self.index.ids:
            return doc
        matches = self.index.match(doc["text"], c.threshold)
        if not matches:
            return doc
        set_attr(doc, "decontam_matches", [{"item": i, "score": s} for i, s in matches])
        ctx.stats.incr(self.name, "item_matches", len(matches))
        if c.remove:
            ctx.exclude(doc, self.name, "eval_contamination")
            return None
        return doc
