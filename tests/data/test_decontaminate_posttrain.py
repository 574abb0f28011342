"""Post-training decontamination (``mode: posttrain``): 8-gram token coverage by a single document."""

from __future__ import annotations

import json
import random

import pytest
from datautil import vocab, write_jsonl

from olmoflow.config import ConfigError
from olmoflow.data.curate import curate
from olmoflow.data.recipe import load_recipe
from olmoflow.data.stats import Stats
from olmoflow.data.steps import step_class
from olmoflow.data.steps.base import Context
from olmoflow.data.steps.decontaminate import EvalIndex

WORDS = vocab(400, seed=7)
ITEM = WORDS[:50]  # 50 distinct words
FILLER = WORDS[100:]


def filler(r: random.Random, n: int) -> list[str]:
    return [r.choice(FILLER) for _ in range(n)]


def make_step(tmp_path, items: list[dict], **cfg):
    evals = write_jsonl(tmp_path / "eval.jsonl", items)
    cls = step_class("decontaminate")
    step = cls(cls.Config.model_validate({"step": "decontaminate", "mode": "posttrain",
                                          "eval_files": [str(evals)], **cfg}))
    return step


def run(step, docs):
    stats = Stats()
    kept = list(step.run(iter([dict(d) for d in docs]), Context(stats)))
    return [d["id"] for d in kept], stats.data["steps"].get(step.name, {})


def reference_coverage(item: list[str], doc: list[str], n: int) -> float:
    """Peer implementation: plain tuples, a boolean per item token."""
    doc_grams = {tuple(doc[i:i + n]) for i in range(len(doc) - n + 1)}
    covered = [False] * len(item)
    for i in range(len(item) - n + 1):
        if tuple(item[i:i + n]) in doc_grams:
            covered[i:i + n] = [True] * n
    return sum(covered) / len(item)


def test_sixty_percent_covered_by_one_doc_is_caught_and_removed(tmp_path):
    r = random.Random(0)
    doc = filler(r, 40) + ITEM[:30] + filler(r, 40)  # 30 of 50 item tokens: 60% coverage
    clean = filler(r, 120)
    step = make_step(tmp_path, [{"id": "q1", "question": " ".join(ITEM)}])
    kept, s = run(step, [{"id": "leak", "text": " ".join(doc)}, {"id": "clean", "text": " ".join(clean)}])
    assert kept == ["clean"]
    assert s["removed"] == {"eval_contamination_posttrain": 1}
    assert s["counters"]["item_matches"] == 1
    assert step.index.match(" ".join(doc), 0.5) == [("eval:q1", 0.6)]
    # the pretrain rule (IDF-weighted 5-gram share >= 0.8) would keep this document
    cls = step_class("decontaminate")
    pre = cls(cls.Config.model_validate({"step": "decontaminate", "eval_files": step.cfg.eval_files}))
    assert run(pre, [{"id": "leak", "text": " ".join(doc)}])[0] == ["leak"]


def test_coverage_split_across_two_docs_is_not_summed(tmp_path):
    r = random.Random(1)
    # each doc covers 20 of 50 tokens (40%); together they would cover 80%
    doc_a = filler(r, 30) + ITEM[:20] + filler(r, 30)
    doc_b = filler(r, 30) + ITEM[20:40] + filler(r, 30)
    step = make_step(tmp_path, [{"id": "q1", "text": " ".join(ITEM)}])
    kept, s = run(step, [{"id": "a", "text": " ".join(doc_a)}, {"id": "b", "text": " ".join(doc_b)}])
    assert kept == ["a", "b"]
    assert s.get("removed", {}) == {} and "item_matches" not in s.get("counters", {})
    assert step.index.match(" ".join(doc_a), 1e-6) == [("eval:q1", 0.4)]


def test_short_item_verbatim_is_caught(tmp_path):
    item = "What is seventeen times twenty three?"  # 6 words < 8
    step = make_step(tmp_path, [{"id": "s1", "prompt": item}])
    docs = [
        {"id": "verbatim", "text": "Quiz night. WHAT is seventeen times twenty-three ?? Answer: 391."},
        {"id": "changed", "text": "Quiz night. What is seventeen times twenty four? Answer: 408."},
        {"id": "scattered", "text": "What is it? Seventeen times, twenty three."},
    ]
    kept, s = run(step, docs)
    assert kept == ["changed", "scattered"]
    assert s["removed"] == {"eval_contamination_posttrain": 1}


