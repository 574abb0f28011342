"""Exact dedup: 128-bit text hash, plus optional ID and URL dedup. The first occurrence survives
(first in shard order, then document order), so the result does not depend on the worker count."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from olmoflow.data.steps.base import Context, Doc, GlobalStep, StepConfig
from olmoflow.data.text import hash128


class ExactDedupConfig(StepConfig):
    text: bool = True
    ids: bool = True
    urls: bool = True
    url_field: str = "url"


def _url(doc: Doc, key: str) -> str | None:
    u = doc.get(key) or (doc.get("metadata") or {}).get(key)
    return str(u) if u else None


class ExactDedup(GlobalStep):
    """Remove documents whose text hash, id or URL was already seen."""

    Config = ExactDedupConfig

    def collect(self, docs: Iterator[Doc], ctx: Context) -> Any:
        c: ExactDedupConfig = self.cfg  # type: ignore[assignment]
        out = []
        for i, d in enumerate(docs):
            if not self.applies(d):
                continue
            out.append((i, hash128(d["text"]) if c.text else None, d["id"] if c.ids else None,
                        _url(d, c.url_field) if c.urls else None))
        return out

    def decide(self, summaries: list[Any], ctx: Context) -> list[Any]:
        seen_text: set[bytes] = set()
        seen_id: set[str] = set()
        seen_url: set[str] = set()
        decisions = []
        sizes: dict[bytes, int] = {}  # text hash -> documents with that text
        first: dict[bytes, tuple[int, int]] = {}  # text hash -> (shard, index) of the kept one
        for rows in summaries:
            for _, h, _, _ in rows:
                if h is not None:
                    sizes[h] = sizes.get(h, 0) + 1
        for si, rows in enumerate(summaries):
            removed: dict[int, str | int] = {}
            for i, h, doc_id, url in rows:
                if h is not None and h in seen_text:
                    removed[i] = "exact_duplicate_text"
                elif doc_id is not None and doc_id in seen_id:
                    removed[i] = "duplicate_id"
                elif url is not None and url in seen_url:
                    removed[i] = "duplicate_url"
                else:
                    if h is not None:
                        seen_text.add(h)
                        first[h] = (si, i)
                    if doc_id is not None:
                        seen_id.add(doc_id)
                    if url is not None:
                        seen_url.add(url)
            decisions.append(removed)
        for h, (si, i) in first.items():  # the kept copy records its cluster's size (curation records)
            if sizes[h] > 1:
                decisions[si][i] = sizes[h]
        return decisions
