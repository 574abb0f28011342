"""The token dataset format (docs/formats.md), defined once: written by tokenize and mix, read by mix,
the trainer's datasets and tests.

A token dataset is a directory:

* ``meta.json``: ``format`` (:data:`FORMAT`), ``dtype``, ``vocab_size``, ``eos_token_id``, ``tokenizer``,
  totals, tokens per source and the list of ``shards`` (``path``, ``source``, ``n_tokens``, ``n_docs``).
* per shard ``<name>.bin``: headerless little-endian ``uint16`` (vocab <= 65536) or ``uint32`` token ids,
  every document followed by EOS; read as a memmap, never loaded whole.
* ``<name>.idx.npy``: int64 document offsets, length ``n_docs + 1``, from 0 to ``n_tokens``; document
  ``i`` is ``tokens[idx[i]:idx[i+1]]``.
* ``<name>.docs.jsonl``: line ``i`` describes document ``i``: ``{"id": ..., "source": ...}`` (the Dolma
  ``id`` and ``source``; mix adds ``"repeats"``, how often the document occurs in its shard). So the
  document, and its id, of every token is recoverable (tracing needs that).

:func:`open_token_dataset` validates all of it on open; every problem is a one-line
:class:`~olmoflow.errors.OlmoflowError` naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from olmoflow.errors import OlmoflowError
from olmoflow.io import atomic_write_text

FORMAT = "olmoflow-tokens-v2"
META = "meta.json"
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
_RECORD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one compact line per document

__all__ = ["FORMAT", "Document", "ShardWriter", "TokenDataset", "TokenShard", "dtype_for", "open_token_dataset",
           "write_meta"]


def dtype_for(vocab_size: int) -> np.dtype:
    """The narrowest supported dtype for token ids below ``vocab_size``."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def _side_paths(bin_path: Path) -> tuple[Path, Path]:
    """(document offsets, document records) next to a ``.bin`` shard."""
    stem = bin_path.name[: -len(".bin")] if bin_path.name.endswith(".bin") else bin_path.name
    return bin_path.with_name(f"{stem}.idx.npy"), bin_path.with_name(f"{stem}.docs.jsonl")


class ShardWriter:
    """Write one shard (``.bin`` + ``.idx.npy`` + ``.docs.jsonl``), streaming, replaced atomically on close.

    ``with ShardWriter(out_dir, "web-00000", "web", dtype) as w: w.add(tokens, doc_id)``; then ``w.entry``
    is the shard's line for :func:`write_meta`. A writer left by an exception leaves no files behind.
    """

    def __init__(self, out_dir: str | Path, name: str, source: str, dtype: np.dtype | str):
        self.path = Path(out_dir) / f"{name}.bin"
        self.source, self.dtype = source, np.dtype(dtype).newbyteorder("<")
        self.idx_path, self.docs_path = _side_paths(self.path)
        self._tmp = [p.with_name(p.name + ".tmp") for p in (self.path, self.docs_path)]
        self._bin = open(self._tmp[0], "wb")
        self._docs = open(self._tmp[1], "w", encoding="utf-8")
        self._offsets = [0]

    def add(self, tokens: np.ndarray, doc_id: str, source: str | None = None, **extra: Any) -> None:
        """Append one document (its tokens, EOS included) with its id, source (default: the shard's)
        and any extra per-document fields."""
        self._bin.write(np.asarray(tokens).astype(self.dtype, copy=False).tobytes())
        self._offsets.append(self._offsets[-1] + len(tokens))
        rec = {"id": doc_id, "source": self.source if source is None else source, **extra}
        self._docs.write(_RECORD.encode(rec) + "\n")

    @property
    def n_tokens(self) -> int:
        return self._offsets[-1]

    @property
    def entry(self) -> dict[str, Any]:
        return {"path": self.path.name, "source": self.source, "n_tokens": self.n_tokens,
                "n_docs": len(self._offsets) - 1}

    def close(self) -> None:
        self._bin.close()
        self._docs.close()
        tmp_idx = self.idx_path.with_name(self.idx_path.name + ".tmp.npy")
        np.save(tmp_idx, np.asarray(self._offsets, dtype=np.int64))
        os.replace(self._tmp[0], self.path)
        os.replace(self._tmp[1], self.docs_path)
        os.replace(tmp_idx, self.idx_path)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        self._bin.close()
        self._docs.close()
        for p in self._tmp:
            p.unlink(missing_ok=True)


