"""Verifiers on right, wrong, malformed and adversarial responses; the registry's errors."""

from __future__ import annotations

import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.posttrain.verifiers import get_verifier, register, verifier_for, verify


def _score(record, response):
    return verify(record, response)[0]


def test_math_final_answer():
    rec = {"id": "a1", "answer": "42"}
    assert _score(rec, "6 times 7 is 42.") == 1.0
    assert _score(rec, "The answer is 42 apples, I think.") == 1.0  # a number followed by text
    assert _score(rec, "\\boxed{42.0}") == 1.0
    assert _score(rec, "First 40, then 2 more: 41") == 0.0  # the last number is the answer
    assert _score(rec, "I don't know") == 0.0
    assert _score(rec, "") == 0.0
    # adversarial: a \boxed{} inside a code block or in the reasoning is not the answer
    assert _score(rec, "```\nprint('\\boxed{42}')\n```\nso 41") == 0.0
    assert _score(rec, "<think>maybe \\boxed{42}</think>It is 7.") == 0.0
    assert _score({"answer": "\\frac{1}{2}"}, "so \\boxed{0.5}") == 1.0  # numeric / symbolic equality
    assert _score({"answer": "2\\sqrt{2}"}, "\\boxed{\\sqrt{8}}") == 1.0


def test_ifeval_partial_credit():
    rec = {"constraints": [{"type": "lowercase"}, {"type": "keywords_present", "keywords": ["blue"]}]}
    assert _score(rec, "the sky is blue") == 1.0
    assert _score(rec, "The sky is blue") == 0.5
    assert _score(rec, "THE SKY") == 0.0
    assert _score(rec, "<think>Thinking In Caps</think>the sky is blue") == 1.0  # reasoning is not judged


def test_format_structure():
    rec = {"format": True}
    assert _score(rec, "<think>add them</think>42") == 1.0
    assert _score(rec, "42") == 0.0
    assert _score(rec, "<think>add them</think>   ") == 0.0
    assert _score(rec, "<think>a</think>b<think>c</think>d") == 0.0


CODE = {"id": "c1", "entry_point": "add", "tests": "def check(f):\n    assert f(2, 3) == 5\n    assert f(-1, 1) == 0\n"}


def test_code_runs_tests_in_the_sandbox():
    assert _score(CODE, "```python\ndef add(a, b):\n    return a + b\n```") == 1.0
    assert _score(CODE, "def add(a, b):\n    return a - b\n") == 0.0
    assert _score(CODE, "def add(a, b) return") == 0.0  # syntax error
    # adversarial: exits 0 before the tests, or claims success on stdout
    assert _score(CODE, "import os\nprint('all tests passed')\nos._exit(0)\n") == 0.0
    # an object that equals everything is not plain data: it cannot cross to the trusted tests
    assert _score(CODE, "class A:\n    def __eq__(self, o): return True\n"
                        "def add(a, b):\n    return A()\n") == 0.0


@pytest.mark.parametrize("body", [
    "def add(a, b):\n    while True:\n        pass\n",  # hangs
    "import os\ndef add(a, b):\n    while True:\n        os.fork()\n",  # fork bomb
])
def test_code_that_hangs_or_forks_scores_zero(body):
    rec = {**CODE, "timeout_s": 3}
    score, reason = verify(rec, body)
    assert score == 0.0 and reason


def test_registry_errors_and_user_verifier():
    with pytest.raises(OlmoflowError, match="unknown verifier 'nope'"):
        get_verifier("nope")
    with pytest.raises(OlmoflowError, match="verifier 'math': record r9 has no field 'answer'"):
        verify({"id": "r9", "verifier": "math"}, "1")
    assert verify({"text": "x"}, "y") == (None, "no verifier applies")

    @register("test_out_of_range", requires="q")
    def bad(record, response):
        return 1.5, "too much"

    with pytest.raises(OlmoflowError, match=r"verifier 'test_out_of_range' returned score 1.5 for record q1"):
        verify({"id": "q1", "q": 1, "verifier": "test_out_of_range"}, "r")
    assert verifier_for({"answer": "1"}).name == "math"


def test_malformed_responses_and_specs():
    """Malformed answers score 0 (or fall back to the last number) and a bad constraint spec is an error."""
    rec = {"id": "a2", "answer": "42"}
    assert _score(rec, "\\boxed{}") == 0.0  # an empty box is the (wrong) answer, not a fallback
    assert _score(rec, "\\boxed{42") == 1.0  # an unclosed box is no box: the last number counts
    assert _score(rec, "It is -42") == 0.0 and _score(rec, "forty-two") == 0.0
    assert _score(rec, "`42` so 41") == 0.0  # inline code is not the answer either
    assert _score(rec, "<think>unclosed, 42") == 0.0  # an unfinished reasoning section answers nothing
    keyword = {"constraints": [{"type": "keywords_present", "keywords": ["blue"]}]}
    assert _score(keyword, "<think>blue</think>red") == 0.0 and _score(keyword, "<think>blue") == 0.0
    for bad in ("<think>abc", "</think>x<think>y</think>z", "<think></think>x"):
        assert _score({"format": True}, bad) == 0.0, bad
    assert _score(CODE, "def plus(a, b):\n    return a + b\n") == 0.0  # no entry point
    assert _score(CODE, "") == 0.0
    with pytest.raises(OlmoflowError, match="unknown constraint type 'nope'"):
        verify({"constraints": [{"type": "nope"}]}, "x")
