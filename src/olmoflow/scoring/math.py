"""Is a predicted answer equal to the gold one? Numeric, normalised-string and symbolic equality.

:func:`numbers_equal` is OLMES' ``exact_match_flex`` for Minerva MATH without sympy;
:func:`math_equal` adds Minerva's sympy ``is_equiv`` (:func:`sympy_equal`, via
:mod:`olmoflow.scoring.symbolic`, imported only when needed).
"""

from __future__ import annotations

import math
import re

from olmoflow.scoring.answers import normalize_final_answer, normalize_latex, strip_string

__all__ = ["numbers_equal", "math_equal", "sympy_equal"]

_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_FLOAT_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _as_number(s: str) -> float | None:
    """``s`` as a number; commas only as thousands separators ("1,000"), never fusing a list
    ("3, 5" or "1,2" are not numbers)."""
    s = s.strip().rstrip(".").strip()
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return float(s) if _FLOAT_RE.fullmatch(s) else None  # not "nan"/"inf" words


def numbers_equal(pred: str | None, gold: str) -> bool:
    """Answer equality as OLMES' ``exact_match_flex`` for Minerva MATH (sympy left out):
    numeric equality when both parse as numbers (``18`` == ``18.0``), else equality after
    Hendrycks' ``strip_string`` or after Minerva's ``normalize_final_answer`` (both as in
    lm-eval's ``hendrycks_math`` / ``minerva_math`` utils), or after light LaTeX normalisation."""
    if pred is None:
        return False
    p, g = pred.strip(), gold.strip()
    pn, gn = _as_number(p), _as_number(g)
    if pn is not None and gn is not None:
        return math.isclose(pn, gn, rel_tol=0, abs_tol=1e-9)
    if normalize_latex(p) == normalize_latex(g) or _hendrycks_equiv(p, g):
        return True
    mp, mg = normalize_final_answer(p), normalize_final_answer(g)
    if mp == mg:
        return True
    mpn, mgn = _as_number(mp), _as_number(mg)
    return mpn is not None and mgn is not None and math.isclose(mpn, mgn, rel_tol=0, abs_tol=1e-9)


def math_equal(pred: str | None, gold: str) -> bool:
    """OLMES' ``exact_match_flex`` for Minerva MATH: :func:`numbers_equal`, or — the step that
    function leaves out — :func:`sympy_equal`."""
    return numbers_equal(pred, gold) or sympy_equal(pred, gold)


def sympy_equal(pred: str | None, gold: str) -> bool:
    """Minerva's sympy ``is_equiv`` on the Minerva-normalised answers (``2\\sqrt{2}`` == ``\\sqrt{8}``,
    ``x+1`` == ``1+x``; see :mod:`olmoflow.scoring.symbolic`); False for anything it cannot read."""
    from olmoflow.scoring.symbolic import MAX_CHARS, symbolic_equal

    if pred is None:
        return False
    if max(len(pred), len(gold)) > 2 * MAX_CHARS:  # sympy would refuse it; normalising it is slow
        return False
    try:
        p, g = normalize_final_answer(pred), normalize_final_answer(gold)
    except Exception:  # noqa: BLE001 - odd input: not equal
        return False
    return symbolic_equal(p, g)


def _hendrycks_equiv(a: str, b: str) -> bool:
    """Hendrycks' ``is_equiv``: equal after ``strip_string``; raw equality where it fails."""
    try:
        return strip_string(a) == strip_string(b)
    except (ValueError, IndexError):
        return a == b
