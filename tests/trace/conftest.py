"""A small prose corpus (BPE tokenizer, tokenized, indexed in 3 shards) with planted sentences for the
tracing rules: one repeated in 11 documents, one in 10, and two documents whose spans overlap."""

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from traceutil import prose, sentence, words  # noqa: E402

OVERLAP_A = "Quorvil drabbetin maxolund spiretho"
OVERLAP_B = "maxolund spiretho ulkavarn zemptrosi"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict:
    from olmoflow.data.tokenize import tokenize
    from olmoflow.tokenizer.train import train_tokenizer
    from olmoflow.trace import TraceIndex, build_index

    root = tmp_path_factory.mktemp("corpus")
    r = random.Random(0)
    vb = words(500, 1)
    s11, s10 = sentence(r, vb, 12), sentence(r, vb, 12)
    docs = [{"id": f"d{i:03d}", "text": prose(r, vb, 8), "source": "web"} for i in range(150)]
    for k in range(11):
        docs[10 + k]["text"] += " " + s11
    for k in range(10):
        docs[30 + k]["text"] += " " + s10
    docs.append({"id": "ovl-a", "text": prose(r, vb, 2) + " Then " + OVERLAP_A.lower() + " kato. " + prose(r, vb, 1),
                 "source": "web"})
    docs.append({"id": "ovl-b", "text": prose(r, vb, 2) + " So " + OVERLAP_B + " vize. " + prose(r, vb, 1),
                 "source": "web"})
    (root / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    train_tokenizer([root / "docs.jsonl"], root / "tok", vocab_size=500, quiet=True)
    tokenize(root / "docs.jsonl", root / "tok", root / "tokens", workers=1, quiet=True)
    build_index([root / "tokens"], root / "idx", quiet=True, shard_tokens=15000)
    return {"root": root, "docs": {d["id"]: d["text"] for d in docs}, "s11": s11, "s10": s10,
            "index": TraceIndex.open(root / "idx"), "idx": root / "idx", "tok": root / "tok"}
