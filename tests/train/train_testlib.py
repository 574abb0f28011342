"""Test helpers for tests/train: write token datasets with numpy (docs/formats.md), tiny configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

VOCAB = 512
EOS = 0
PAD = 1


def write_token_dataset(out: Path, docs_by_source: dict[str, list[list[int]]], vocab_size: int = VOCAB,
                        dtype: str = "uint16", eos: int = EOS, shards_per_source: int = 1) -> Path:
    """Write ``docs`` (EOS appended to each) as a token dataset directory."""
    out.mkdir(parents=True, exist_ok=True)
    shards, sources = [], {}
    n_tok = n_docs = 0
    for src, docs in docs_by_source.items():
        parts = np.array_split(np.arange(len(docs)), shards_per_source)
        for k, part in enumerate(parts):
            toks = [np.asarray(list(docs[i]) + [eos], dtype=np.int64) for i in part]
            flat = np.concatenate(toks).astype(dtype)
            idx = np.concatenate([[0], np.cumsum([len(t) for t in toks])]).astype(np.int64)
            name = f"{src}-{k:05d}"
            flat.tofile(out / f"{name}.bin")
            np.save(out / f"{name}.idx.npy", idx)
            shards.append({"path": f"{name}.bin", "source": src, "n_tokens": int(len(flat)), "n_docs": len(toks)})
            sources[src] = sources.get(src, 0) + int(len(flat))
            n_tok += len(flat)
            n_docs += len(toks)
    meta = {"format": "olmoflow-tokens-v1", "dtype": dtype, "vocab_size": vocab_size, "eos_token_id": eos,
            "tokenizer": "test", "n_tokens": n_tok, "n_docs": n_docs, "sources": sources, "shards": shards}
    (out / "meta.json").write_text(json.dumps(meta))
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
