"""Shared fixtures of the post-training tests: a small olmoflow tokenizer trained on chat text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olmoflow.posttrain.synth import make_chat_data
from olmoflow.tokenizer import apply_chat_template, train_tokenizer


@pytest.fixture(scope="session")
def chat_tok_dir(tmp_path_factory) -> Path:
    """A BPE tokenizer (vocab 600) trained by olmoflow on rendered synthetic conversations."""
    data = tmp_path_factory.mktemp("chat_corpus")
    make_chat_data(data, seed=123, n_train=300, n_heldout=5)
    corpus = data / "corpus"
    corpus.mkdir()
    with open(data / "sft.jsonl", encoding="utf-8") as f, open(corpus / "docs.jsonl", "w", encoding="utf-8") as out:
        for i, line in enumerate(f):
            rec = json.loads(line)
            text = apply_chat_template(rec["messages"], rec.get("tools"))
            out.write(json.dumps({"id": str(i), "text": text, "source": "chat"}) + "\n")
    return train_tokenizer([corpus], tmp_path_factory.mktemp("chat_tok"), vocab_size=600, quiet=True)
