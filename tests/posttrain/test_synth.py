"""Offline chat data: deterministic, correct answers, held-out prompts kept out of training."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from olmoflow.data.steps.decontaminate import EvalIndex
from olmoflow.errors import OlmoflowError
from olmoflow.posttrain.chat_data import load_chat_examples
from olmoflow.posttrain.synth import KINDS, calculate, docstring_functions, make_chat_data, number_words
from olmoflow.scoring.instructions import check
from olmoflow.tokenizer import Tok, apply_chat_template, parse_function_calls


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    result = make_chat_data(out, seed=7, n_train=400, n_heldout=20)
    train = _read(out / "sft.jsonl")
    heldout = {k: _read(out / "heldout" / f"{k}.jsonl") for k in KINDS}
    return out, result, train, heldout


def test_counts_and_files(data):
    out, result, train, heldout = data
    assert result["train"] == {"arith": 200, "docstring": 60, "tool": 60, "ifeval": 80}
    assert result["heldout"] == {k: 20 for k in KINDS}
    assert len(train) == 400 and len({t["id"] for t in train}) == 400
    assert [len(heldout[k]) for k in KINDS] == [20] * 4
    assert set(result["files"]) == {"sft", *KINDS, "decontamination"}
    kinds_in_order = [t["kind"] for t in train[:40]]
    assert len(set(kinds_in_order)) > 1  # kinds are mixed, not in blocks


def test_same_seed_same_bytes_other_seed_other_data(data, tmp_path):
    out, *_ = data
    make_chat_data(tmp_path / "a", seed=7, n_train=400, n_heldout=20)
    for rel in ["sft.jsonl", "decontamination.json", *(f"heldout/{k}.jsonl" for k in KINDS)]:
        assert (tmp_path / "a" / rel).read_bytes() == (out / rel).read_bytes(), rel
    make_chat_data(tmp_path / "b", seed=8, n_train=400, n_heldout=20)
    assert (tmp_path / "b" / "sft.jsonl").read_bytes() != (out / "sft.jsonl").read_bytes()


def test_every_training_conversation_loads_with_an_assistant_mask(data, chat_tok_dir):
    out, *_ = data
    examples, report = load_chat_examples([out / "sft.jsonl"], Tok.from_dir(chat_tok_dir), max_len=1024)
    assert report.kept == report.total == 400 and report.quarantined == {}
    assert all(e.mask.any() for e in examples)


def test_heldout_prompts_are_not_in_training(data):
    out, result, train, heldout = data
    train_prompts = {m["content"] for t in train for m in t["messages"] if m["role"] == "user"}
    items = []
    for recs in heldout.values():
        for rec in recs:
            assert rec["prompt"] == rec["messages"][-1]["content"] and rec["messages"][-1]["role"] == "user"
            assert rec["prompt"] not in train_prompts, rec["id"]
            items.append((rec["id"], rec["prompt"]))
    # the post-training decontamination, rerun independently over the written sft.jsonl, finds nothing
    index = EvalIndex(items, n=8, mode="posttrain")
    for t in train:
        text = " ".join((m.get("content") or "") + " " + (m.get("reasoning_content") or "") for m in t["messages"])
        assert index.match(text, 0.5) == [], t["id"]
    report = json.loads((out / "decontamination.json").read_text())
    assert report["mode"] == "posttrain" and report["ngram"] == 8 and report["coverage_threshold"] == 0.5
    assert report["removed"] == result["decontamination"]["removed"]
    assert len(report["matches"]) == sum(report["removed"].values())
    assert all(m["items"] and m["prompt"] not in train_prompts for m in report["matches"])


def test_arith_traces_and_answers_are_right(data):
    _, _, train, heldout = data
    arith = [t for t in train if t["kind"] == "arith"]
    styles = {"words": 0, "digits": 0}
    for t in arith:
        question, reply = t["messages"][0]["content"], t["messages"][1]
        answer = int(re.fullmatch(r"The answer is (\d+)\.", reply["content"]).group(1))
        steps = re.findall(r"(\d+) ([+-]) (\d+) = (\d+)\.", reply["reasoning_content"])
        assert steps and int(steps[-1][3]) == answer == int(t["answer"])
        for a, op, b, c in steps:  # every step is right
            assert int(a) + (int(b) if op == "+" else -int(b)) == int(c)
        styles["words" if not re.search(r"\d", question) else "digits"] += 1
    assert all(styles.values())  # numbers in words and in digits
    for rec in heldout["arith"]:
        assert rec["answer"].isdigit() and "reasoning_content" not in rec["messages"][-1]


def _operands(rec: dict) -> tuple[int, int]:
    """The two operands of an arithmetic training conversation, read from its trace's first step."""
    steps = re.findall(r"(\d+) [+-] (\d+) = \d+\.", rec["messages"][1]["reasoning_content"])
    first = int(steps[0][0])
    return first, abs(int(rec["answer"]) - first)


