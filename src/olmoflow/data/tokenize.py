"""Tokenize Dolma JSONL into the token dataset format (docs/formats.md), in parallel, deterministically.

Each input file is one task; its documents are split by ``source`` and written as
``<source>-<file index>.bin`` (headerless uint16/uint32, EOS after every document) plus
``.idx.npy`` (int64 document start offsets). Output bytes do not depend on the worker count.
Bad input records (malformed JSON, missing text, invalid UTF-8 or Unicode, ...) are skipped, counted
in ``meta.json`` (``quarantined``, ``quarantined_by_reason``) and listed in ``quarantine.jsonl``; a
damaged (truncated or corrupt) input file keeps its documents before the damage and is named in a
warning on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from olmoflow.data.documents import damage_warning, dumps, is_damage, list_doc_files, read_jsonl, read_parquet
from olmoflow.errors import OlmoflowError

FORMAT = "olmoflow-tokens-v1"
EOS_TOKEN = "<|endoftext|>"


def tokenizer_file(tokenizer_dir: str | Path) -> Path:
    p = Path(tokenizer_dir)
    f = p if p.is_file() else p / "tokenizer.json"
    if not f.is_file():
        raise OlmoflowError(f"tokenizer not found: {f} (expected a tokenizers tokenizer.json)")
    return f


def load_tokenizer(tokenizer_dir: str | Path):
    """(tokenizers.Tokenizer, eos_id) from a directory holding tokenizer.json."""
    from tokenizers import Tokenizer

    f = tokenizer_file(tokenizer_dir)
    tok = Tokenizer.from_file(str(f))
    eos = tok.token_to_id(EOS_TOKEN)
    if eos is None:
        raise OlmoflowError(f"{f}: tokenizer has no {EOS_TOKEN} token")
    return tok, int(eos)


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def write_shard(path_bin: Path, docs_tokens: list[np.ndarray], dtype: np.dtype) -> tuple[int, int]:
    """Write one .bin + .idx.npy pair atomically; returns (n_tokens, n_docs)."""
    lengths = np.array([len(t) for t in docs_tokens], dtype=np.int64)
    idx = np.zeros(len(docs_tokens) + 1, dtype=np.int64)
    np.cumsum(lengths, out=idx[1:])
    tmp = path_bin.with_name(path_bin.name + ".tmp")
    with open(tmp, "wb") as f:
        for t in docs_tokens:
            f.write(np.asarray(t, dtype=dtype).astype(dtype.newbyteorder("<"), copy=False).tobytes())
    os.replace(tmp, path_bin)
    idx_path = path_bin.with_name(path_bin.name[: -len(".bin")] + ".idx.npy")
    tmp_idx = idx_path.with_name(idx_path.name + ".tmp.npy")
    np.save(tmp_idx, idx)
    os.replace(tmp_idx, idx_path)
    return int(idx[-1]), len(docs_tokens)


def _tokenize_file(args: tuple[str, int, str, str, int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tokenize one document file; returns (shards written, quarantine records of its bad input)."""
    path, file_index, tok_dir, out_dir, batch_size = args
    tok, eos = load_tokenizer(tok_dir)
    dtype = dtype_for(tok.get_vocab_size())
    by_source: dict[str, list[np.ndarray]] = {}
    batch: list[tuple[str, str]] = []

    def flush() -> None:
        encs = tok.encode_batch([t for _, t in batch], add_special_tokens=False)
        for (src, _), enc in zip(batch, encs):
            by_source.setdefault(src, []).append(np.array([*enc.ids, eos], dtype=np.int64))
        batch.clear()

    quarantined: list[dict[str, Any]] = []
    reader = read_parquet(path) if path.endswith(".parquet") else read_jsonl(path)
    for d, bad in reader:
        if d is None:
            quarantined.append(bad)  # type: ignore[arg-type]
            continue
        batch.append((str(d.get("source") or "default"), d["text"]))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    shards = []
    for src in sorted(by_source):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in src)
        name = f"{safe}-{file_index:05d}.bin"
        n_tok, n_docs = write_shard(Path(out_dir) / name, by_source[src], dtype)
        shards.append({"path": name, "source": src, "n_tokens": n_tok, "n_docs": n_docs})
    return shards, quarantined


