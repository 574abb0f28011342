"""Scoring helpers: answer extraction, exact match, pass@k, bits per byte."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["pass_at_k", "extract_last_number", "extract_boxed", "numbers_equal", "bits_per_byte", "mean"]

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


def numbers_equal(pred: str | None, gold: str) -> bool:
    """Numeric equality when both parse as numbers (``18`` == ``18.0``), else exact string match."""
    if pred is None:
        return False
    p, g = pred.strip().replace(",", "").rstrip("."), gold.strip().replace(",", "").rstrip(".")
    try:
        return math.isclose(float(p), float(g), rel_tol=0, abs_tol=1e-9)
    except ValueError:
        return p == g


def bits_per_byte(loglik: float, n_bytes: int) -> float:
    """Negative log-likelihood in bits per UTF-8 byte."""
    return -loglik / math.log(2) / max(1, n_bytes)


def mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")
