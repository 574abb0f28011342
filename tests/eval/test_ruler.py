"""RULER-style long-context tasks: generated offline at a length, deterministic, answer in the
prompt (retrievable), usable as task specs ``passkey:LEN[:TOKENIZER]``."""

from __future__ import annotations

import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.eval.ruler import RULER_TASKS, make_items
from olmoflow.eval.tasks import get_task


@pytest.mark.parametrize("name", list(RULER_TASKS))
@pytest.mark.parametrize("length", [128, 1024])
def test_items_have_the_length_and_a_retrievable_answer(name, length):
    items = make_items(name, length, 5, seed=0)
    assert items == make_items(name, length, 5, seed=0)  # deterministic
    assert len({i["prompt"] for i in items}) == 5
    for it in items:
        n = len(it["prompt"].split())
        assert 0.6 * length <= n <= 1.15 * length or (name == "common_words" and length == 128), (n, length)
        for part in it["answer"].split():
            assert part in it["prompt"]


def test_passkey_depths_vary_and_niah_has_distractors():
    items = make_items("passkey", 1000, 20, seed=0)
    depths = [it["prompt"].index("The pass key is") / len(it["prompt"]) for it in items]
    assert min(depths) < 0.3 and max(depths) > 0.7
    niah = make_items("niah_multikey", 500, 3)[0]["prompt"]
    assert niah.count("One of the special magic numbers for") == 4  # the needle and 3 distractors


def test_task_specs_with_and_without_a_tokenizer(tmp_path):
    from olmoflow.eval.toy import make_toy_tokenizer
    from olmoflow.tokenizer import load_tokenizer

    task = get_task("passkey:256")
    docs, _ = task.load()
    assert task.kind == "gen" and task.name == "passkey:256" and len(docs) == 100
    tok_dir = make_toy_tokenizer(tmp_path / "tok")
    docs, _ = get_task(f"variable_tracking:300:{tok_dir}").load()
    tok = load_tokenizer(tok_dir)
    n = [len(tok.encode(d["prompt"]).ids) for d in docs[:5]]
    assert all(200 <= x <= 300 for x in n), n
    with pytest.raises(OlmoflowError, match=r"passkey:LENGTH"):
        get_task("passkey:long")


def test_choice_forms_hold_the_answer_among_distractors():
    for name in ("passkey_choice", "niah_multikey_choice"):
        task = get_task(f"{name}:300")
        docs, _ = task.load()
        assert task.kind == "rc" and task.primary_metric == "acc_raw" and task.name == f"{name}:300"
        gen = make_items(name.removesuffix("_choice"), 300, 100)
        for d, g in zip(docs, gen):
            assert d["choices"][d["gold"]] == g["answer"] and len(set(d["choices"])) == 4
            assert d["query"] == g["prompt"]
            in_prompt = [c for c in d["choices"] if c in d["query"]]
            assert in_prompt == [g["answer"]] if name == "passkey_choice" else len(in_prompt) == 4
    assert {d["gold"] for d in get_task("passkey_choice:300").load()[0]} == {0, 1, 2, 3}
    with pytest.raises(OlmoflowError, match="unknown task .common_words_choice:300."):
        get_task("common_words_choice:300")


def test_every_needle_is_placed_even_without_room_for_filler():
    # 4 needles + the question are longer than 40 words: no filler, but no needle may be lost
    for it in make_items("niah_multikey", 40, 20, seed=0):
        assert it["prompt"].count("One of the special magic numbers for") == 4
        assert it["answer"] in it["prompt"]


def test_prompts_come_within_a_filler_sentence_of_the_length():
    for length in (128, 256, 512):
        for name in ("passkey", "niah_multikey", "variable_tracking"):
            n = [len(it["prompt"].split()) for it in make_items(name, length, 10, seed=0)]
            assert all(length - 8 <= x <= length for x in n), (name, length, n)


def test_training_documents_never_hold_an_eval_item():
    from olmoflow.data.long_context import synthetic_documents

    for length in (64, 128, 512):
        evals = {it["prompt"] for it in make_items("passkey", length, 200, seed=0)}
        train = synthetic_documents(300, [length], seed=0, tasks=["passkey"])
        assert not any(d["text"].rsplit(" ", 1)[0] in evals for d in train)
