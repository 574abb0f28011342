"""Task metrics: pass@k, bits per byte, means. Answer extraction and equality live in
:mod:`olmoflow.scoring` (shared with the RLVR verifiers)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["pass_at_k", "bits_per_byte", "mean"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), computed stably.

    n samples, c of them correct; k <= n.
    """
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def bits_per_byte(loglik: float, n_bytes: int) -> float:
    """Negative log-likelihood in bits per UTF-8 byte."""
    return -loglik / math.log(2) / max(1, n_bytes)


def mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else float("nan")
