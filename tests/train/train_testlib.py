"""Test helpers for tests/train: write token datasets (olmoflow.data.tokens), tiny configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from olmoflow.data.tokens import ShardWriter, write_meta

VOCAB = 512
EOS = 0
PAD = 1


def write_token_dataset(out: Path, docs_by_source: dict[str, list[list[int]]], vocab_size: int = VOCAB,
                        dtype: str = "uint16", eos: int = EOS, shards_per_source: int = 1) -> Path:
    """Write ``docs`` (EOS appended to each, ids ``<source>-<i>``) as a token dataset directory.

    ``dtype`` is the shards' dtype and what meta.json claims, even where it does not fit ``vocab_size``
    (so tests can build broken datasets).
    """
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for src, docs in docs_by_source.items():
        for k, part in enumerate(np.array_split(np.arange(len(docs)), shards_per_source)):
            with ShardWriter(out, f"{src}-{k:05d}", src, dtype) as w:
                for i in part.tolist():
                    w.add(np.asarray(list(docs[i]) + [eos]), f"{src}-{i}")
            shards.append(w.entry)
    meta = write_meta(out, shards, vocab_size, eos, "test")
    if meta["dtype"] != dtype:
        (out / "meta.json").write_text(json.dumps({**meta, "dtype": dtype}))
    return out


def random_docs(n: int, seed: int = 0, vocab: int = VOCAB, min_len: int = 5, max_len: int = 80) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(2, vocab, size=int(rng.integers(min_len, max_len))).tolist() for _ in range(n)]


def learnable_docs(n: int, seed: int = 0, vocab: int = VOCAB) -> list[list[int]]:
    """Documents of counting sequences (x, x+1, x+2, ...): next token is predictable."""
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        start, length = int(rng.integers(2, vocab)), int(rng.integers(20, 60))
        docs.append([2 + (start + i) % (vocab - 2) for i in range(length)])
    return docs


TINY_MODEL = dict(vocab_size=VOCAB, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, mlp_hidden=128,
                  max_seq_len=128, sliding_window=16, eos_token_id=EOS, pad_token_id=PAD)


def tiny_config(run_dir: Path, data_dir: Path, **kw) -> dict:
    cfg = dict(run_dir=str(run_dir), model=dict(TINY_MODEL), data={"paths": [str(data_dir)]}, seq_len=32,
               micro_batch=2, global_batch_tokens=128, steps=6, seed=0,
               optimizer={"lr": 3e-3}, schedule={"name": "cosine", "warmup_steps": 2})
    cfg.update(kw)
    return cfg
