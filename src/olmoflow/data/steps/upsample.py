"""Quality-aware upsampling (Dolma 3 / OLMo 3 midtraining style).

Documents are ranked by their quality score (within the step's sources) and split into vigintiles.
The bottom ``drop_fraction`` (40%) is dropped; repetition then rises linearly with the bucket, from
``min_repeat`` to ``max_repeat`` (7x) for the top 5%. With ``token_budget`` set, all repetition factors
are scaled so the expected token count meets the budget; fractional factors are realised by a
deterministic coin per document id. Extra copies get ids ``<id>#rep<k>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import Field

from olmoflow.data.steps.base import Context, Doc, GlobalStep, StepConfig, set_attr
from olmoflow.data.text import stable_unit


class UpsampleConfig(StepConfig):
    attribute: str = "quality_score"
    buckets: int = Field(default=20, ge=2)
    drop_fraction: float = Field(default=0.4, ge=0.0, lt=1.0)
    min_repeat: float = Field(default=1.0, ge=0.0)
    max_repeat: float = Field(default=7.0, ge=1.0, le=100.0)
    token_budget: int | None = Field(default=None, ge=1)
    bytes_per_token: float = Field(default=4.0, gt=0)
    seed: int = 0


def repetition_curve(bucket: np.ndarray, buckets: int, drop_fraction: float, lo: float, hi: float) -> np.ndarray:
    """Repetition per bucket: 0 below the drop line, then linear from ``lo`` to ``hi`` at the top bucket."""
    first = int(round(drop_fraction * buckets))
    span = max(buckets - 1 - first, 1)
    rep = lo + (hi - lo) * (bucket - first) / span
    return np.where(bucket < first, 0.0, rep)


class QualityUpsample(GlobalStep):
    """Drop the lowest-quality documents and repeat the best ones (see module docstring)."""

    Config = UpsampleConfig

    def collect(self, docs: Iterator[Doc], ctx: Context) -> Any:
        c: UpsampleConfig = self.cfg  # type: ignore[assignment]
        rows = []
        for i, d in enumerate(docs):
            if not self.applies(d):
                continue
            score = float((d.get("attributes") or {}).get(c.attribute, 0.0))
            rows.append((i, score, len(d["text"].encode("utf-8")) / c.bytes_per_token, d["id"]))
        return rows

    def decide(self, summaries: list[Any], ctx: Context) -> list[Any]:
        c: UpsampleConfig = self.cfg  # type: ignore[assignment]
        flat = [(score, si, i, toks, doc_id) for si, rows in enumerate(summaries) for i, score, toks, doc_id in rows]
        decisions: list[dict[int, tuple[int, int]]] = [{} for _ in summaries]
        if not flat:
            return decisions
        order = sorted(range(len(flat)), key=lambda k: (flat[k][0], flat[k][1], flat[k][2]))
        rank = np.empty(len(flat), dtype=np.int64)
        rank[np.array(order)] = np.arange(len(flat))
        bucket = np.minimum((rank * c.buckets) // len(flat), c.buckets - 1)
        rep = repetition_curve(bucket, c.buckets, c.drop_fraction, c.min_repeat, c.max_repeat)
        toks = np.array([f[3] for f in flat])
        if c.token_budget:
            expected = float((rep * toks).sum())
            if expected > 0:
                rep = rep * (c.token_budget / expected)
        ctx.stats.incr(self.name, "expected_tokens", float((rep * toks).sum()))
        for k, (_, si, i, _t, doc_id) in enumerate(flat):
            whole = int(np.floor(rep[k]))
            if stable_unit(doc_id, c.seed) < rep[k] - whole:
                whole += 1
            decisions[si][i] = (int(bucket[k]), whole)
        return decisions

    def apply(self, docs: Iterator[Doc], decision: Any, ctx: Context) -> Iterator[Doc]:
        for i, d in enumerate(docs):
            dec = decision.get(i)
            if dec is None:
                yield d
                continue
            bucket, copies = dec
            set_attr(d, "quality_bucket", bucket)
            set_attr(d, "repeat", copies)
            if copies == 0:
                ctx.exclude(d, self.name, "low_quality_bucket" if bucket < self._first() else "token_budget")
                continue
            yield d
            for r in range(1, copies):
                ctx.stats.incr(self.name, "extra_copies")
                copy = dict(d, id=f"{d['id']}#rep{r}", _copy=r)
                yield copy

    def _first(self) -> int:
        c: UpsampleConfig = self.cfg  # type: ignore[assignment]
        return int(round(c.drop_fraction * c.buckets))
