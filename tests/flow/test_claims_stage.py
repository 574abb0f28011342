"""The claims stage: a claim holds or not from the numbers other stages measured, never by fiat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olmoflow.config import validate
from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import StageArtifact
from olmoflow.flow.stages.claims import ClaimsConfig, _section, evaluate_claim, lookup


def _art(root: Path, name: str, metrics: dict, results: dict | None = None, log: list | None = None) -> Path:
    d = root / name
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"id": name * 6, "stage": name, "metrics": metrics, "seed": 0}))
    if results:
        (d / "results.json").write_text(json.dumps(results))
    if log:
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    return d


def _eval(root: Path, name: str, acc: float) -> Path:
    return _art(root, name, {"chat:arith.jsonl": {"accuracy": acc}},
                {"model": {"stage": name}, "tasks": {"chat:arith.jsonl": {"n_items": 100}}})


def _claims(*claims: dict) -> ClaimsConfig:
    return validate(ClaimsConfig, {"claims": list(claims)}, "claims")


def test_lookup_takes_the_longest_key_with_dots():
    assert lookup({"chat:arith.jsonl": {"accuracy": 0.5}, "chat:arith": {"jsonl": 1}}, "chat:arith.jsonl.accuracy") == 0.5
    with pytest.raises(KeyError):
        lookup({"a": {"b": 1}}, "a.c")


def test_claims_hold_or_fail_from_the_measured_numbers(tmp_path):
    inputs = {"dpo": _eval(tmp_path, "dpo", 0.90), "ctrl": _eval(tmp_path, "ctrl", 0.92),
              "rl": _art(tmp_path, "rl", {"heldout_acc": 0.62}, log=[{"step": 0, "heldout_acc": 0.50},
                                                                      {"step": 10, "heldout_acc": 0.55}]),
              "soup": _art(tmp_path, "soup", {"val_loss": 2.0}), "a": _art(tmp_path, "a", {"val_loss": 2.2}),
              "b": _art(tmp_path, "b", {"val_loss": 1.9})}
    m = "chat:arith.jsonl.accuracy"
    cfg = _claims(
        {"claim": "dpo beats control", "treatment": {"input": "dpo", "metric": m},
         "control": {"input": "ctrl", "metric": m}, "min_diff": 0.0},
        {"claim": "rl gains 10 points", "treatment": {"input": "rl", "metric": "heldout_acc", "n": 100},
         "control": {"input": "rl", "metric": "heldout_acc", "at": "first", "n": 100}, "min_diff": 0.10, "strict": False},
        {"claim": "soup no worse than its ingredients", "treatment": {"input": "soup", "metric": "val_loss"},
         "control": [{"input": "a", "metric": "val_loss"}, {"input": "b", "metric": "val_loss"}], "max_diff": 0.0})
    rows = [evaluate_claim(c, inputs, "claims") for c in cfg.claims]
    assert [r["holds"] for r in rows] == [False, True, True]
    assert rows[0]["diff"] == pytest.approx(-0.02) and rows[0]["treatment"]["n"] == 100
    assert rows[1]["control"] == 0.50 and rows[1]["diff"] == pytest.approx(0.12)
    assert rows[2]["control"] == pytest.approx(2.05)
    out = tmp_path / "claims"
    out.mkdir()
    (out / "claims.json").write_text(json.dumps({"claims": rows}))
    text = "\n".join(_section([StageArtifact("claims", out, {"seed": 0})], tmp_path))
    assert "1 of 3 claims" not in text and "2 of 3 claims reproduced (seed 0)" in text
    assert "| dpo beats control | 0.9 [0.83, 0.94] (n=100, dpo) | 0.92 [" in text and "| -0.02 | diff > 0 | **no** |" in text
    assert "rl (start)" in text and "mean 2.05 of 2.2, 1.9" in text
    # +12 points on 100 items: the intervals overlap, so a "yes" says it is not a measured difference
    assert "| diff ≥ 0.1 | **yes** (within the 95% intervals: not a measured difference) |" in text


def test_bad_claims_name_what_is_wrong(tmp_path):
    with pytest.raises(OlmoflowError, match="min_diff/max_diff need a control"):
        _claims({"claim": "x", "treatment": {"input": "a", "metric": "m"}, "min_diff": 0})
    with pytest.raises(OlmoflowError, match="at least one of"):
        _claims({"claim": "x", "treatment": {"input": "a", "metric": "m"}})
    [c] = _claims({"claim": "x", "treatment": {"input": "a", "metric": "nope"}, "min_value": 0}).claims
    with pytest.raises(OlmoflowError, match="claim input 'a' is not one of its inputs"):
        evaluate_claim(c, {}, "claims")
    with pytest.raises(OlmoflowError, match="has no metric 'nope'"):
        evaluate_claim(c, {"a": _art(tmp_path, "a", {"m": 1})}, "claims")