def test_arith_difficulty_knobs(tmp_path):
    result = make_chat_data(tmp_path, seed=3, n_train=200, n_heldout=20, arith_digits=2, arith_styles=["digits"])
    assert result["train"]["arith"] == 100 and result["heldout"]["arith"] == 20
    arith = [t for t in _read(tmp_path / "sft.jsonl") if t["kind"] == "arith"]
    ops = [x for t in arith for x in _operands(t)]
    assert all(0 <= x <= 99 for x in ops) and max(ops) >= 90  # at most 2 digits, and the whole range is used
    assert max(int(t["answer"]) for t in arith) <= 198
    held = _read(tmp_path / "heldout" / "arith.jsonl")
    # digits only: every prompt is a bare sum in digits (no story, no number words)
    for rec in [*held, *({"prompt": t["messages"][0]["content"]} for t in arith)]:
        assert re.fullmatch(r"(What is|Compute)? ?\d+ (plus|minus|\+|-) \d+( = )?[?.]?", rec["prompt"]), rec["prompt"]
    with pytest.raises(OlmoflowError, match="arith_digits"):
        make_chat_data(tmp_path / "x", n_train=10, n_heldout=2, arith_digits=4)
    with pytest.raises(OlmoflowError, match="arith_styles"):
        make_chat_data(tmp_path / "x", n_train=10, n_heldout=2, arith_styles=["roman"])


def test_column_traces_add_and_subtract_digit_by_digit(tmp_path):
    make_chat_data(tmp_path, seed=5, n_train=300, n_heldout=10, arith_digits=3, arith_trace="columns")
    arith = [t for t in _read(tmp_path / "sft.jsonl") if t["kind"] == "arith"]
    kinds = {"carry": 0, "borrow": 0}
    for t in arith:
        answer = int(re.fullmatch(r"The answer is (\d+)\.", t["messages"][1]["content"]).group(1))
        assert answer == int(t["answer"])
        steps = re.findall(r"(\d+) ([+-]) (\d) (?:[+-] (1) )?= (\d+)\.", t["messages"][1]["reasoning_content"])
        assert steps, t["messages"][1]["reasoning_content"]
        digits = []
        for top, op, digit, carry, result in steps:  # every column is a right single-digit fact
            value = int(top) + int(digit) + int(carry or 0) if op == "+" else int(top) - int(digit) - int(carry or 0)
            assert 0 <= value == int(result) <= 19
            assert int(top) <= 9 or op == "-"  # only a borrow makes the top number two digits
            kinds["carry" if op == "+" else "borrow"] += bool(carry)
            digits.append(result[-1])
        last = steps[-1]
        lead = last[4][0] if last[1] == "+" and len(last[4]) == 2 else ""
        assert int(lead + "".join(reversed(digits))) == answer  # the answer reads off the columns
    assert all(kinds.values())  # carries and borrows both occur
    with pytest.raises(OlmoflowError, match="arith_trace"):
        make_chat_data(tmp_path / "x", n_train=10, n_heldout=2, arith_trace="long")


