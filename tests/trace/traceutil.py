"""Helpers for trace tests: tiny tokenizers and token datasets written in the olmoflow token format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EOS = "<|endoftext|>"


def wordlevel_tokenizer(out: Path, n_words: int, unk: bool = True, dot: bool = False) -> Path:
    """A word-level tokenizer: words ``w0 .. w{n-1}``, then EOS (and ``[UNK]``, and ``.``); returns its dir."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(n_words)}
    vocab[EOS] = n_words
    if unk:
        vocab["[UNK]"] = n_words + 1
    if dot:
        vocab["."] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]" if unk else None))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return out


def token_dataset(out: Path, docs: list[list[int]], tokenizer: Path, eos: int, shard_docs: int = 1000,
                  ids: list[str] | None = None, repeats: list[int] | None = None) -> Path:
    """Write ``docs`` (token ids, EOS appended) as a token dataset of shards of ``shard_docs`` documents."""
    from tokenizers import Tokenizer

    from olmoflow.data.tokens import ShardWriter, dtype_for, write_meta

    vocab = Tokenizer.from_file(str(tokenizer / "tokenizer.json")).get_vocab_size()
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(0, max(len(docs), 1), shard_docs):
        with ShardWriter(out, f"web-{s // shard_docs:05d}", "web", dtype_for(vocab)) as w:
            for k in range(s, min(s + shard_docs, len(docs))):
                extra = {"repeats": repeats[k]} if repeats else {}
                w.add(np.array([*docs[k], eos]), ids[k] if ids else f"doc{k}", **extra)
        shards.append(w.entry)
    write_meta(out, shards, vocab, eos, str(tokenizer))
    return out


def brute_count(docs: list[list[int]], ngram: list[int]) -> int:
    """Occurrences of ``ngram`` inside documents (never across a document end)."""
    n = len(ngram)
    return sum(1 for d in docs for i in range(len(d) - n + 1) if d[i : i + n] == ngram) if n else 0


def brute_longest(docs: list[list[int]], q: list[int], i: int) -> int:
    """Longest prefix of ``q[i:]`` occurring inside some document."""
    best = 0
    for d in docs:
        for s in range(len(d)):
            k = 0
            while i + k < len(q) and s + k < len(d) and d[s + k] == q[i + k]:
                k += 1
            best = max(best, k)
    return best


def read_json(p: Path) -> dict:
    return json.loads(p.read_text())


SYL = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe", "gu", "ha", "ji", "wo"]


def words(n: int, seed: int) -> list[str]:
    import random

    r = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(r.choice(SYL) for _ in range(r.randint(2, 4))))
    return sorted(out)


def sentence(r, vocab: list[str], n: int) -> str:
    s = " ".join(r.choice(vocab) for _ in range(n))
    return s[0].upper() + s[1:] + "."


def prose(r, vocab: list[str], n_sent: int) -> str:
    return " ".join(sentence(r, vocab, r.randint(8, 14)) for _ in range(n_sent))
