"""Token data for pretraining: read ``olmoflow tokenize`` datasets and draw training sequences.

* Datasets are opened and validated by :func:`olmoflow.data.tokens.open_token_dataset` (the one
  token format, re-exported here); a source's shards are read as memmaps.
* :class:`FixedLengthSource` concatenates a source's documents (EOS-separated) and cuts windows of
  ``seq_len + 1`` tokens with stride ``seq_len``: inputs are ``w[:-1]``, labels ``w[1:]``. Like OLMo it
  trains across document boundaries.
* :class:`PackedSource` packs whole documents into ``seq_len`` sequences with best-fit decreasing;
  each sequence carries ``doc_ids`` for intra-document attention and labels are ``-100`` wherever
  the next token belongs to another document (or is padding).
* :class:`MixtureSampler` fixes, per epoch, a deterministic order of instances from several sources
  drawn to target ratios (up- or down-sampling) and globally shuffled by ``(seed, epoch)``.
  :class:`DataPosition` ``(epoch, index)`` is what checkpoints save to resume exactly.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from olmoflow.data.tokens import TokenDataset, TokenShard, open_token_dataset
from olmoflow.errors import OlmoflowError

__all__ = [
    "IGNORE_INDEX",
    "DataPosition",
    "FixedLengthSource",
    "MixtureSampler",
    "PackedSource",
    "TokenDataset",
    "TokenShard",
    "build_sources",
    "collate",
    "open_token_dataset",
    "pack_best_fit",
]

IGNORE_INDEX = -100


class _Stream:
    """Several shards read as one concatenated token stream."""

    def __init__(self, shards: Sequence[TokenShard]):
        self.shards = list(shards)
        self.offsets = np.cumsum([0] + [s.n_tokens for s in self.shards])

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def read(self, start: int, end: int) -> np.ndarray:
        """Tokens ``[start, end)`` of the concatenation as int64."""
        out = np.empty(end - start, dtype=np.int64)
        k = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pos = start
        while pos < end:
            shard, base = self.shards[k], int(self.offsets[k])
            stop = min(end, int(self.offsets[k + 1]))
            out[pos - start : stop - start] = shard.tokens[pos - base : stop - base]
            pos, k = stop, k + 1
        return out

    def doc_spans(self) -> np.ndarray:
        """``[n_docs, 2]`` (start, end) of every document in stream coordinates."""
        spans = [np.stack([s.idx[:-1], s.idx[1:]], axis=1) + int(o) for s, o in zip(self.shards, self.offsets)]
        return np.concatenate(spans).astype(np.int64)


class FixedLengthSource:
    """Windows of ``seq_len + 1`` tokens, stride ``seq_len``, across document boundaries."""

    def __init__(self, name: str, shards: Sequence[TokenShard], seq_len: int):
        self.name, self.seq_len = name, seq_len
        self.stream = _Stream(shards)
        self.n = max(0, (self.stream.n_tokens - 1) // seq_len)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        w = self.stream.read(i * self.seq_len, i * self.seq_len + self.seq_len + 1)
        return {"input_ids": w[:-1], "labels": w[1:]}


def pack_best_fit(lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """Best-fit decreasing bin packing: item indices per bin, each bin's total ``<= capacity``.

    Items are placed longest first into the open bin with the least room that still fits them
    (ties: the earliest bin), else a new bin. Deterministic for a given input.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (remaining room, bin id)
    for item in order.tolist():
        n = int(lengths[item])
        if n > capacity:
            raise ValueError(f"item of length {n} exceeds capacity {capacity}")
        j = bisect.bisect_left(free, (n, -1))
        if j < len(free):
            room, b = free.pop(j)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(item)
        if room - n > 0:
            bisect.insort(free, (room - n, b))
    return bins


class PackedSource:
    """Whole documents packed into ``seq_len`` sequences with ``doc_ids`` and no cross-doc labels.

    Documents longer than ``seq_len`` are split into ``seq_len`` pieces, each its own segment.
    Padding uses ``pad_token_id`` with label ``-100`` and a doc id of its own.
    """

    def __init__(self, name: str, shards: Sequence[TokenShard], seq_len: int, pad_token_id: int):
        self.name, self.seq_len, self.pad = name, seq_len, pad_token_id
        self.stream = _Stream(shards)
        segs = []
        for start, end in self.stream.doc_spans().tolist():
            for s in range(start, end, seq_len):
                segs.append((s, min(end, s + seq_len)))
        self.segments = np.asarray(segs, dtype=np.int64).reshape(-1, 2)
        lengths = self.segments[:, 1] - self.segments[:, 0]
        self.bins = pack_best_fit(lengths, seq_len) if len(lengths) else []

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        pieces = []
        for seg in sorted(self.bins[i]):  # segments in stream order inside a sequence
            s, e = self.segments[seg]
            toks = self.stream.read(int(s), int(e))
            labels = np.full(len(toks), IGNORE_INDEX, dtype=np.int64)
            labels[:-1] = toks[1:]
            pieces.append((toks, labels))
        return packed_item(pieces, self.seq_len, self.pad)