def write_meta(out: Path, shards: list[dict[str, Any]], vocab_size: int, eos: int, tokenizer: str,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    sources: dict[str, int] = {}
    for s in shards:
        sources[s["source"]] = sources.get(s["source"], 0) + s["n_tokens"]
    meta = {
        "format": FORMAT, "dtype": str(dtype_for(vocab_size)), "vocab_size": vocab_size, "eos_token_id": eos,
        "tokenizer": tokenizer, "n_tokens": sum(s["n_tokens"] for s in shards),
        "n_docs": sum(s["n_docs"] for s in shards), "sources": dict(sorted(sources.items())), "shards": shards,
    }
    if extra:
        meta.update(extra)
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def tokenize(
    inputs: str | Path | list[str | Path],
    tokenizer_dir: str | Path,
    output: str | Path,
    workers: int = 2,
    quiet: bool = False,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Tokenize document files (or a curate output dir) into ``output``; returns meta.json's content."""
    files = list_doc_files(inputs)
    tok, eos = load_tokenizer(tokenizer_dir)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    args = [(str(f), i, str(tokenizer_dir), str(out), batch_size) for i, f in enumerate(files)]
    results: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    from olmoflow.data.executors import _mp_context, _progress

    with _progress(quiet, unit="files") as prog:
        task = prog.add_task("tokenize", total=len(args)) if prog else None
        if workers <= 1 or len(args) == 1:
            for a in args:
                results.append(_tokenize_file(a))
                if prog:
                    prog.advance(task)
        else:
            with ProcessPoolExecutor(min(workers, len(args)), mp_context=_mp_context()) as pool:
                for r in pool.map(_tokenize_file, args):
                    results.append(r)
                    if prog:
                        prog.advance(task)
    shards = [s for r, _ in results for s in r]
    bad = [q for _, qs in results for q in qs]
    for q in bad:
        if is_damage(q):
            print(damage_warning(q), file=sys.stderr)
    by_reason = Counter(q["reason"].split(" ")[0] for q in bad)  # "malformed_json (detail)" -> reason
    qpath = out / "quarantine.jsonl"
    if bad:
        tmp = qpath.with_name(qpath.name + ".tmp")
        tmp.write_text("".join(dumps(q) + "\n" for q in bad), encoding="utf-8")
        os.replace(tmp, qpath)
    else:
        qpath.unlink(missing_ok=True)
    extra = {"quarantined": len(bad), "quarantined_by_reason": dict(sorted(by_reason.items()))}
    return write_meta(out, shards, tok.get_vocab_size(), eos, str(tokenizer_dir), extra)


class TokenDataset:
    """Read access to a token dataset directory: documents as numpy arrays (EOS included)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise OlmoflowError(f"not a token dataset (no meta.json): {self.path}")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise OlmoflowError(f"{meta_path}: unknown format {self.meta.get('format')!r}")
        self.dtype = np.dtype(self.meta["dtype"])

    def shard_arrays(self, shard: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        bin_path = self.path / shard["path"]
        idx = np.load(bin_path.with_name(bin_path.name[: -len(".bin")] + ".idx.npy"))
        toks = np.memmap(bin_path, dtype=self.dtype, mode="r") if idx[-1] > 0 else np.zeros(0, self.dtype)
        return toks, idx

    def documents(self, source: str | None = None):
        """Yield (source, tokens) for every document, in shard order."""
        for sh in self.meta["shards"]:
            if source is not None and sh["source"] != source:
                continue
            toks, idx = self.shard_arrays(sh)
            for i in range(len(idx) - 1):
                yield sh["source"], np.asarray(toks[idx[i] : idx[i + 1]])