def test_coverage_matches_reference_implementation():
    r = random.Random(2)
    items = [[r.choice(WORDS[:60]) for _ in range(r.randint(8, 40))] for _ in range(30)]
    idx = EvalIndex([(f"i{k}", " ".join(t)) for k, t in enumerate(items)], n=8, mode="posttrain")
    checked = 0
    for _ in range(60):
        # docs stitched from item fragments and filler so coverage takes many values
        # (several from one item, so covered spans overlap, touch or leave gaps)
        doc: list[str] = []
        target = r.choice(items)
        for _ in range(r.randint(1, 6)):
            src = target if r.random() < 0.7 else r.choice(items)
            a = r.randrange(len(src))
            doc += src[a:a + r.randint(1, 20)] + filler(r, r.randint(0, 5))
        got = dict(idx.match(" ".join(doc), 1e-9))
        for k, t in enumerate(items):
            ref = reference_coverage(t, doc, 8)
            assert got.get(f"i{k}", 0.0) == pytest.approx(round(ref, 4), abs=1e-9), (k, doc)
            checked += ref > 0
    assert checked > 20  # the comparison exercised real overlaps


def test_config_defaults_and_validation(tmp_path):
    cls = step_class("decontaminate").Config
    pre = cls.model_validate({"step": "decontaminate"})
    assert (pre.mode, pre.ngram, pre.threshold, pre.short_item_words) == ("pretrain", 5, 0.8, 13)
    # new keys stay out of a default dump, so existing recipes keep their run hash
    assert "mode" not in pre.model_dump() and "coverage_threshold" not in pre.model_dump()
    post = cls.model_validate({"step": "decontaminate", "mode": "posttrain"})
    assert (post.ngram, post.coverage_threshold) == (8, 0.5)
    assert cls.model_validate(post.model_dump()) == post
    assert cls.model_validate({"step": "decontaminate", "mode": "posttrain", "ngram": 6}).ngram == 6

    recipe = {"name": "r", "steps": [{"step": "normalize"},
                                      {"step": "decontaminate", "mode": "posttrain", "coverage_threshold": 1.5}]}
    with pytest.raises(ConfigError, match=r"key 'steps\.1\.coverage_threshold'.*less than or equal to 1"):
        load_recipe(recipe)
    ok = {"name": "r", "steps": [{"step": "decontaminate", "mode": "posttrain"}]}
    with pytest.raises(ConfigError, match=r"steps\.0\.coverage_threshold"):
        load_recipe(ok, ["decontaminate.coverage_threshold=0"])
    with pytest.raises(ConfigError, match=r"steps\.0\.mode"):
        load_recipe({"name": "r", "steps": [{"step": "decontaminate", "mode": "sft"}]})
    assert load_recipe(ok, ["decontaminate.coverage_threshold=0.7"]).steps[0].coverage_threshold == 0.7


def test_curate_reports_posttrain_matches(tmp_path):
    r = random.Random(3)
    docs = [{"id": f"plain-{i}", "text": " ".join(filler(r, 80)), "source": "web"} for i in range(4)]
    docs.append({"id": "leak", "text": " ".join(filler(r, 20) + ITEM[:35] + filler(r, 20)), "source": "web"})
    docs.append({"id": "half-a", "text": " ".join(filler(r, 20) + ITEM[:20]), "source": "web"})
    inp = tmp_path / "in"
    inp.mkdir()
    write_jsonl(inp / "web.jsonl", docs)
    evals = write_jsonl(tmp_path / "sft_eval.jsonl", [{"id": "q1", "question": " ".join(ITEM)}])
    recipe = {"name": "post", "steps": [{"step": "decontaminate", "mode": "posttrain"}]}
    out = tmp_path / "out"
    stats = curate([str(inp)], out, recipe=recipe, decontaminate=[str(evals)], workers=1, quiet=True)
    assert stats["accounting"]["balanced"]
    assert stats["steps"]["decontaminate"]["removed"] == {"eval_contamination_posttrain": 1}
    report = json.loads((out / "decontamination.json").read_text())
    assert report["items"] == {"sft_eval:q1": ["leak"]}
    assert report["removed_docs"][0]["matches"] == [{"item": "sft_eval:q1", "score": 0.7, "mode": "posttrain"}]
    md = (out / "report.md").read_text()
    assert "eval_contamination_posttrain: 1" in md and "`sft_eval:q1` ← `leak`" in md
