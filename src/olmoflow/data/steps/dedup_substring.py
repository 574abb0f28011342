"""Substring dedup with a suffix array (pydivsufsort), after Lee et al. 2022 / Dolma 3.

All documents are concatenated (NUL-separated) into one byte string, and its suffix array, LCP
array and longest-previous-factor array are built. A position whose longest previous factor
(clipped at its document's end) is at least ``min_bytes`` starts a span that already occurred
earlier; those spans are marked. Marked bytes are therefore every repeat of a long span except its
first occurrence (in shard, then document order). A document whose marked share reaches
``remove_doc_fraction`` is removed whole; otherwise the marked spans are cut out of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import Field

from olmoflow.data.steps.base import Context, Doc, GlobalStep, StepConfig, set_attr
from olmoflow.errors import require


class SubstringConfig(StepConfig):
    min_bytes: int = Field(default=500, ge=8, description="minimum length of a removed repeated span")
    remove_doc_fraction: float = Field(default=0.8, gt=0.0, le=1.0)


def repeated_spans(data: bytes, starts: np.ndarray, ends: np.ndarray, min_bytes: int) -> np.ndarray:
    """Boolean mask over ``data``: bytes inside a repeat (>= min_bytes, within one document) that has
    an earlier occurrence. ``starts``/``ends`` delimit documents (sorted, non-overlapping)."""
    pds = require("pydivsufsort", "data")
    n = len(data)
    if n == 0:
        return np.zeros(0, dtype=bool)
    arr = np.frombuffer(bytearray(data), dtype=np.uint8)
    sa = pds.divsufsort(arr)
    lcp = pds.kasai(arr, sa)
    # longest previous factor: the longest prefix of suffix i that also starts at some j < i
    lpf = pds.longest_previous_factor(arr, sa, lcp)
    del sa, lcp
    # bytes left until the end of each position's document (separators and gaps get 0)
    room = np.zeros(n, dtype=np.int64)
    for s, e in zip(starts.tolist(), ends.tolist()):
        room[s:e] = np.arange(e - s, 0, -1)
    # a prefix of an earlier match is itself an earlier match, so clipping at the document end is safe
    length = np.minimum(lpf, room)
    keep = np.flatnonzero(length >= min_bytes)
    diff = np.bincount(keep, minlength=n + 1) - np.bincount(keep + length[keep], minlength=n + 1)
    return np.cumsum(diff[:-1]) > 0


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True in a boolean array."""
    if not mask.any():
        return []
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def cut_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Remove byte spans from ``text`` (UTF-8); characters split by a cut are dropped."""
    data = text.encode("utf-8")
    parts, pos = [], 0
    for s, e in spans:
        parts.append(data[pos:s])
        pos = e
    parts.append(data[pos:])
    return b"".join(parts).decode("utf-8", errors="ignore")


class SubstringDedup(GlobalStep):
    """Remove repeated byte spans >= ``min_bytes`` (all but the first occurrence)."""

    Config = SubstringConfig

    def decide(self, summaries: list[Any], ctx: Context) -> list[Any]:
        c: SubstringConfig = self.cfg  # type: ignore[assignment]
        assert ctx.read_shard is not None
        chunks: list[bytes] = []
        owners: list[tuple[int, int]] = []
        starts, ends = [], []
        pos = 0
        for si in range(len(summaries)):
            for i, d in enumerate(ctx.read_shard(si)):
                if not self.applies(d):
                    continue
                data = d["text"].encode("utf-8").replace(b"\x00", b"\x01")  # NUL only as separator
                chunks.append(data)
                chunks.append(b"\x00")
                owners.append((si, i))
                starts.append(pos)
                ends.append(pos + len(data))
                pos += len(data) + 1
        decisions: list[dict[int, Any]] = [{} for _ in summaries]
        if not owners:
            return decisions
        s_arr, e_arr = np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)
        mask = repeated_spans(b"".join(chunks), s_arr, e_arr, c.min_bytes)
        ctx.stats.incr(self.name, "corpus_bytes", int(pos))
        ctx.stats.incr(self.name, "repeated_bytes", int(mask.sum()))
        for k, (si, i) in enumerate(owners):
            m = mask[starts[k] : ends[k]]
            covered = int(m.sum())
            if covered == 0:
                continue
            if covered >= c.remove_doc_fraction * max(len(m), 1):
                decisions[si][i] = "substring_mostly_duplicate"
            else:
                decisions[si][i] = _runs(m)
        return decisions

    def apply(self, docs: Iterator[Doc], decision: Any, ctx: Context) -> Iterator[Doc]:
        for i, d in enumerate(docs):
            dec = decision.get(i)
            if dec is None:
                yield d
            elif isinstance(dec, str):
                ctx.exclude(d, self.name, dec)
            else:
                removed = sum(e - s for s, e in dec)
                new = cut_spans(d["text"], dec).strip()
                if not new.strip():
                    ctx.exclude(d, self.name, "substring_empty_after_cut")
                    continue
                ctx.stats.incr(self.name, "bytes_cut", removed)
                ctx.stats.incr(self.name, "docs_cut")
                set_attr(d, "substring_bytes_removed", removed)
                d["text"] = new
                yield d
