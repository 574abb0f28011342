"""Fuzzy dedup: MinHash-LSH over word 5-gram shingles (rensa), union-find clusters, true-Jaccard check.

Defaults follow Dolma 3: 26 bands x 11 rows = 286 hashes, so a pair at Jaccard 0.8 becomes a candidate
with ~90% probability and one at 0.6 with ~10%. Candidates are verified by exact Jaccard of their
shingle sets; verified pairs are joined by union-find and one document (the first in shard/document
order) survives per cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import Field

from olmoflow.data.steps.base import Context, Doc, GlobalStep, StepConfig
from olmoflow.data.text import batch_shingles, jaccard
from olmoflow.errors import require


class MinHashConfig(StepConfig):
    ngram: int = Field(default=5, ge=1, le=13)
    bands: int = Field(default=26, ge=1)
    rows: int = Field(default=11, ge=1)
    seed: int = 42
    jaccard_threshold: float = Field(default=0.8, ge=0.0, le=1.0, description="verify candidates at this Jaccard")
    verify: bool = True
    max_pairs_per_bucket: int = Field(default=64, ge=2, description="all-pairs check below this bucket size")


def signature_matrix(flat: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (n, num_perm) uint32 of flat pre-hashed shingle sets, computed by rensa."""
    rensa = require("rensa", "data")
    n = len(offsets) - 1
    if n <= 0:
        return np.zeros((0, num_perm), dtype=np.uint32)
    mat = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
        np.ascontiguousarray(flat, dtype=np.uint64), np.ascontiguousarray(offsets, dtype=np.uint64), num_perm, seed
    )
    return np.array(mat.to_rows(), dtype=np.uint32).reshape(n, num_perm)


def signatures(shingle_sets: list[np.ndarray], num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures (n, num_perm) uint32 of a list of shingle-hash arrays."""
    if not shingle_sets:
        return np.zeros((0, num_perm), dtype=np.uint32)
    offsets = np.zeros(len(shingle_sets) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in shingle_sets], out=offsets[1:])
    return signature_matrix(np.concatenate(shingle_sets), offsets, num_perm, seed)


class UnionFind:
    """Union-find with path halving; the root is always the smallest index (the survivor)."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return int(x)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb


def candidate_pairs(sig: np.ndarray, bands: int, rows: int, max_all_pairs: int = 64) -> set[tuple[int, int]]:
    """Pairs of row indices sharing at least one LSH band bucket."""
    pairs: set[tuple[int, int]] = set()
    n = sig.shape[0]
    if n < 2:
        return pairs
    for b in range(bands):
        band = np.ascontiguousarray(sig[:, b * rows : (b + 1) * rows])
        keys = band.view(np.dtype((np.void, band.dtype.itemsize * rows))).ravel()
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        ends = np.r_[starts[1:], n]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            members = np.sort(order[s:e])
            if e - s <= max_all_pairs:
                for i in range(len(members)):
                    for j in range(i + 1, len(members)):
                        pairs.add((int(members[i]), int(members[j])))
            else:  # star from the first plus a chain: enough to connect a true cluster
                for j in range(1, len(members)):
                    pairs.add((int(members[0]), int(members[j])))
                    pairs.add((int(members[j - 1]), int(members[j])))
    return pairs


class MinHashDedup(GlobalStep):
    """Remove near-duplicates (verified Jaccard >= threshold), keeping one document per cluster."""

    Config = MinHashConfig

    def collect(self, docs: Iterator[Doc], ctx: Context) -> Any:
        c: MinHashConfig = self.cfg  # type: ignore[assignment]
        ordinals, flats, offs, sigs = [], [], [], []
        batch: list[tuple[int, str]] = []

        def flush() -> None:
            flat, off = batch_shingles([t for _, t in batch], c.ngram)
            lengths = np.diff(off)
            nonempty = np.flatnonzero(lengths > 0)
            ordinals.extend(batch[k][0] for k in nonempty.tolist())
            # drop empty documents: they have no shingles and are never duplicates
            off_ne = np.r_[0, np.cumsum(lengths[nonempty])]
            sigs.append(signature_matrix(flat, off_ne, c.bands * c.rows, c.seed))
            flats.append(flat)
            offs.append(lengths[nonempty])
            batch.clear()

        for i, d in enumerate(docs):
            if self.applies(d):
                batch.append((i, d["text"]))
                if len(batch) >= 2048:
                    flush()
        if batch:
            flush()
        lengths = np.concatenate(offs) if offs else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return {
            "ordinals": np.array(ordinals, dtype=np.int64),
            "sig": np.concatenate(sigs) if sigs else np.zeros((0, c.bands * c.rows), np.uint32),
            "flat": np.concatenate(flats) if flats else np.zeros(0, np.uint64),
            "offsets": offsets,
        }

    def decide(self, summaries: list[Any], ctx: Context) -> list[Any]:
        c: MinHashConfig = self.cfg  # type: ignore[assignment]
        owners = [(si, int(o)) for si, s in enumerate(summaries) for o in s["ordinals"]]
        sig = np.concatenate([s["sig"] for s in summaries]) if owners else np.zeros((0, 1), np.uint32)
        sets: list[np.ndarray] = []
        for s in summaries:
            off, flat = s["offsets"], s["flat"]
            sets.extend(flat[off[k] : off[k + 1]] for k in range(len(off) - 1))
        pairs = candidate_pairs(sig, c.bands, c.rows, c.max_pairs_per_bucket)
        uf = UnionFind(len(owners))
        verified = 0
        for a, b in sorted(pairs):
            if not c.verify or jaccard(sets[a], sets[b]) >= c.jaccard_threshold:
                uf.union(a, b)
                verified += 1
        ctx.stats.incr(self.name, "candidate_pairs", len(pairs))
        ctx.stats.incr(self.name, "verified_pairs", verified)
        roots = np.array([uf.find(i) for i in range(len(owners))], dtype=np.int64)
        decisions: list[dict[int, str | int]] = [{} for _ in summaries]
        if len(roots):
            sizes = np.bincount(roots, minlength=len(owners))
            cluster_sizes = sizes[sizes > 0]
            hist: dict[str, int] = {}
            for sz in cluster_sizes.tolist():
                hist[str(sz)] = hist.get(str(sz), 0) + 1
            ctx.stats.add_histogram("minhash_cluster_sizes", hist)
            ctx.stats.incr(self.name, "clusters_with_duplicates", int((cluster_sizes > 1).sum()))
            for g in np.flatnonzero(roots != np.arange(len(owners))).tolist():
                si, o = owners[g]
                decisions[si][o] = "minhash_near_duplicate"
            for g in np.flatnonzero((roots == np.arange(len(owners))) & (sizes > 1)).tolist():
                si, o = owners[g]
                decisions[si][o] = int(sizes[g])  # the kept document: its cluster's size
        return decisions
