"""In-loop evaluation: the trainer runs olmoflow.eval tasks every N steps and logs them."""

from __future__ import annotations

import json

from train_testlib import tiny_config

from olmoflow.data.tokenize import tokenize
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
    assert 0.0 <= logged[0]["eval"]["arith_rc"] <= 1.0 and logged[0]["eval"]["ppl:docs.jsonl"] > 0


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
