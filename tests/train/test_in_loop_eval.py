"""In-loop evaluation: the trainer runs olmoflow.eval tasks every N steps and logs them."""

from __future__ import annotations

import json

import pytest
from train_testlib import tiny_config

from olmoflow.data.tokenize import tokenize
from olmoflow.eval.evaluator import evaluate
from olmoflow.eval.toy import TOY_TEXTS, make_toy_tokenizer
from olmoflow.train import TrainConfig, pretrain


def _toy_corpus(tmp_path):
    """A toy tokenizer, its documents (docs.jsonl) and their token dataset."""
    tok = make_toy_tokenizer(tmp_path / "tok", vocab_size=400)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": str(i), "text": t, "source": "toy"}) + "\n"
                            for i, t in enumerate(TOY_TEXTS * 10)))
    data = tmp_path / "tokens"
    tokenize([docs], tok, data, workers=1, quiet=True)
    return tok, docs, data


def test_in_loop_eval_every_n_steps(tmp_path):
    tok, docs, data = _toy_corpus(tmp_path)
    cfg = tiny_config(tmp_path / "run", data, steps=4)
    cfg["model"] = {**cfg["model"], "vocab_size": 512}
    cfg["in_loop_eval"] = {"tasks": ["arith_rc"], "ppl_data": [str(docs)], "every": 2, "limit": 4,
                           "tokenizer": str(tok)}
    pretrain(TrainConfig.model_validate(cfg), quiet=True)
    lines = [json.loads(x) for x in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4]
    assert lines[0]["primary"] == {"arith_rc": "acc_per_char", "ppl:docs.jsonl": "bits_per_byte"}
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in metrics if "eval" in m]
    assert [m["step"] for m in logged] == [2, 4]
    # the step-4 scores are what `olmoflow eval` gives for the final weights with the same options
    offline = evaluate(tmp_path / "run" / "final", ["arith_rc"], limit=4, ppl_data=[str(docs)], tokenizer=str(tok),
                       quiet=True)["tasks"]
    assert logged[1]["eval"]["arith_rc"] == pytest.approx(offline["arith_rc"]["metrics"]["acc_per_char"], abs=1e-9)
    assert logged[1]["eval"]["ppl:docs.jsonl"] == pytest.approx(
        offline["ppl:docs.jsonl"]["metrics"]["bits_per_byte"], rel=1e-5)
    assert logged[0]["eval"] != logged[1]["eval"]  # two evaluations of different weights, not one logged twice


def test_resume_rewinds_eval_log_to_the_checkpoint(tmp_path):
    """A run killed after an in-loop eval but before the next checkpoint evaluates that step again
    on resume: eval.jsonl keeps one record per step, like metrics.jsonl."""
    import shutil

    tok, docs, data = _toy_corpus(tmp_path)
    cfg = tiny_config(tmp_path / "run", data, steps=3, checkpoint={"every": 2})
    cfg["model"] = {**cfg["model"], "vocab_size": 512}
    cfg["in_loop_eval"] = {"tasks": ["arith_rc"], "every": 1, "limit": 2, "tokenizer": str(tok)}
    pretrain(TrainConfig.model_validate(cfg), quiet=True)
    run = tmp_path / "run"
    # as if killed after step 3's eval and metrics, before its checkpoint was written
    shutil.rmtree(run / "checkpoints" / "step-3")
    shutil.rmtree(run / "final")
    pretrain(TrainConfig.model_validate(cfg), quiet=True, resume=True)
    steps = [json.loads(x)["step"] for x in (run / "eval.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    metrics = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics == [1, 2, 3]