def packed_item(pieces: Sequence[tuple[np.ndarray, np.ndarray]], seq_len: int, pad: int) -> dict[str, np.ndarray]:
    """One packed sequence from ``(ids, labels)`` pieces placed one after another: each piece its own
    ``doc_ids`` value (attention stays inside it; positions restart), labels as given (a piece's last
    token predicts nothing across the boundary), then padding with its own doc id and no labels."""
    ids = np.full(seq_len, pad, dtype=np.int64)
    labels = np.full(seq_len, IGNORE_INDEX, dtype=np.int64)
    doc_ids = np.empty(seq_len, dtype=np.int64)
    pos = 0
    for k, (toks, lab) in enumerate(pieces):
        n = len(toks)
        ids[pos : pos + n] = toks
        labels[pos : pos + n] = lab
        doc_ids[pos : pos + n] = k
        pos += n
    doc_ids[pos:] = len(pieces)
    return {"input_ids": ids, "labels": labels, "doc_ids": doc_ids}


def build_sources(
    datasets: Sequence[TokenDataset], mode: str, seq_len: int, pad_token_id: int
) -> list[FixedLengthSource | PackedSource]:
    """Group shards of all datasets by their ``source`` name (sorted) into one source each."""
    by_source: dict[str, list[TokenShard]] = {}
    for ds in datasets:
        for shard in ds.shards:
            by_source.setdefault(shard.source, []).append(shard)
    out = []
    for name in sorted(by_source):
        if mode == "packed":
            src = PackedSource(name, by_source[name], seq_len, pad_token_id)
        else:
            src = FixedLengthSource(name, by_source[name], seq_len)
        if len(src) == 0:
            paths = ", ".join(str(s.path) for s in by_source[name])
            raise OlmoflowError(f"source {name!r} ({paths}) has fewer than seq_len+1={seq_len + 1} tokens")
        out.append(src)
    return out


@dataclass
class DataPosition:
    """Where the data stream stands: instance ``index`` of epoch ``epoch`` (global, all ranks)."""

    epoch: int = 0
    index: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}


class MixtureSampler:
    """Deterministic epoch orders over several sources drawn to target ratios.

    Each epoch has as many instances as all sources together (their natural size); with a
    ``mixture`` every source contributes ``ratio × epoch size`` instances (largest remainder
    rounding), cycling through a fresh permutation of its own instances when upsampled. The
    combined list is then shuffled. Everything depends only on ``(seed, epoch)``, never on the
    number of processes, so any world size sees the same global batches.
    """

    def __init__(self, sources: Sequence, mixture: dict[str, float] | None = None, seed: int = 0,
                 shuffle: bool = True):
        self.sources, self.seed, self.shuffle = list(sources), seed, shuffle
        names = [s.name for s in self.sources]
        mixture = dict(mixture or {})
        unknown = sorted(set(mixture) - set(names))
        if unknown:
            raise OlmoflowError(f"data.mixture names unknown source(s) {unknown} (available: {names})")
        self.epoch_size = sum(len(s) for s in self.sources)
        if mixture:
            total = sum(mixture.values())
            ratios = np.array([mixture.get(n, 0.0) / total for n in names])
            exact = ratios * self.epoch_size
            counts = np.floor(exact).astype(np.int64)
            rest = self.epoch_size - int(counts.sum())
            for j in np.argsort(-(exact - counts), kind="stable")[:rest]:
                counts[j] += 1
        else:
            counts = np.array([len(s) for s in self.sources], dtype=np.int64)
        self.counts = counts
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1], self._cache[2]
        rng = np.random.default_rng([self.seed, epoch])
        srcs, idxs = [], []
        for j, (src, n) in enumerate(zip(self.sources, self.counts.tolist())):
            reps = math.ceil(n / len(src)) if n else 0
            if self.shuffle:
                pick = np.concatenate([rng.permutation(len(src)) for _ in range(reps)] or [np.zeros(0, np.int64)])
            else:
                pick = np.tile(np.arange(len(src)), reps)
            idxs.append(pick[:n].astype(np.int64))
            srcs.append(np.full(n, j, dtype=np.int32))
        src_of, idx_of = np.concatenate(srcs), np.concatenate(idxs)
        if self.shuffle:
            perm = rng.permutation(len(src_of))
            src_of, idx_of = src_of[perm], idx_of[perm]
        self._cache = (epoch, src_of, idx_of)
        return src_of, idx_of

    def positions(self, pos: DataPosition, n: int) -> tuple[list[tuple[int, int]], DataPosition]:
        """The next ``n`` ``(epoch, index)`` slots from ``pos`` and the position after them."""
        out = []
        epoch, index = pos.epoch, pos.index
        for _ in range(n):
            if index >= self.epoch_size:
                epoch, index = epoch + 1, 0
            out.append((epoch, index))
            index += 1
        return out, DataPosition(epoch, index)

    def get(self, epoch: int, index: int) -> dict[str, np.ndarray]:
        src_of, idx_of = self._epoch(epoch)
        return self.sources[int(src_of[index])][int(idx_of[index])]

    def source_of(self, epoch: int, index: int) -> str:
        return self.sources[int(self._epoch(epoch)[0][index])].name


def collate(items: Sequence[dict[str, np.ndarray]]):
    """Stack instances into a dict of int64 torch tensors ``[B, T]``."""
    import torch

    return {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
