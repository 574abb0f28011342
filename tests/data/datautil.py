"""Helpers for data tests: planted-corpus text generators and output readers."""

from __future__ import annotations

import json
import random
from pathlib import Path

SYL = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe", "gu", "ha", "ji", "wo"]
BOILER = ("Subscribe to our newsletter for weekly updates on gardening, recipes and local events in the "
          "valley region, and follow us for more stories like this one.")
LONG_ITEM = ("Ava shares one hundred ninety books equally among ten friends in the library after school. "
             "How many books does each friend get?")
SHORT_ITEM = "What is seventeen times twenty three plus nine?"


def vocab(n: int = 800, seed: int = 1) -> list[str]:
    r = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(r.choice(SYL) for _ in range(r.randint(2, 4))))
    return sorted(out)


def sentence_text(r: random.Random, words: list[str], n_words: int) -> str:
    """Random prose-like text: sentences of 8-14 words ending with periods."""
    out, k = [], 0
    while k < n_words:
        m = r.randint(8, 14)
        s = " ".join(r.choice(words) for _ in range(m))
        out.append(s[0].upper() + s[1:] + ".")
        k += m
    return " ".join(out)


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    return path




def read_out(out: Path, sub: str = "documents") -> dict[str, dict]:
    import gzip

    docs = {}
    for f in sorted((out / sub).glob("*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                d = json.loads(line)
                docs[d["id"]] = d
    return docs


def tree_bytes(out: Path) -> dict[str, bytes]:
    """All result files (not the work dir or timing) as {relative path: bytes}."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "_work" not in p.parts and p.name != "timing.json"}
