"""Chat evaluation: items rendered with the chat template, replies scored by their verifiers."""

from __future__ import annotations

import json

import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.eval import evaluate, get_task
from olmoflow.posttrain.verifiers import verify

ITEMS = [
    {"id": "a", "messages": [{"role": "user", "content": "What is 2 plus 3?"}], "answer": "5"},
    {"id": "i", "messages": [{"role": "user", "content": "Describe the sun in lowercase."}],
     "constraints": [{"type": "lowercase"}]},
    {"id": "t", "messages": [{"role": "user", "content": "Compute 4 times 6."}],
     "tools": [{"type": "function", "function": {"name": "calculator", "parameters": {}}}],
     "call": {"name": "calculator", "arguments": {"expression": "4*6"}}},
]


def test_chat_items_are_scored_by_their_verifiers(tmp_path, native_model):
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    task = get_task(f"chat:{path}")
    assert task.kind == "chat" and task.primary_metric == "accuracy"
    assert get_task(str(path)).kind == "chat"  # detected from 'messages'
    res = evaluate(native_model, [f"chat:{path}"], limit=None, quiet=True)["tasks"][f"chat:{path.name}"]
    items = res["items"]
    assert [it["id"] for it in items] == ["a", "i", "t"]
    for it, doc in zip(items, ITEMS):  # each reply judged by the verifier its fields select
        assert it["score"] == verify(doc, it["output"])[0]
    assert res["metrics"]["score"] == pytest.approx(sum(it["score"] for it in items) / 3)
    assert res["metrics"]["accuracy"] == sum(it["score"] >= 1.0 for it in items) / 3
    assert "<|im_end|>" not in "".join(it["output"] for it in items)  # the turn ends at its end token


def test_chat_item_without_a_verifier_is_an_error(tmp_path, native_model):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "x", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(OlmoflowError, match="chat item x: no verifier applies"):
        evaluate(native_model, [f"chat:{path}"], quiet=True)


def test_chat_modifier_sends_generative_prompts_through_the_template(native_model):
    assert get_task("arith_gen:chat").chat and not get_task("arith_gen").chat
    with pytest.raises(OlmoflowError, match="':chat' applies to generative tasks only"):
        get_task("arith_rc:chat")
    res = evaluate(native_model, ["arith_gen:chat"], limit=3, quiet=True)
    (name, r), = res["tasks"].items()
    assert name == "arith_gen:chat" and r["n_items"] == 3