def test_number_words():
    assert [number_words(n) for n in (0, 13, 40, 42, 100, 107, 999)] == [
        "zero", "thirteen", "forty", "forty-two", "one hundred", "one hundred seven", "nine hundred ninety-nine"]
    with pytest.raises(ValueError):
        number_words(1000)


def test_tool_conversations_call_the_calculator_and_use_its_result(data):
    _, _, train, heldout = data
    for t in (t for t in train if t["kind"] == "tool"):
        user, call_turn, env, final = t["messages"]
        assert env["role"] == "environment" and t["tools"][0]["function"]["name"] == "calculator"
        rendered = apply_chat_template([call_turn])
        _, calls = parse_function_calls(rendered)
        assert [c["function"]["name"] for c in calls] == ["calculator"]
        expression = json.loads(calls[0]["function"]["arguments"])["expression"]
        assert calculate(expression) == env["content"] and final["content"] == f"The answer is {env['content']}."
    for rec in heldout["tool"]:
        assert calculate(rec["call"]["arguments"]["expression"]) == rec["answer"] and rec["tools"]


def test_calculator_evaluates_arithmetic_only():
    assert calculate("24 * 37") == "888" and calculate("12 * (3 + 4) - 5") == "79"
    assert calculate("7 / 2") == "3.5" and calculate("888 / 24") == "37" and calculate("-(2)") == "-2"
    for bad in ("__import__('os').system('true')", "x + 1", "2 ** 100000", "1 / 0", "", "1 +"):
        with pytest.raises(OlmoflowError, match="calculator"):
            calculate(bad)


def test_docstring_answers_are_first_sentences_and_heldout_functions_are_unseen(data):
    _, _, train, heldout = data
    functions = dict(docstring_functions())
    assert len(functions) > 100
    import os.path
    assert functions["os.path.join"] == inspect.getdoc(os.path.join).split(".")[0] + "."
    train_functions = set()
    for t in (t for t in train if t["kind"] == "docstring"):
        name = re.search(r"`([\w.]+?)(?:\(\))?`", t["messages"][0]["content"]).group(1)
        assert t["messages"][1]["content"] == functions[name]
        train_functions.add(name)
    held = {rec["function"] for rec in heldout["docstring"]}
    assert len(held) == len(heldout["docstring"]) == 20  # one question per held-out function
    assert not held & train_functions
    assert all(rec["answer"] == functions[rec["function"]] for rec in heldout["docstring"])


def test_docstring_functions_from_a_demo_corpus(tmp_path):
    code = 'def area(w, h):\n    """Return the area of a w by h rectangle.\n\n    More text."""\n    return w * h\n\n' \
           'def _private():\n    """Hidden function docstring here."""\n'
    doc = {"id": "code/geo/shapes.py", "text": code, "source": "code", "metadata": {"path": "geo/shapes.py",
                                                                                      "language": "python"}}
    (tmp_path / "code.jsonl").write_text(json.dumps(doc) + "\n")
    assert docstring_functions(tmp_path) == [("geo.shapes.area", "Return the area of a w by h rectangle.")]
    with pytest.raises(OlmoflowError, match="no Python code documents"):
        docstring_functions(tmp_path / "nothing")


def test_ifeval_responses_satisfy_their_constraints(data):
    _, _, train, heldout = data
    kinds = set()
    for t in (t for t in train if t["kind"] == "ifeval"):
        assert check(t["messages"][1]["content"], t["constraints"]) == (1.0, [])
    for rec in heldout["ifeval"]:
        assert 0.0 <= check("some answer", rec["constraints"])[0] <= 1.0
        kinds |= {c["type"] for c in rec["constraints"]}
    assert {"word_count", "lowercase", "json_keys"} <= kinds
