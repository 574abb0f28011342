"""Callbacks: code the training loop runs after each step, without the loop knowing what it is.

In-loop evaluation is one (``olmoflow.eval``'s ``EvalCallback`` behind :class:`PeriodicCallback`);
a user adds their own by subclassing :class:`Callback` and passing it to ``pretrain(..., callbacks=)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["Callback", "PeriodicCallback"]


class Callback:
    """Hooks of the training loop. ``record`` is the step's metrics record before it is logged:
    a callback may add keys to it (they are logged with the step)."""

    #: True when the callback cannot run under several processes (the loop refuses it at start)
    single_process: bool = False

    def on_step_end(self, step: int, total_steps: int, model: torch.nn.Module, run_dir: Path,
                    record: dict[str, Any]) -> None:
        """After optimizer step ``step`` (1-based) of ``total_steps``."""

    def on_train_end(self, step: int, model: torch.nn.Module, run_dir: Path) -> None:
        """After the last step and final checkpoint."""


class PeriodicCallback(Callback):
    """Adapts an evaluator ``fn(step, model, run_dir, force) -> record | None`` (e.g. ``EvalCallback``)
    to the loop: it is called every step (the evaluator decides when to run; ``force`` at the last
    step) and a record's primary metric per task lands in the step's record under ``key``."""

    single_process = True

    def __init__(self, fn: Callable[..., dict[str, Any] | None], key: str = "eval"):
        self.fn, self.key = fn, key

    def on_step_end(self, step, total_steps, model, run_dir, record) -> None:
        ev = self.fn(step, model, run_dir, force=step == total_steps)
        if ev is not None:  # primary metric value per task, e.g. {"arith_rc": 0.25}
            record[self.key] = {t: ev["metrics"][t].get(m) for t, m in ev["primary"].items()}
