"""Loss-spike guard (OLMo 2/3): skip the update of a step whose loss or gradient norm is an outlier.

A step is skipped when its loss or grad norm exceeds ``mean + sigma · std`` of the last ``window``
accepted steps (once ``warmup`` of them are known), or is not finite. Skipped steps are not added
to the history. The history is part of the checkpoint so a resumed run decides identically.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SpikeGuard"]


class SpikeGuard:
    def __init__(self, window: int = 128, sigma: float = 6.0, warmup: int = 20, enabled: bool = True):
        self.window, self.sigma, self.warmup, self.enabled = window, sigma, warmup, enabled
        self.losses: deque[float] = deque(maxlen=window)
        self.norms: deque[float] = deque(maxlen=window)

    @staticmethod
    def _outlier(x: float, hist: deque[float], sigma: float) -> bool:
        n = len(hist)
        mean = sum(hist) / n
        std = math.sqrt(sum((h - mean) ** 2 for h in hist) / n)
        return std > 0 and x > mean + sigma * std

    def should_skip(self, loss: float, grad_norm: float) -> bool:
        """Whether to skip this step's update (non-finite values are always skipped)."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return True
        if not self.enabled or len(self.losses) < self.warmup:
            return False
        return self._outlier(loss, self.losses, self.sigma) or self._outlier(grad_norm, self.norms, self.sigma)

    def record(self, loss: float, grad_norm: float) -> None:
        """Add an accepted step to the history."""
        self.losses.append(loss)
        self.norms.append(grad_norm)

    def state_dict(self) -> dict:
        return {"losses": list(self.losses), "norms": list(self.norms)}

    def load_state_dict(self, state: dict) -> None:
        self.losses = deque(state.get("losses", []), maxlen=self.window)
        self.norms = deque(state.get("norms", []), maxlen=self.window)
