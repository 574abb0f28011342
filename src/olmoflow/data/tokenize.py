"""Tokenize Dolma JSONL into the token dataset format (:mod:`olmoflow.data.tokens`), in parallel, deterministically.

Each input file is one task; its documents are split by ``source`` and written as one shard
``<source>-<file index>`` (tokens with EOS after every document, offsets, and each document's
Dolma ``id`` and ``source``). Output bytes do not depend on the worker count.
Bad input records (malformed JSON, missing text, invalid UTF-8 or Unicode, ...) are skipped, counted
in ``meta.json`` (``quarantined``, ``quarantined_by_reason``) and listed in ``quarantine.jsonl``; a
damaged (truncated or corrupt) input file keeps its documents before the damage and is named in a
warning on stderr.
"""

from __future__ import annotations

import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from olmoflow.data.documents import damage_warning, dumps, is_damage, list_doc_files, read_jsonl, read_parquet
from olmoflow.data.tokens import ShardWriter, dtype_for, write_meta
from olmoflow.errors import OlmoflowError
from olmoflow.io import atomic_write_text

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


def _tokenize_file(args: tuple[str, int, str, str, int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tokenize one document file; returns (shards written, quarantine records of its bad input)."""
    path, file_index, tok_dir, out_dir, batch_size = args
    tok, eos = load_tokenizer(tok_dir)
    dtype = dtype_for(tok.get_vocab_size())
    by_source: dict[str, list[tuple[str, np.ndarray]]] = {}  # source -> [(doc id, tokens)]
    batch: list[tuple[str, str, str]] = []  # (source, id, text)

    def flush() -> None:
        encs = tok.encode_batch([t for _, _, t in batch], add_special_tokens=False)
        for (src, doc_id, _), enc in zip(batch, encs):
            by_source.setdefault(src, []).append((doc_id, np.array([*enc.ids, eos], dtype=np.int64)))
        batch.clear()

    quarantined: list[dict[str, Any]] = []
    reader = read_parquet(path) if path.endswith(".parquet") else read_jsonl(path)
    for d, bad in reader:
        if d is None:
            quarantined.append(bad)  # type: ignore[arg-type]
            continue
        batch.append((str(d.get("source") or "default"), d["id"], d["text"]))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    shards = []
    for src in sorted(by_source):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in src)
        with ShardWriter(out_dir, f"{safe}-{file_index:05d}", src, dtype) as w:
            for doc_id, tokens in by_source[src]:
                w.add(tokens, doc_id)
        shards.append(w.entry)
    return shards, quarantined


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
        atomic_write_text(qpath, "".join(dumps(q) + "\n" for q in bad), fsync=False)
    else:
        qpath.unlink(missing_ok=True)
    extra = {"quarantined": len(bad), "quarantined_by_reason": dict(sorted(by_reason.items()))}
    return write_meta(out, shards, tok.get_vocab_size(), eos, str(tokenizer_dir), extra)
