"""Fixtures for data tests: a planted corpus with known duplicates, boilerplate, PII and eval leaks."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from datautil import BOILER, LONG_ITEM, SHORT_ITEM, sentence_text, vocab, write_jsonl  # noqa: E402


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> dict:
    """Two input shards with planted cases; returns paths and the ids of each case."""
    root = tmp_path_factory.mktemp("planted")
    r = random.Random(0)
    words = vocab()
    docs: list[dict] = []

    def add(doc_id: str, text: str) -> None:
        docs.append({"id": doc_id, "text": text, "source": "web"})

    for i in range(30):
        add(f"plain-{i:02d}", sentence_text(r, words, 150))
    base_exact = sentence_text(r, words, 150)
    add("exact-a", base_exact)
    near = sentence_text(r, words, 200).split(" ")
    add("near-a", " ".join(near))
    near_b = list(near)
    for pos in (50, 150):  # two substitutions in 200 words: Jaccard ~0.9
        near_b[pos] = "zzyzx"
    far = sentence_text(r, words, 200).split(" ")
    add("far-a", " ".join(far))
    far_b = [w if k % 3 else "qqq" + str(k) for k, w in enumerate(far)]  # every third word changed: J ~0
    boiler_ids = [f"boiler-{i}" for i in range(8)]
    for bid in boiler_ids:
        add(bid, sentence_text(r, words, 80) + "\n\n" + BOILER + "\n\n" + sentence_text(r, words, 40))
    add("leak-long", sentence_text(r, words, 60) + " " + LONG_ITEM + " " + sentence_text(r, words, 30))
    add("leak-short", sentence_text(r, words, 60) + " " + SHORT_ITEM + " " + sentence_text(r, words, 30))
    add("partial-long", sentence_text(r, words, 60) + " Ava shares one hundred ninety books. "
        + sentence_text(r, words, 30))
    add("pii", sentence_text(r, words, 40) + " Contact jane.doe@example.com or call (555) 123-4567, "
        "server 192.168.10.20. " + sentence_text(r, words, 40))
    half = len(docs) // 2
    first, second = docs[:half], docs[half:]
    second += [
        {"id": "exact-b", "text": base_exact, "source": "web"},
        {"id": "near-b", "text": " ".join(near_b), "source": "web"},
        {"id": "far-b", "text": " ".join(far_b), "source": "web"},
    ]
    in_dir = root / "in"
    in_dir.mkdir()
    write_jsonl(in_dir / "a.jsonl", first)
    write_jsonl(in_dir / "b.jsonl", second)
    evals = write_jsonl(root / "eval.jsonl", [
        {"id": "long-1", "question": LONG_ITEM, "answer": "19"},
        {"id": "short-1", "question": SHORT_ITEM, "answer": "400"},
        {"id": "absent-1", "text": "A completely different question about zebras crossing a wide river at dawn "
                                   "while the birds sing loudly overhead?"},
    ])
    recipe = root / "recipe.yaml"
    recipe.write_text(
        "name: planted\nsteps:\n  - step: normalize\n  - step: pii\n  - step: decontaminate\n"
        "  - step: exact_dedup\n  - step: minhash_dedup\n  - step: substring_dedup\n    min_bytes: 60\n"
    )
    return {"input": in_dir, "eval": evals, "recipe": recipe, "boiler_ids": boiler_ids, "n_docs": len(docs) + 3,
            "root": root}

