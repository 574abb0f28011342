"""End to end: a document planted in a tiny raw corpus is curated, tokenized, mixed (repeated), learnt by a
tiny model trained briefly until it reproduces it, and the model's output is traced back to that document,
its raw input line and the curation record that kept it."""

from __future__ import annotations

import json
import random

import pytest
from traceutil import prose, words

PLANTED = ("Quorvane the lighthouse keeper counted eleven silver gulls every morning. "
           "She wrote their names in a green ledger beside the lamp. "
           "When the storm came the gulls sheltered under the stairs.")


@pytest.mark.slow
def test_reproduced_planted_document_traced_to_its_raw_line(tmp_path):
    from olmoflow.data.curate import curate
    from olmoflow.data.mix import mix
    from olmoflow.data.tokenize import tokenize
    from olmoflow.flow.stages.pretrain import _tokenizer_ids
    from olmoflow.tokenizer.train import train_tokenizer
    from olmoflow.trace import TraceIndex, build_index, trace_text
    from olmoflow.trace.cli import generate
    from olmoflow.train import TrainConfig, pretrain

    r = random.Random(5)
    vb = words(300, 4)
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = [json.dumps({"id": f"web-{i}", "text": prose(r, vb, 5), "source": "web"}) for i in range(60)]
    lines.insert(17, json.dumps({"id": "planted", "text": PLANTED, "source": "story"}))  # line 18
    (raw / "web.jsonl").write_text("\n".join(lines) + "\n")
    recipe = {"name": "plant", "steps": [{"step": "normalize"}, {"step": "exact_dedup"}, {"step": "minhash_dedup"}]}
    curate(raw, tmp_path / "cur", recipe=recipe, workers=1, quiet=True)
    train_tokenizer([tmp_path / "cur" / "documents"], tmp_path / "tok", vocab_size=500, quiet=True)
    tokenize(tmp_path / "cur", tmp_path / "tok", tmp_path / "tokens", workers=1, quiet=True)
    meta = json.loads((tmp_path / "tokens" / "meta.json").read_text())
    story = meta["sources"]["story"]
    mix({"web": tmp_path / "tokens", "story": tmp_path / "tokens"}, tmp_path / "mix",
        tokens={"web": meta["sources"]["web"], "story": 60 * story}, quiet=True)  # the story seen 60 times
    build_index([tmp_path / "mix"], tmp_path / "idx", curation=[tmp_path / "cur"], quiet=True)

    cfg = {"run_dir": str(tmp_path / "run"), "model": "tiny-1m", "model_overrides": _tokenizer_ids(tmp_path / "tok"),
           "data": {"paths": [str(tmp_path / "mix")]}, "seq_len": 128, "micro_batch": 8,
           "global_batch_tokens": 1024, "steps": 600, "seed": 0, "optimizer": {"lr": 3e-3},
           "schedule": {"name": "cosine", "warmup_steps": 20}, "precision": "fp32"}
    pretrain(TrainConfig.model_validate(cfg), quiet=True)

    index = TraceIndex.open(tmp_path / "idx", tokenizer=tmp_path / "tok")
    prompt = "Quorvane the lighthouse keeper"
    out = generate(str(tmp_path / "run"), prompt, index.tokenizer_path, str(tmp_path / "tok"), max_new_tokens=60)
    full = prompt + out
    k = next((i for i, (a, b) in enumerate(zip(full, PLANTED)) if a != b), min(len(full), len(PLANTED)))
    assert k >= len(prompt) + 40, out  # the model reproduces (at least 40 more characters of) the planted document
    res = trace_text(index, out, prompt=prompt, fraction=1.0)
    span = max(res["spans"], key=lambda s: s["end"] - s["start"])
    assert span["end"] - span["start"] >= 30 and span["text"] in PLANTED
    doc = span["documents"][0]
    assert doc["doc_id"] == "planted" and doc["source"] == "story"
    cur = doc["curation"]
    assert cur["raw"] == {"file": str(raw / "web.jsonl"), "line": 18}
    assert cur["steps"] == ["normalize", "exact_dedup", "minhash_dedup"]
    assert cur["mix"]["repeats"] == doc["repeats"] >= 50
