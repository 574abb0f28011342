"""Shared text helpers: word splitting and fast, process-independent n-gram hashing.

Python's ``hash(str)`` changes between processes, so every hash here is xxh3 (deterministic) and
n-grams of word hashes are combined with numpy so shingling costs a few microseconds per document.
"""

from __future__ import annotations

import re
import string

import numpy as np
import xxhash

_WORD = re.compile(r"\w+", re.UNICODE)
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
# odd 64-bit multipliers for position mixing in n-gram hashes
_MULTS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD,
     0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9, 0x2545F4914F6CDD1D, 0x9FB21C651E98DF25,
     0xA0761D6478BD642F, 0xE7037ED1A0B428DB, 0x8EBC6AF09C88C6E3],
    dtype=np.uint64,
)


def words(text: str, lower: bool = True) -> list[str]:
    """Alphanumeric word tokens (punctuation and whitespace dropped), lowercased by default."""
    return _WORD.findall(text.lower() if lower else text)


def word_hashes(tokens: list[str]) -> np.ndarray:
    """64-bit xxh3 hash of each token (uint64)."""
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(t.encode("utf-8")) for t in tokens), dtype=np.uint64, count=len(tokens))


def ngram_hashes(wh: np.ndarray, n: int) -> np.ndarray:
    """Hashes of all word n-grams (uint64); a text shorter than n gives one hash of all its words."""
    if len(wh) == 0:
        return np.zeros(0, dtype=np.uint64)
    if len(wh) < n:
        n = len(wh)
    m = len(wh) - n + 1
    out = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            out = out ^ (wh[k : k + m] * _MULTS[k % len(_MULTS)])
            out = (out << np.uint64(7)) | (out >> np.uint64(57))
        out = out * np.uint64(0xFF51AFD7ED558CCD)
        out = out ^ (out >> np.uint64(33))
    return out


_PUNCT = str.maketrans({c: " " for c in string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0"})


def fast_words(text: str) -> list[str]:
    """Lowercased words split on whitespace and punctuation (str.translate: ~2x faster than a regex)."""
    return text.lower().translate(_PUNCT).split()


def batch_shingles(texts: list[str], n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique word n-gram hashes for many texts at once: (flat uint64, int64 offsets).

    Document ``i`` owns ``flat[offsets[i]:offsets[i+1]]``. A text with fewer than ``n`` (but some)
    words gets one hash of all its words; an empty text gets none. Vectorised over the whole batch.
    """
    toks = [fast_words(t) for t in texts]
    counts = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))
    flat_words = [w for t in toks for w in t]
    h = xxhash.xxh3_64_intdigest
    wh = np.fromiter(map(h, map(str.encode, flat_words)), dtype=np.uint64, count=len(flat_words))
    starts = np.r_[0, np.cumsum(counts)][:-1].astype(np.int64)
    ends = starts + counts
    doc_ids, grams = [np.zeros(0, np.int64)], [np.zeros(0, np.uint64)]
    if len(wh) >= n:
        g = ngram_hashes(wh, n)
        pos = np.arange(len(g), dtype=np.int64)
        doc_of = np.repeat(np.arange(len(texts), dtype=np.int64), counts)[: len(g)]
        ok = pos + n <= ends[doc_of]
        grams.append(g[ok])
        doc_ids.append(doc_of[ok])
    for i in np.flatnonzero((counts > 0) & (counts < n)).tolist():  # short texts: one hash of all words
        grams.append(ngram_hashes(wh[starts[i] : ends[i]], n))
        doc_ids.append(np.array([i], dtype=np.int64))
    g, d = np.concatenate(grams), np.concatenate(doc_ids)
    order = np.lexsort((g, d))
    g, d = g[order], d[order]
    keep = np.ones(len(g), dtype=bool)
    keep[1:] = (g[1:] != g[:-1]) | (d[1:] != d[:-1])
    g, d = g[keep], d[keep]
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(np.bincount(d, minlength=len(texts)), out=offsets[1:])
    return g, offsets


def shingles(text: str, n: int = 5) -> np.ndarray:
    """Sorted unique word n-gram hashes of one text (same hashing as :func:`batch_shingles`)."""
    return batch_shingles([text], n)[0]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """True Jaccard similarity of two sorted unique hash arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def hash128(text: str) -> bytes:
    """128-bit content hash of a text (xxh3-128), used for exact dedup."""
    return xxhash.xxh3_128_digest(text.encode("utf-8"))


def stable_unit(key: str, seed: int = 0) -> float:
    """A deterministic pseudo-random number in [0, 1) from a string key and a seed."""
    return xxhash.xxh3_64_intdigest(key.encode("utf-8"), seed=seed) / 2.0**64
