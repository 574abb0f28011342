"""Code scoring: values cross the sandbox boundary as plain data only; stdin/stdout judging; the
scoring package stays importable without torch or the eval harness."""

from __future__ import annotations

import subprocess
import sys

from olmoflow.scoring.code import check_function, check_io

ADD = "def f(a, b):\n    return a + b\n"


def test_plain_data_crosses_both_ways_with_its_type():
    program = "def f(x):\n    return x\n"
    values = [None, True, 0, -2**80, 1.5, float("inf"), "é\n", b"\x00\xff", [1, (2, 3)], (), {1: {"a": [None]}},
              {1, 2}, frozenset({"x"})]
    test = f"inf = float('inf')\ndef check(c):\n    for v in {values!r}:\n        r = c(v)\n        assert r == v and type(r) is type(v), (v, r)\n"
    r = check_function(program, "f", test)
    assert r.passed, r


def test_keyword_arguments_module_level_asserts_and_context_helpers():
    r = check_function(ADD, "f", "assert f(1, b=2) == 3\nassert f('a', 'b') == helper()\n",
                       context="def helper():\n    return 'ab'\n")
    assert r.passed and r.reason == "ok", r


def test_a_value_that_is_not_plain_data_is_an_error_not_a_pass():
    program = "class Eq:\n    def __eq__(self, o):\n        return True\ndef f():\n    return Eq()\n"
    r = check_function(program, "f", "def check(c):\n    assert c() == 42\n")
    assert not r.passed and r.reason == "error" and "not plain data" in r.detail


def test_a_hanging_candidate_times_out():
    r = check_function("def f():\n    while True:\n        pass\n", "f", "def check(c):\n    c()\n", timeout_s=1.5)
    assert not r.passed and r.reason in ("timeout", "cpu_limit") and r.sandbox.wall_s < 5


def test_check_io_compares_tokens_of_stdout():
    prog = "a, b = map(int, input().split())\nprint(a + b)\n"
    assert check_io(prog, "2 3\n", "5\n").passed
    r = check_io(prog, "2 3\n", "6")
    assert not r.passed and r.reason == "failed"
    assert check_io("raise SystemExit(1)", "", "").reason == "error"


def test_scoring_imports_neither_torch_nor_the_eval_harness():
    code = ("import sys; import olmoflow.scoring.answers, olmoflow.scoring.math, olmoflow.scoring.code; "
            "print(sorted(m for m in sys.modules if m == 'torch' or (m.startswith('olmoflow.eval') "
            "and m not in ('olmoflow.eval', 'olmoflow.eval.sandbox'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_program_that_stops_reading_cannot_block_the_caller():
    program = "import time\ndef f(x):\n    return 1\ntime.sleep(60)\n"  # never serves a call
    r = check_function(program, "f", "def check(c):\n    c('x' * 10_000_000)\n", timeout_s=2.0)
    assert not r.passed and r.reason == "timeout" and r.sandbox.wall_s < 6


def test_a_passing_program_ends_cleanly_once_the_tests_are_done():
    r = check_function(ADD, "f", "def check(c):\n    assert c(2, 2) == 4\n")
    assert r.passed and r.sandbox.ok and r.sandbox.returncode == 0, r
