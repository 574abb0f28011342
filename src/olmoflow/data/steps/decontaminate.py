"""Decontamination against evaluation items, in two modes sharing one n-gram index.

``mode: pretrain`` (default, pre/midtraining style): each eval item (JSONL with ``id`` and ``text``,
or question-style fields) is cut into word 5-grams weighted by IDF over the eval set, so n-grams
shared by many items (template phrases) count little.
A training document contaminates an item when the IDF-weighted share of the item's 5-grams present
in the document reaches ``threshold`` (0.8). Items shorter than ``short_item_words`` (13) words need a
near-verbatim match instead: their whole word sequence (case, punctuation and spacing ignored) must
appear contiguously in the document. Contaminated documents are removed; the matches are kept in
the removed record and summarised in the run's decontamination report.

``mode: posttrain`` (post-training style, OLMo 3): word 8-grams (``ngram``, default 8 in this mode).
An item is contaminated by a single training document when at least ``coverage_threshold`` (0.5) of
the item's word tokens lie inside some 8-gram the item shares with that document; coverage is never
summed across documents. Items shorter than ``ngram`` words must appear as a contiguous word
sequence in the document. Removed documents carry the reason ``eval_contamination_posttrain`` and
their matches carry ``mode: posttrain`` so the report says which rule fired.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_serializer, model_validator

from olmoflow.data.steps.base import Context, Doc, Step, StepConfig, set_attr
from olmoflow.data.text import ngram_hashes, word_hashes, words
from olmoflow.errors import OlmoflowError
from olmoflow.io import iter_records

TEXT_FIELDS = ("text", "question", "problem", "prompt", "input", "query")
POSTTRAIN_NGRAM = 8
# settings added with the posttrain mode: left out of the dumped recipe while at their defaults, so
# existing (pretrain) recipes keep their run hash and resume markers
_NEW_DEFAULTS: dict[str, Any] = {"mode": "pretrain", "coverage_threshold": 0.5}


class DecontaminateConfig(StepConfig):
    mode: Literal["pretrain", "posttrain"] = Field(
        default="pretrain", description="pretrain: IDF-weighted n-gram share; posttrain: token coverage by one doc")
    eval_files: list[str] = Field(default_factory=list)
    ngram: int = Field(default=5, ge=1, le=13, description="word n-gram size (posttrain default: 8)")
    threshold: float = Field(default=0.8, gt=0.0, le=1.0, description="pretrain: weighted n-gram share")
    coverage_threshold: float = Field(
        default=0.5, gt=0.0, le=1.0, description="posttrain: share of an item's tokens covered by one document")
    short_item_words: int = Field(default=13, ge=1, description="pretrain: items shorter than this need a verbatim match")
    remove: bool = True

    @model_validator(mode="after")
    def _posttrain_ngram(self) -> DecontaminateConfig:
        """Post-training matching uses 8-grams unless ``ngram`` is set explicitly."""
        if self.mode == "posttrain" and "ngram" not in self.model_fields_set:
            object.__setattr__(self, "ngram", POSTTRAIN_NGRAM)
            self.model_fields_set.add("ngram")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        for k, v in _NEW_DEFAULTS.items():
            if out.get(k) == v:
                del out[k]
        return out


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
        for where, obj in iter_records(path):
            text = item_text(obj)
            if text is None:
                raise OlmoflowError(f"{where}: eval item has no 'text' or question field")
            items.append((f"{path.stem}:{obj.get('id', int(where.rsplit(':', 1)[1]))}", text))
    return items


class EvalIndex:
    """n-gram index of eval items with IDF weights, plus exact word-sequence keys for short items.

    ``mode="pretrain"`` scores an item by the IDF-weighted share of its n-grams found in a document;
    ``mode="posttrain"`` by the share of its word tokens covered by n-grams found in the document
    (items shorter than ``n`` words are the short items there). Either way ``match`` returns the
    items whose score reaches the threshold, plus short items found verbatim.
    """

    def __init__(self, items: list[tuple[str, str]], n: int = 5, short_words: int = 13, mode: str = "pretrain"):
        if mode not in ("pretrain", "posttrain"):
            raise ValueError(f"unknown decontamination mode {mode!r}")
        if mode == "posttrain":
            short_words = n
        self.n = n
        self.mode = mode
        self.ids = [i for i, _ in items]
        self.grams: dict[int, list[int]] = {}
        self.item_grams: list[np.ndarray] = []
        self.item_seq: list[np.ndarray] = []  # posttrain: each item's n-gram hashes in word order
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
                if mode == "posttrain":
                    self.item_seq.append(np.zeros(0, dtype=np.uint64))
                continue
            seq = ngram_hashes(wh, n)
            g = np.unique(seq)
            self.item_grams.append(g)
            if mode == "posttrain":
                self.item_seq.append(seq)
            for h in g.tolist():
                df[h] = df.get(h, 0) + 1
                self.grams.setdefault(h, []).append(k)
        n_items = max(len(items), 1)
        self.idf = {h: math.log((n_items + 1) / (c + 1)) + 1.0 for h, c in df.items()}
        self.item_weight = np.array([sum(self.idf[h] for h in g.tolist()) for g in self.item_grams])
        self.all_grams = np.array(sorted(self.grams), dtype=np.uint64)

    def _idf_scores(self, present: np.ndarray) -> dict[int, float]:
        """pretrain: IDF-weighted share of each item's n-grams among ``present``."""
        hits: dict[int, float] = {}
        for h in present.tolist():
            w = self.idf[h]
            for k in self.grams[h]:
                hits[k] = hits.get(k, 0.0) + w
        return {k: s / self.item_weight[k] for k, s in hits.items()}

    def _coverage_scores(self, present: np.ndarray) -> dict[int, float]:
        """posttrain: share of each item's word tokens inside an n-gram among ``present``."""
        cand = sorted({k for h in present.tolist() for k in self.grams[h]})
        out = {}
        for k in cand:
            seq = self.item_seq[k]
            starts = np.flatnonzero(np.isin(seq, present))  # sorted n-gram start positions
            # union of the windows [s, s + n): each start adds the gap to the next, at most n
            covered = int(np.minimum(np.diff(starts), self.n).sum()) + self.n
            out[k] = covered / (len(seq) + self.n - 1)
        return out

    def match(self, text: str, threshold: float) -> list[tuple[str, float]]:
        """Eval items contaminating ``text`` as (item_id, score), sorted by id."""
        toks = words(text)
        if not toks:
            return []
        wh = word_hashes(toks)
        scores: dict[int, float] = {}
        if len(self.all_grams):
            dg = np.unique(ngram_hashes(wh, self.n))
            present = dg[np.isin(dg, self.all_grams, assume_unique=True)]
            scores = self._coverage_scores(present) if self.mode == "posttrain" else self._idf_scores(present)
        out = []
        for k, score in scores.items():
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

    def prepare(self, workdir: str) -> None:
        """Driver-side: a missing or malformed eval file fails before any document is read."""
        load_eval_items(self.cfg.eval_files)  # type: ignore[attr-defined]

    def setup(self) -> None:
        c: DecontaminateConfig = self.cfg  # type: ignore[assignment]
        self.index = EvalIndex(load_eval_items(c.eval_files), c.ngram, c.short_item_words, c.mode)

    def process(self, doc: Doc, ctx: Context) -> Doc | None:
        c: DecontaminateConfig = self.cfg  # type: ignore[assignment]
        if not self.index.ids:
            return doc
        post = c.mode == "posttrain"
        matches = self.index.match(doc["text"], c.coverage_threshold if post else c.threshold)
        if not matches:
            return doc
        if post:
            set_attr(doc, "decontam_matches", [{"item": i, "score": s, "mode": c.mode} for i, s in matches])
        else:
            set_attr(doc, "decontam_matches", [{"item": i, "score": s} for i, s in matches])
        ctx.stats.incr(self.name, "item_matches", len(matches))
        if c.remove:
            ctx.exclude(doc, self.name, "eval_contamination_posttrain" if post else "eval_contamination")
            return None
        return doc
