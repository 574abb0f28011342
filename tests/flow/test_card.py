"""The report card: one table of every evaluation after every stage, with intervals, chance and the
way onward, read from what stages wrote (manifests, metrics.jsonl, results.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olmoflow.flow.card import final_model, report_card, wilson_interval


def test_wilson_interval_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for k, n in [(95, 100), (1, 100), (0, 40), (30, 60), (100, 100)]:
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        lo, hi = wilson_interval(k / n, n)
        assert lo == pytest.approx(ci.low, abs=1e-9) and hi == pytest.approx(ci.high, abs=1e-9)


def _artifact(root: Path, name: str, type_: str, metrics: dict, wall: float = 1.0, config: dict | None = None,
              results: dict | None = None, curve: list[dict] | None = None, model: bool = False) -> tuple[Path, dict]:
    d = root / name
    d.mkdir(parents=True)
    m = {"id": name * 4, "type": type_, "metrics": metrics, "wall_s": wall, "config": config or {}}
    if results is not None:
        (d / "results.json").write_text(json.dumps(results))
    if curve is not None:
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    if model:
        (d / "final").mkdir()
        (d / "final" / "config.json").write_text("{}")
    return d, m


def _results(model_stage: str, acc: float, n: int, rc: float | None = None) -> dict:
    tasks = {"chat:arith": {"config": {"kind": "chat"}, "primary_metric": "accuracy", "n_items": n,
                            "metrics": {"accuracy": acc, "score": acc}, "items": []}}
    if rc is not None:
        items = [{"loglikelihoods": [0.0] * 4}] * 30 + [{"loglikelihoods": [0.0] * 2}] * 30
        tasks["arith_rc"] = {"config": {"kind": "rc"}, "primary_metric": "acc_per_char", "n_items": 60,
                             "metrics": {"acc_per_char": rc, "acc_raw": 0.1}, "items": items}
    return {"model": {"stage": model_stage}, "tasks": tasks}


def test_card_tabulates_each_evaluation_after_each_stage(tmp_path):
    curve = [{"step": i, "loss": 5.0 - i / 10, "tokens": 100 * i} for i in range(1, 11)]
    arts = {
        "mix": _artifact(tmp_path, "mix", "mix", {"repetition": {"math": 29.0, "code": 0.8}}),
        "pretrain": _artifact(tmp_path, "pretrain", "pretrain", {"tokens": 1000, "step": 10, "loss": 4.0},
                              wall=2.0, curve=curve, model=True),
        "eval_base": _artifact(tmp_path, "eval_base", "evaluate", {}, results=_results("pretrain", 0.0, 100, 0.4)),
        "sft": _artifact(tmp_path, "sft", "sft", {"tokens": 500, "step": 5, "loss": 0.3}, curve=curve, model=True),
        "eval_sft": _artifact(tmp_path, "eval_sft", "evaluate", {}, results=_results("sft", 0.90, 100)),
        "dpo": _artifact(tmp_path, "dpo", "dpo", {"tokens": 200, "step": 2, "loss": 0.6}, curve=curve, model=True),
        "eval_dpo": _artifact(tmp_path, "eval_dpo", "evaluate", {}, results=_results("dpo", 0.88, 100)),
        "export": _artifact(tmp_path, "export", "export", {}),
        "trace": _artifact(tmp_path, "trace", "trace_index", {}),
    }
    (tmp_path / "trace" / "traced_sample.json").write_text(json.dumps({
        "prompt": "What is 2 + 3?", "response": "The answer is 5.",
        "spans": [{"start": 0, "end": 13, "text": "The answer is", "count": 2, "documents": [
            {"doc_id": "d1", "source": "sft", "score": 1.5, "curation": None}]}]}))
    state = {"order": list(arts)}
    assert final_model(state, arts) == ("dpo", tmp_path / "dpo" / "final")
    text = "\n".join(report_card(state, arts, tmp_path))
    # training: tokens, wall time and tokens/s per stage
    assert "| pretrain | pretrain | 10 | 1,000 | 2.0 s | 500 | 4 |" in text
    # one row per evaluation, one column per model, in flow order; chance from the items' choices
    assert "| evaluation | primary metric | chance | items | pretrain | sft | dpo |" in text
    lo, hi = wilson_interval(0.9, 100)
    assert f"| chat:arith | **accuracy** | 0.00 | 100 | 0.00 [0.00, 0.04] | 0.90 [{lo:.2f}, {hi:.2f}] |" in text
    assert "| arith_rc | **acc_per_char** | 0.38 | 60 | 0.40 [" in text and text.count("| arith_rc |") == 1
    # a change inside the intervals is called out; a heavily upsampled source is explained
    assert "chat:arith: sft → dpo changed -2 points, within the 95% intervals" in text
    assert "pretrain → sft" not in text
    assert "source `math` is repeated 29.0×" in text and "`code`" not in text
    # a traced answer: spans found in the training data in bold, with the document behind each
    assert "> **The answer is** 5." in text and "| The answer is | 2 | `d1` | sft |" in text
    # the way onward names the final model
    assert f"olmoflow chat --model {tmp_path / 'dpo' / 'final'}" in text
    assert f"olmoflow serve --model {tmp_path / 'dpo' / 'final'}" in text
    assert (tmp_path / "report" / "card-evals.png").is_file() and (tmp_path / "report" / "card-loss.png").is_file()


def test_card_of_a_flow_without_models_or_evaluations_is_short(tmp_path):
    arts = {"mix": _artifact(tmp_path, "mix", "mix", {})}
    text = "\n".join(report_card({"order": ["mix"]}, arts, tmp_path))
    assert text.startswith("## Report card") and "final model: -" in text and "### Next" not in text
