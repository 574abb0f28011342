"""The trace index: suffix arrays over the token shards that training read, and the queries on them.

An index directory holds (format :data:`FORMAT`):

* ``trace.json``: format, tokenizer (fingerprint, vocab size, EOS id), dtype, totals, the shards and a
  size + xxh3 checksum of every file (checked on open: a truncated or corrupted index is refused).
* ``tokenizer.json``: a copy of the tokenizer the data was tokenized with (the index is self-contained).
* per shard ``shard-NNNNN.tokens`` (headerless little-endian ``uint16``/``uint32`` token ids, every
  document followed by EOS), ``shard-NNNNN.sa`` (its suffix array, ``int32`` below 2^31 tokens else
  ``int64``, built with pydivsufsort) and ``shard-NNNNN.docs.npy`` (int64 document offsets, n_docs + 1).
* ``docs.jsonl`` + ``docs.offsets.npy``: one record per indexed document in index order (``id``,
  ``source``, ``repeats``, ``dataset``, ``curation``) and the byte offset of each line.
* ``unigram.npy``: int64 count of every token id over the indexed tokens (span unigram probabilities).

A document that mixing or upsampling repeated (the same id, or ``ID#repN`` upsampling copies) is indexed
once; ``repeats`` says how often training saw it. Queries fan out over the shards: ``count``/``find`` of an
n-gram and the longest match starting at every position of a token sequence, found by narrowing the
suffix-array range one token at a time with binary searches vectorised over all positions
(O(L log N) searches for a query of L tokens).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from olmoflow.errors import OlmoflowError
from olmoflow.io import atomic_write_text, canonical_json, sha256_bytes

FORMAT = "olmoflow-trace-v1"
META = "trace.json"
#: a suffix-array range this small is resolved by comparing its suffixes directly
_SMALL = 16
_REP = re.compile(r"#rep\d+$")

__all__ = ["FORMAT", "TraceIndex", "Matches", "build_index", "tokenizer_fingerprint"]


# ---- tokenizer identity --------------------------------------------------------------------------

def tokenizer_fingerprint(path: str | Path) -> str:
    """A short hash of a tokenizer.json's vocabulary, merges and added tokens (not its formatting), so
    two copies of one tokenizer agree and a different tokenizer does not."""
    f = Path(path)
    if f.is_dir():
        f = f / "tokenizer.json"
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OlmoflowError(f"{f}: tokenizer.json not found") from None
    except (OSError, ValueError) as e:
        raise OlmoflowError(f"{f}: not a readable tokenizer.json ({e})") from None
    if not isinstance(data, dict) or "model" not in data:
        raise OlmoflowError(f"{f}: not a tokenizers tokenizer.json (no 'model')")
    added = sorted((t.get("id"), t.get("content")) for t in data.get("added_tokens") or [])
    return sha256_bytes(canonical_json({"model": data["model"], "added": added}).encode())[:16]


def _xxh(path: Path) -> str:
    import xxhash

    h = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# ---- build ---------------------------------------------------------------------------------------

def _base_id(doc_id: str) -> str:
    """The id of the original of an upsampling copy (``ID#rep2`` -> ``ID``)."""
    return _REP.sub("", doc_id)


def load_curation(dirs: Sequence[str | Path]) -> dict[str, dict[str, Any]]:
    """Curation records ({id: record}) from curate output dirs (their ``curation/*.jsonl.gz``)."""
    from olmoflow.io import iter_jsonl

    out: dict[str, dict[str, Any]] = {}
    for d in dirs:
        d = Path(d)
        files = sorted((d / "curation").glob("*.jsonl*")) if d.is_dir() else [d]
        if not files:
            raise OlmoflowError(f"{d}: no curation records (curation/*.jsonl.gz); re-run curate with this version")
        for f in files:
            for rec in iter_jsonl(f):
                out[str(rec["id"])] = {k: v for k, v in rec.items() if k != "id"}
    return out


def _find_tokenizer(datasets: list[Any], tokenizer: str | Path | None) -> Path:
    """The tokenizer.json the datasets were tokenized with; refuses datasets from different tokenizers."""
    from olmoflow.data.tokenize import tokenizer_file

    if tokenizer is not None:
        tok = tokenizer_file(tokenizer)
    else:
        named = datasets[0].meta.get("tokenizer") or ""
        if not named or not Path(named).exists():
            raise OlmoflowError(f"{datasets[0].path / 'meta.json'}: tokenizer {named!r} not found; pass --tokenizer")
        tok = tokenizer_file(named)
    fp = tokenizer_fingerprint(tok)
    for ds in datasets:
        named = ds.meta.get("tokenizer") or ""
        if named and Path(named).exists():
            other = tokenizer_file(named)
            if tokenizer_fingerprint(other) != fp:
                raise OlmoflowError(f"{ds.path}: tokenized with {other}, which differs from tokenizer {tok}")
    return tok


def build_index(
    data: Sequence[str | Path],
    out: str | Path,
    tokenizer: str | Path | None = None,
    curation: Sequence[str | Path] = (),
    shard_tokens: int = 500_000_000,
    quiet: bool = False,
) -> dict[str, Any]:
    """Index the token datasets ``data`` (tokenize/mix outputs) into ``out``; returns trace.json.

    ``curation``: curate output dirs whose per-document records are joined to the indexed documents by
    id. ``shard_tokens``: tokens per suffix-array shard (each shard is sorted in memory on its own).
    """
    from pydivsufsort import divsufsort

    from olmoflow.data.tokens import dtype_for, open_token_dataset
    from olmoflow.progress import progress_bar

    if not data:
        raise OlmoflowError("trace index: no token data given (--data DIR)")
    datasets = [open_token_dataset(p) for p in data]
    vocab = {d.vocab_size for d in datasets}
    eos = {d.eos_token_id for d in datasets}
    if len(vocab) > 1 or len(eos) > 1:
        raise OlmoflowError(f"trace index: datasets use different tokenizers (vocab sizes {sorted(vocab)})")
    vocab_size, eos_id = vocab.pop(), eos.pop()
    tok_path = _find_tokenizer(datasets, tokenizer)
    from tokenizers import Tokenizer

    if Tokenizer.from_file(str(tok_path)).get_vocab_size() != vocab_size:
        raise OlmoflowError(f"{tok_path}: vocab size differs from the data's {vocab_size}: not its tokenizer")
    records = load_curation(curation) if curation else {}
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copyfile(tok_path, out / "tokenizer.json")
    dtype = dtype_for(vocab_size).newbyteorder("<")
    t0 = time.time()

    # 1. which documents to index (first occurrence of each id) and how often training saw each
    plan: list[tuple[int, int, int, str]] = []  # (dataset, shard, doc index, base id)
    repeats: dict[str, int] = {}
    seen_full: set[str] = set()
    meta_of: dict[str, dict[str, Any]] = {}
    for di, ds in enumerate(datasets):
        for si, sh in enumerate(ds.shards):
            for i, rec in enumerate(sh.records()):
                full, base = str(rec["id"]), _base_id(str(rec["id"]))
                if full not in seen_full:
                    seen_full.add(full)
                    repeats[base] = repeats.get(base, 0) + int(rec.get("repeats", 1))
                if base not in meta_of:
                    meta_of[base] = {"id": base, "source": rec.get("source", sh.source), "dataset": str(ds.path)}
                    if "raw" in rec and base not in records:  # data without a curate step (e.g. SFT chats)
                        records[base] = {"raw": rec["raw"]}
                    plan.append((di, si, i, base))
    total = sum(int(datasets[di].shards[si].idx[i + 1] - datasets[di].shards[si].idx[i]) for di, si, i, _ in plan)

    # 2. write shards of whole documents, then sort each shard's suffixes
    shards: list[dict[str, Any]] = []
    unigram = np.zeros(vocab_size, dtype=np.int64)
    doc_lines: list[str] = []
    with progress_bar(quiet, unit="tokens") as prog:
        task = prog.add_task("trace index", total=2 * total)  # each token: written, then sorted
        done = 0
        k = 0
        while k < len(plan):
            name = f"shard-{len(shards):05d}"
            offsets = [0]
            with open(out / f"{name}.tokens", "wb") as f:
                while k < len(plan) and (offsets[-1] == 0 or offsets[-1] < shard_tokens):
                    di, si, i, base = plan[k]
                    toks = datasets[di].shards[si].document(i)
                    f.write(np.asarray(toks).astype(dtype, copy=False).tobytes())
                    offsets.append(offsets[-1] + len(toks))
                    rec = dict(meta_of[base], repeats=repeats[base], shard=len(shards), index=len(offsets) - 2,
                               curation=records.get(base))
                    doc_lines.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
                    k += 1
                    if k % 4096 == 0:
                        prog.update(task, completed=done + offsets[-1])
            n = offsets[-1]
            toks = np.fromfile(out / f"{name}.tokens", dtype=dtype)
            unigram += np.bincount(toks, minlength=vocab_size)[:vocab_size]
            np.save(out / f"{name}.docs.npy", np.asarray(offsets, dtype=np.int64))
            sa = divsufsort(toks)
            sa_dtype = np.int32 if n < 2**31 else np.int64
            sa.astype(sa_dtype, copy=False).tofile(out / f"{name}.sa")
            del sa, toks
            shards.append({"name": name, "n_tokens": n, "n_docs": len(offsets) - 1, "sa_dtype": np.dtype(sa_dtype).name})
            done += 2 * n
            prog.update(task, completed=done)
    with open(out / "docs.jsonl", "w", encoding="utf-8") as f:
        f.writelines(doc_lines)
    line_offsets = np.zeros(len(doc_lines) + 1, dtype=np.int64)
    np.cumsum([len(s.encode("utf-8")) for s in doc_lines], out=line_offsets[1:])
    np.save(out / "docs.offsets.npy", line_offsets)
    np.save(out / "unigram.npy", unigram)
    elapsed = time.time() - t0
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    sizes = {f: (out / f).stat().st_size for f in files}
    meta = {
        "format": FORMAT,
        "tokenizer": {"fingerprint": tokenizer_fingerprint(out / "tokenizer.json"), "source": str(tok_path),
                      "vocab_size": vocab_size, "eos_token_id": eos_id},
        "dtype": dtype.name, "n_tokens": int(unigram.sum()), "n_docs": len(doc_lines),
        "n_docs_seen": int(sum(repeats.values())), "data": [str(d.path) for d in datasets],
        "curation": [str(c) for c in curation], "n_docs_with_curation": sum(1 for b in meta_of if b in records),
        "shards": shards,
        "files": {f: {"bytes": sizes[f], "xxh3": _xxh(out / f)} for f in files},
        "bytes_per_token": round(sum(sizes.values()) / max(int(unigram.sum()), 1), 3),
        "build_seconds": round(elapsed, 3), "build_tokens_per_s": round(total / max(elapsed, 1e-9), 1),
    }
    atomic_write_text(out / META, json.dumps(meta, indent=1), fsync=False)
    return meta


# ---- open + query --------------------------------------------------------------------------------

@dataclass
class _Shard:
    name: str
    tokens: np.ndarray  # memmap view
    sa: np.ndarray  # memmap view
    docs: np.ndarray  # int64 document offsets
    doc_base: int  # global index of this shard's first document

    @property
    def n(self) -> int:
        return int(self.tokens.shape[0])


@dataclass
class Matches:
    """Longest matches of a token sequence: ``lengths[i]`` is the longest n-gram starting at position
    ``i`` found in the index; :meth:`count` gives the occurrences of any prefix of it."""

    lengths: np.ndarray
    _by_depth: list[list[np.ndarray]]  # per shard: counts[d][i] while the range was narrowed token by token
    _depth: list[np.ndarray]  # per shard: depth up to which _by_depth is exact
    _lcps: list[dict[int, np.ndarray]]  # per shard: small-range candidates' match lengths
    _shard_len: list[np.ndarray]

    def count(self, i: int, m: int) -> int:
        """Occurrences in the index of the ``m``-token n-gram starting at query position ``i``."""
        total = 0
        for s in range(len(self._depth)):
            if self._shard_len[s][i] < m:
                continue
            if m <= self._depth[s][i]:
                total += int(self._by_depth[s][m][i])
            else:
                total += int((self._lcps[s][i] >= m).sum())
        return total


class TraceIndex:
    """An opened, validated trace index (see the module docstring). ``TraceIndex.open(dir)``."""

    def __init__(self, path: Path, meta: dict[str, Any], shards: list[_Shard], unigram: np.ndarray):
        self.path, self.meta, self.shards, self.unigram = path, meta, shards, unigram
        self.n_tokens = int(meta["n_tokens"])
        self.n_docs = int(meta["n_docs"])
        self.eos_token_id = int(meta["tokenizer"]["eos_token_id"])
        self.vocab_size = int(meta["tokenizer"]["vocab_size"])
        self._doc_starts = np.cumsum([0] + [s.docs.shape[0] - 1 for s in shards])
        self._line_offsets = np.load(path / "docs.offsets.npy")
        self._tokenizer: Any = None

    @property
    def tokenizer_path(self) -> Path:
        """The tokenizer.json the index was built with."""
        return self.path / "tokenizer.json"

    @property
    def tokenizer(self) -> Any:
        """The index's ``tokenizers.Tokenizer`` (loaded once)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        return self._tokenizer

    @classmethod
    def open(cls, path: str | Path, tokenizer: str | Path | None = None, verify: bool = True) -> TraceIndex:
        """Open the index at ``path``. ``tokenizer``: refuse unless it is the index's tokenizer.
        ``verify``: check every file's checksum (a corrupted index is refused, never queried)."""
        path = Path(path)
        meta_path = path / META
        if not meta_path.is_file():
            raise OlmoflowError(f"{meta_path}: not a trace index (build one with `olmoflow trace index`)")
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise OlmoflowError(f"{meta_path}: invalid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise OlmoflowError(f"{meta_path}: index format {found!r}, expected {FORMAT!r} (rebuild the index)")
        try:
            files = meta["files"]
            shard_meta = meta["shards"]
            tok_meta = meta["tokenizer"]
            dtype = np.dtype(meta["dtype"]).newbyteorder("<")
        except (KeyError, TypeError) as e:
            raise OlmoflowError(f"{meta_path}: missing or bad key {e}") from None
        for name, info in files.items():
            f = path / name
            if not f.is_file():
                raise OlmoflowError(f"{f}: index file missing")
            size = f.stat().st_size
            if size != info["bytes"]:
                raise OlmoflowError(f"{f}: {size} bytes, {META} says {info['bytes']} (truncated or replaced)")
            if verify and _xxh(f) != info["xxh3"]:
                raise OlmoflowError(f"{f}: checksum mismatch (corrupted index file; rebuild the index)")
        if tokenizer is not None:
            theirs = tokenizer_fingerprint(tokenizer)
            if theirs != tok_meta["fingerprint"]:
                raise OlmoflowError(
                    f"{path}: index built with tokenizer {tok_meta.get('source')} (fingerprint {tok_meta['fingerprint']})"
                    f", not with {tokenizer} (fingerprint {theirs}); rebuild the index or trace with its tokenizer")
        shards = []
        doc_base = 0
        for s in shard_meta:
            n = int(s["n_tokens"])
            tokens = np.memmap(path / f"{s['name']}.tokens", dtype=dtype, mode="r", shape=(n,)).view(np.ndarray)
            sa = np.memmap(path / f"{s['name']}.sa", dtype=np.dtype(s["sa_dtype"]), mode="r",
                           shape=(n,)).view(np.ndarray)
            docs = np.load(path / f"{s['name']}.docs.npy")
            if docs[0] != 0 or docs[-1] != n or len(docs) != int(s["n_docs"]) + 1:
                raise OlmoflowError(f"{path / (s['name'] + '.docs.npy')}: document offsets do not cover the shard")
            shards.append(_Shard(s["name"], tokens, sa, docs, doc_base))
            doc_base += int(s["n_docs"])
        unigram = np.load(path / "unigram.npy")
        return cls(path, meta, shards, unigram)

    # -- queries --

    def _query(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        q = np.asarray(tokens, dtype=np.int64)
        if q.ndim != 1:
            raise OlmoflowError("trace: a query is a 1-D sequence of token ids")
        bad = (q < 0) | (q >= self.vocab_size)
        if bad.any():
            raise OlmoflowError(f"trace: token id {int(q[bad][0])} outside the index vocabulary [0, {self.vocab_size})")
        return np.where(q == self.eos_token_id, -2, q)  # EOS separates documents: never part of a match

    def longest_matches(self, tokens: Sequence[int] | np.ndarray, max_len: int | None = None) -> Matches:
        """For each position ``i`` of ``tokens``, the longest n-gram starting there that occurs in the index
        (at most ``max_len`` tokens), with the counts of all its prefixes."""
        q = self._query(tokens)
        L = len(q)
        cap = np.full(L, L, dtype=np.int64) - np.arange(L) if max_len is None else np.minimum(
            L - np.arange(L), max_len)
        qx = np.concatenate([q, [-2]])
        per = [_narrow(s, qx, np.arange(L), cap) for s in self.shards]
        shard_len = [p[0] for p in per]
        lengths = np.max(np.stack(shard_len), axis=0) if per else np.zeros(L, dtype=np.int64)
        return Matches(lengths, [p[1] for p in per], [p[2] for p in per], [p[3] for p in per], shard_len)

    def count(self, ngram: Sequence[int] | np.ndarray) -> int:
        """How often ``ngram`` occurs in the index (0 when absent or empty)."""
        q = self._query(ngram)
        if len(q) == 0:
            return 0
        return sum(int(hi - lo) for _, lo, hi in self._ranges(q))

    def find(self, ngram: Sequence[int] | np.ndarray, limit: int | None = None) -> list[tuple[int, int]]:
        """Where ``ngram`` occurs: (shard, token offset) pairs, shard order then suffix order."""
        q = self._query(ngram)
        out: list[tuple[int, int]] = []
        if len(q) == 0:
            return out
        for s, lo, hi in self._ranges(q):
            sh = self.shards[s]
            stop = hi if limit is None else min(hi, lo + max(limit - len(out), 0))
            out += [(s, int(p)) for p in sh.sa[lo:stop]]
        return out

    def _ranges(self, q: np.ndarray) -> Iterator[tuple[int, int, int]]:
        """(shard, lo, hi): the suffix-array range of each shard whose suffixes start with ``q``."""
        m = len(q)
        qx = np.concatenate([q, [-2]])
        for s, sh in enumerate(self.shards):
            lo = np.zeros(1, dtype=np.int64)
            hi = np.full(1, sh.n, dtype=np.int64)
            for d in range(m):  # one token deeper per step: the range of q[:d+1]
                depth = np.full(1, d, dtype=np.int64)
                target = qx[d : d + 1]
                lo2 = _search(sh, lo, hi, depth, target, upper=False)
                hi2 = _search(sh, lo2, hi, depth, target, upper=True)
                lo, hi = lo2, hi2
                if hi[0] <= lo[0]:
                    break
                if hi[0] - lo[0] <= _SMALL and d + 1 < m:  # few left: compare them whole
                    keep = [k for k in range(int(lo[0]), int(hi[0])) if _lcp(sh, int(sh.sa[k]), qx, 0, m) >= m]
                    lo[0], hi[0] = (keep[0], keep[-1] + 1) if keep else (0, 0)
                    break
            if hi[0] > lo[0]:
                yield s, int(lo[0]), int(hi[0])

    def document_of(self, shard: int, offset: int) -> tuple[int, int, int]:
        """(global document index, document start, document end) of token ``offset`` in ``shard``."""
        sh = self.shards[shard]
        i = int(np.searchsorted(sh.docs, offset, side="right")) - 1
        return sh.doc_base + i, int(sh.docs[i]), int(sh.docs[i + 1])

    def record(self, doc: int) -> dict[str, Any]:
        """The record of global document ``doc`` (id, source, repeats, dataset, shard, index, curation)."""
        lo, hi = int(self._line_offsets[doc]), int(self._line_offsets[doc + 1])
        with open(self.path / "docs.jsonl", "rb") as f:
            f.seek(lo)
            return json.loads(f.read(hi - lo))

    def doc_tokens(self, shard: int, start: int, end: int) -> np.ndarray:
        """Tokens ``[start, end)`` of ``shard``."""
        return np.asarray(self.shards[shard].tokens[start:end])


def _lcp(sh: _Shard, p: int, qx: np.ndarray, i: int, cap: int, d: int = 0) -> int:
    """Length of the common prefix of the suffix at ``p`` and ``qx[i:]`` (known to be >= ``d``), at most ``cap``."""
    while d < cap:
        w = min(64, cap - d)
        a = sh.tokens[p + d : p + d + w]
        b = qx[i + d : i + d + len(a)]
        ne = np.flatnonzero(a != b)
        if ne.size:
            return d + int(ne[0])
        d += len(a)
        if len(a) < w:
            return d
    return d


def _search(sh: _Shard, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, target: np.ndarray,
            upper: bool) -> np.ndarray:
    """Vectorised binary search in each range [lo, hi): first k whose token at ``depth`` is >= target
    (``upper``: > target); a suffix that ends before ``depth`` sorts first (key -1)."""
    lo, hi = lo.copy(), hi.copy()
    n = sh.n
    while True:
        act = lo < hi
        if not act.any():
            return lo
        mid = (lo + hi) >> 1
        p = sh.sa[np.where(act, mid, 0)].astype(np.int64) + depth
        key = np.where(p < n, sh.tokens[np.minimum(p, n - 1)].astype(np.int64), -1)
        go = key <= target if upper else key < target
        lo = np.where(act & go, mid + 1, lo)
        hi = np.where(act & ~go, mid, hi)


def _narrow(sh: _Shard, qx: np.ndarray, starts: np.ndarray, cap: np.ndarray
            ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, dict[int, np.ndarray]]:
    """Longest match in one shard for every start position, narrowing all ranges one token at a time.

    Returns (lengths, counts by depth, exact depth per position, small-range candidate lcps)."""
    P = len(starts)
    lengths = np.zeros(P, dtype=np.int64)
    depth_done = np.zeros(P, dtype=np.int64)
    by_depth = [np.full(P, sh.n, dtype=np.int64)]
    lcps: dict[int, np.ndarray] = {}
    lo = np.zeros(P, dtype=np.int64)
    hi = np.full(P, sh.n, dtype=np.int64)
    active = np.flatnonzero(cap > 0)
    d = 0
    while active.size:
        dep = np.full(active.size, d, dtype=np.int64)
        target = qx[starts[active] + d]
        lo2 = _search(sh, lo[active], hi[active], dep, target, upper=False)
        hi2 = _search(sh, lo2, hi[active], dep, target, upper=True)
        cnt = hi2 - lo2
        counts = np.zeros(P, dtype=np.int64)
        counts[active] = cnt
        by_depth.append(counts)
        found = cnt > 0
        ended = active[~found]
        lengths[ended] = d
        depth_done[ended] = d
        active, lo2, hi2 = active[found], lo2[found], hi2[found]
        lo[active], hi[active] = lo2, hi2
        d += 1
        reached = cap[active] <= d
        lengths[active[reached]] = d
        depth_done[active[reached]] = d
        small = ~reached & (hi2 - lo2 <= _SMALL)
        for j in np.flatnonzero(small):
            i = int(active[j])
            cand = np.array([_lcp(sh, int(sh.sa[k]), qx, int(starts[i]), int(cap[i]), d)
                             for k in range(int(lo[i]), int(hi[i]))], dtype=np.int64)
            lcps[i] = cand
            lengths[i] = int(cand.max())
            depth_done[i] = d
        active = active[~reached & ~small]
    return lengths, by_depth, depth_done, lcps


def index_size(path: str | Path) -> int:
    """Bytes of an index directory's files."""
    return sum(os.path.getsize(p) for p in Path(path).iterdir() if p.is_file())
