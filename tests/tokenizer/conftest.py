"""Shared fixtures: a small generated multilingual corpus and a tokenizer trained on it by olmoflow."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from olmoflow.tokenizer import train_tokenizer

WORDS = (
    "the of and to in is that for it was with on as by this be are from at or an which have not "
    "language model data training token open science research weights evaluation corpus "
    "über straße café naïve façade 日本語 中文 한국어 русский язык ελληνικά عربى हिन्दी 😀 🚀 👩‍💻"
).split()
CODE = ["def f(x):\n    return x + 1\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n", "SELECT * FROM t;"]


def make_docs(n: int, seed: int = 0) -> list[str]:
    """Deterministic synthetic documents mixing scripts, numbers, punctuation, code and whitespace."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(20, 80)):
            r = rng.random()
            if r < 0.75:
                parts.append(rng.choice(WORDS))
            elif r < 0.85:
                parts.append(str(rng.randint(0, 10**rng.randint(1, 9))))
            elif r < 0.95:
                parts.append(rng.choice([",", ".", "!", "?", "(", ")", "--", "...", "'s", "\"quoted\""]))
            else:
                parts.append(rng.choice(CODE))
        docs.append(" ".join(parts) + rng.choice(["", "\n", "\r\n", "\n\n"]))
    return docs


def write_jsonl_gz(path: Path, docs: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"id": str(i), "text": text, "source": "synthetic"}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def docs_maker():
    """``make_docs(n, seed)`` as a fixture (test modules cannot import conftest in importlib mode)."""
    return make_docs


@pytest.fixture(scope="session")
def jsonl_gz_writer():
    return write_jsonl_gz


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    write_jsonl_gz(d / "part-0.jsonl.gz", make_docs(1500, seed=0))
    (d / "notes.txt").write_text("Plain text file.\n\nSecond paragraph, 2024-11-23.\n", encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def tok_dir(corpus_dir, tmp_path_factory) -> Path:
    """A tokenizer trained by olmoflow on the generated corpus (vocab 1024)."""
    return train_tokenizer([corpus_dir], tmp_path_factory.mktemp("tok"), vocab_size=1024, quiet=True)
