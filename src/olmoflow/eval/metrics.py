"""Scoring helpers: answer extraction, exact match, pass@k, bits per byte."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["pass_at_k", "extract_last_number", "extract_boxed", "extract_final_answer", "normalize_latex", "numbers_equal", "bits_per_byte", "mean"]

_NUM_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), computed stably.

    n samples, c of them correct; k <= n.
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def extract_last_number(text: str) -> str | None:
    """The last number in ``text`` (commas dropped, a trailing period ignored), or None."""
    found = _NUM_RE.findall(text)
    if not found:
        return None
    return found[-1].replace(",", "").rstrip(".")


def extract_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` (balanced braces), or None."""
    start = text.rfind("\\boxed")
    if start == -1:
        return None
    i = text.find("{", start)
    if i == -1:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1: j].strip()
    return None


_FINAL_RE = re.compile(r"final answer is \$?(.+?)\$?(?:\.|\s+I hope|$)", re.IGNORECASE)


def extract_final_answer(text: str) -> str | None:
    """Minerva style: ``\\boxed{X}`` or "The final answer is $X$", else the last number."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    m = _FINAL_RE.findall(text)
    return m[-1].strip() if m else extract_last_number(text)


def normalize_latex(s: str) -> str:
    """Light LaTeX normalisation for answer comparison (spaces, \\left/\\right, $, dfrac)."""
    s = s.strip().strip("$").rstrip(".")
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("dfrac", "frac"),
                 ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""), ("%", "")):
        s = s.replace(a, b)
    return re.sub(r"\s+", "", s)


def numbers_equal(pred: str | None, gold: str) -> bool:
    """Numeric equality when both parse as numbers (``18`` == ``18.0``), else equality after
    light LaTeX normalisation."""
    if pred is None:
        return False
    p, g = pred.strip().replace(",", "").rstrip("."), gold.strip().replace(",", "").rstrip(".")
    try:
        return math.isclose(float(p), float(g), rel_tol=0, abs_tol=1e-9)
    except ValueError:
        return normalize_latex(p) == normalize_latex(g)


def bits_per_byte(loglik: float, n_bytes: int) -> float:
    """Negative log-likelihood in bits per UTF-8 byte."""
    return -loglik / math.log(2) / max(1, n_bytes)


def mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")
