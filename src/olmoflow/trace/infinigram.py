"""Export a trace index in infini-gram's format and build infini-gram's suffix array for it (offline).

infini-gram (``pip install infini-gram``) ships a prebuilt indexer but tokenizes with tokenizers from the
Hugging Face hub; given its tokenized files directly it needs neither. Its files, per shard ``s``:
``tokenized.s`` (every document as the separator ``0xff..ff`` followed by its token ids, little-endian),
``offset.s`` (uint64 byte offset of each document) and ``table.s`` (the suffix array its ``rust_indexing``
builds). Used as the peer in tests (counts must agree) and in benchmarks/trace_latency.py (query time).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from olmoflow.errors import OlmoflowError, require
from olmoflow.trace.index import TraceIndex


def token_dtype(index: TraceIndex) -> str:
    """infini-gram's token dtype for the index's vocabulary (its all-ones id is the document separator)."""
    return "u16" if index.vocab_size < 0xFFFF else "u32"


def export(index: TraceIndex, out: str | Path) -> Path:
    """Write every shard of ``index`` as infini-gram ``tokenized.s`` + ``offset.s`` files (EOS dropped: the
    separator marks document ends)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kind = token_dtype(index)
    dt = np.dtype("<u2" if kind == "u16" else "<u4")
    sep = np.array([np.iinfo(dt).max], dtype=dt)
    for s, sh in enumerate(index.shards):
        offsets = []
        at = 0
        with open(out / f"tokenized.{s}", "wb") as f:
            for i in range(len(sh.docs) - 1):
                toks = np.asarray(sh.tokens[sh.docs[i] : sh.docs[i + 1]])
                if len(toks) and int(toks[-1]) == index.eos_token_id:
                    toks = toks[:-1]
                data = np.concatenate([sep, toks.astype(dt)]).tobytes()
                f.write(data)
                offsets.append(at)
                at += len(data)
        np.asarray(offsets, dtype="<u8").tofile(out / f"offset.{s}")
    return out


def build(index: TraceIndex, out: str | Path, mem_gib: int = 4, cpus: int = 1) -> Path:
    """Export ``index`` and run infini-gram's indexer on it (in a child process: it changes directory).
    ``cpus`` > 1 splits a shard into parts; on small shards (below its 100 kB overlap) that corrupts its table,
    so the default is one."""
    require("infini_gram", "bench")
    if token_dtype(index) != "u16":  # its rust_indexing make-part aborts on 4-byte tokens (infini-gram 2.6.0)
        raise OlmoflowError(f"infini-gram's prebuilt indexer handles 16-bit token ids only; {index.path} has a "
                            f"vocabulary of {index.vocab_size}")
    out = Path(out).resolve()
    export(index, out)
    cmd = [sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(out), "--save_dir", str(out),
           "--token_dtype", token_dtype(index), "--shards", str(len(index.shards)), "--mem", str(mem_gib),
           "--cpus", str(cpus), "--ulimit", "4096"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not all((out / f"table.{s}").is_file() for s in range(len(index.shards))):
        lines = [ln for ln in (r.stdout + "\n" + r.stderr).splitlines() if ln.strip() and "it/s" not in ln]
        tail = lines[-1:] or ["no output"]
        raise OlmoflowError(f"infini-gram indexer failed in {out}: {tail[0]}")
    for s in range(len(index.shards)):  # its table must hold one pointer per token (several parallel parts
        n_tok = (out / f"tokenized.{s}").stat().st_size // (2 if token_dtype(index) == "u16" else 4)  # of a
        if (out / f"table.{s}").stat().st_size % max(n_tok, 1):  # small file overlap: use cpus=1 there)
            raise OlmoflowError(f"{out / f'table.{s}'}: infini-gram's table does not match its {n_tok} tokens")
    return out


def engine(index: TraceIndex, out: str | Path) -> Any:
    """infini-gram's engine over the files :func:`build` wrote for ``index``."""
    from infini_gram.engine import InfiniGramEngine

    kind = token_dtype(index)
    return InfiniGramEngine(index_dir=str(out), eos_token_id=index.eos_token_id,
                            vocab_size=index.vocab_size if kind == "u32" else 0xFFFF, token_dtype=kind)