def write_meta(out: str | Path, shards: list[dict[str, Any]], vocab_size: int, eos_token_id: int, tokenizer: str,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``meta.json`` for ``shards`` (entries from :attr:`ShardWriter.entry`); returns its content."""
    sources: dict[str, int] = {}
    for s in shards:
        sources[s["source"]] = sources.get(s["source"], 0) + s["n_tokens"]
    meta = {
        "format": FORMAT, "dtype": str(dtype_for(vocab_size)), "vocab_size": vocab_size, "eos_token_id": eos_token_id,
        "tokenizer": tokenizer, "n_tokens": sum(s["n_tokens"] for s in shards),
        "n_docs": sum(s["n_docs"] for s in shards), "sources": dict(sorted(sources.items())), "shards": shards,
        **(extra or {}),
    }
    atomic_write_text(Path(out) / META, json.dumps(meta, indent=1), fsync=False)
    return meta


class Document(NamedTuple):
    """One document of a token dataset: its id, source and tokens (EOS included)."""

    id: str
    source: str
    tokens: np.ndarray


@dataclass
class TokenShard:
    """One validated shard: ``tokens`` (memmap), document offsets ``idx`` and the document records file."""

    path: Path
    source: str
    tokens: np.ndarray
    idx: np.ndarray
    docs_path: Path
    _lines: np.ndarray | None = field(default=None, repr=False, compare=False)
    _buf: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._flat = self.tokens.view(np.ndarray)  # same mapped bytes; slicing skips np.memmap's overhead

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_docs(self) -> int:
        return len(self.idx) - 1

    def doc_at(self, token: int) -> int:
        """Index of the document holding token offset ``token``."""
        if not 0 <= token < self.n_tokens:
            raise IndexError(f"{self.path}: token {token} out of range [0, {self.n_tokens})")
        return int(np.searchsorted(self.idx, token, side="right")) - 1

    def record(self, i: int) -> dict[str, Any]:
        """The record (``id``, ``source``, ...) of document ``i``, read from the memory-mapped side file."""
        lines = self._line_starts()
        assert self._buf is not None
        return json.loads(bytes(self._buf[lines[i] : lines[i + 1] - 1]).decode("utf-8"))

    def records(self) -> Iterator[dict[str, Any]]:
        """Every document's record, in order."""
        with open(self.docs_path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    def document(self, i: int) -> np.ndarray:
        """Tokens of document ``i`` (a view of the memmap)."""
        return self._flat[self.idx[i] : self.idx[i + 1]]

    def _line_starts(self) -> np.ndarray:
        """Byte offsets where each record line starts, plus the file end (checked against ``n_docs``)."""
        if self._lines is None:
            size = self.docs_path.stat().st_size
            mapped = np.memmap(self.docs_path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
            self._buf = mapped.view(np.ndarray)
            ends = np.flatnonzero(self._buf == 10)
            complete = size == 0 or (len(ends) > 0 and ends[-1] == size - 1)  # no partial last line
            if len(ends) != self.n_docs or not complete:
                raise OlmoflowError(
                    f"{self.docs_path}: holds {len(ends)} document records but {self.path.name} has {self.n_docs}"
                    " documents")
            self._lines = np.concatenate([[0], np.asarray(ends, dtype=np.int64) + 1])
        return self._lines


@dataclass
class TokenDataset:
    """A validated token dataset directory; ``meta`` is its ``meta.json``."""

    path: Path
    meta: dict[str, Any]
    shards: list[TokenShard]

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def eos_token_id(self) -> int:
        return int(self.meta["eos_token_id"])

    @property
    def dtype(self) -> str:
        return str(self.meta["dtype"])

    @property
    def n_tokens(self) -> int:
        return sum(s.n_tokens for s in self.shards)

    @property
    def n_docs(self) -> int:
        return sum(s.n_docs for s in self.shards)

    def documents(self, source: str | None = None) -> Iterator[Document]:
        """Every document (of shards of ``source``, if given) in shard order."""
        for sh in self.shards:
            if source is not None and sh.source != source:
                continue
            for i, rec in enumerate(sh.records()):
                yield Document(rec["id"], rec["source"], np.asarray(sh.document(i)))


#: a model's embedding may be its tokenizer's vocabulary padded up to a multiple of this (OLMo: 100278 -> 100352)
VOCAB_PAD = 128


def same_vocabulary(data_vocab: int, model_vocab: int) -> bool:
    """True if data tokenized with a ``data_vocab``-token tokenizer fits a model of ``model_vocab``
    rows: equal, or the model's is the data's padded up to the next multiple of ``VOCAB_PAD``."""
    return model_vocab == data_vocab or (model_vocab % VOCAB_PAD == 0 and 0 < model_vocab - data_vocab < VOCAB_PAD)


def open_token_dataset(path: str | Path, vocab_size: int | None = None) -> TokenDataset:
    """Open and validate a token dataset; ``vocab_size`` is the model's (token ids must fit in it)."""
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise OlmoflowError(f"{meta_path}: token dataset metadata not found")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise OlmoflowError(f"{meta_path}:{e.lineno}: invalid JSON: {e.msg}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise OlmoflowError(f"{meta_path}: token dataset format {found!r}, expected {FORMAT!r}"
                            " (re-run olmoflow tokenize/mix to rewrite it)")
    for key in ("dtype", "vocab_size", "eos_token_id", "shards"):
        if key not in meta:
            raise OlmoflowError(f"{meta_path}: missing key '{key}'")
    dtype = meta["dtype"]
    if dtype not in _DTYPES:
        raise OlmoflowError(f"{meta_path}: dtype {dtype!r} not supported (uint16 or uint32)")
    data_vocab = int(meta["vocab_size"])
    if dtype == "uint16" and data_vocab > 65536:
        raise OlmoflowError(
            f"{meta_path}: dtype uint16 cannot hold vocab_size {data_vocab} (> 65536); re-tokenize with uint32")
    if vocab_size is not None and data_vocab > vocab_size:
        raise OlmoflowError(f"{meta_path}: dataset vocab_size {data_vocab} exceeds the model's vocab_size {vocab_size}")
    if vocab_size is not None and not same_vocabulary(data_vocab, vocab_size):
        raise OlmoflowError(f"{meta_path}: the data was tokenized with a vocabulary of {data_vocab} tokens but the "
                            f"model's vocab_size is {vocab_size}: tokenize with the model's tokenizer, or set the "
                            f"model's vocab_size to {data_vocab}")
    if not meta["shards"]:
        raise OlmoflowError(f"{meta_path}: no shards listed")
    shards = []
    for i, entry in enumerate(meta["shards"]):
        if "path" not in entry or "source" not in entry:
            raise OlmoflowError(f"{meta_path}: shards[{i}] needs 'path' and 'source'")
        shards.append(_open_shard(path, entry, _DTYPES[dtype]))
    return TokenDataset(path, meta, shards)


def _open_shard(root: Path, entry: dict[str, Any], dtype: np.dtype) -> TokenShard:
    bin_path = root / entry["path"]
    idx_path, docs_path = _side_paths(bin_path)
    for p, what in ((bin_path, f"token shard listed in {META}"), (idx_path, f"document offsets of {bin_path.name}"),
                    (docs_path, f"document ids of {bin_path.name}")):
        if not p.is_file():
            raise OlmoflowError(f"{p}: {what} not found")
    size = bin_path.stat().st_size
    if size % dtype.itemsize:
        raise OlmoflowError(f"{bin_path}: size {size} bytes is not a multiple of {dtype.itemsize} ({dtype.name})")
    n = size // dtype.itemsize
    if "n_tokens" in entry and int(entry["n_tokens"]) != n:
        raise OlmoflowError(f"{bin_path}: holds {n} {dtype.name} tokens but {META} says n_tokens={entry['n_tokens']}"
                            " (dtype mismatch or truncated file?)")
    try:
        idx = np.load(idx_path)
    except Exception as e:  # noqa: BLE001 - any unreadable index is the same user error
        raise OlmoflowError(f"{idx_path}: cannot read document offsets ({e})") from None
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or len(idx) < 1 or idx[0] != 0 or idx[-1] != n:
        raise OlmoflowError(f"{idx_path}: document offsets must run from 0 to the shard's {n} tokens")
    if np.any(np.diff(idx) <= 0):
        raise OlmoflowError(f"{idx_path}: document offsets must rise (every document holds at least its EOS)")
    if "n_docs" in entry and int(entry["n_docs"]) != len(idx) - 1:
        raise OlmoflowError(f"{idx_path}: holds {len(idx) - 1} documents but {META} says n_docs={entry['n_docs']}")
    tokens = np.memmap(bin_path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
    return TokenShard(bin_path, str(entry["source"]), tokens, idx.astype(np.int64, copy=False), docs_path)
