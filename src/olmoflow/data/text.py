"""Shared text helpers: word splitting and fast, process-independent n-gram hashing.

Python's ``hash(str)`` changes between processes, so every hash here is xxh3 (deterministic) and
n-grams of word hashes are combined with numpy so shingling costs a few microseconds per document.
"""

from __future__ import annotations

import re

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


def shingles(text: str, n: int = 5) -> np.ndarray:
    """Sorted unique word n-gram hashes of ``text`` (lowercased words)."""
    return np.unique(ngram_hashes(word_hashes(words(text)), n))


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
