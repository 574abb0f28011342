"""What a training run optimises: the :class:`Objective` the loop (``train/trainer.py``) drives.

The loop owns everything that is the same for every kind of training: optimizer, learning-rate
schedule, gradient clipping, loss-spike guard, checkpoints with exact resume, FSDP2, logging and
callbacks. An objective owns the rest: where its batches come from, how a micro batch becomes a
loss, and the state it needs to continue exactly after a resume (data position, sampler RNG, ...).
Pretraining, midtraining and long-context extension use :class:`~olmoflow.train.lm.LMObjective`;
SFT, DPO and GRPO plug in the same way from ``olmoflow.posttrain``.

One optimizer step:

1. ``mbs = objective.next_batch(model)`` — this process's micro batches of the next global batch;
2. ``n = Σ objective.normalizer(mb)`` over every micro batch of every process (tokens, pairs, ...);
3. for each ``mb``: ``loss_sum, metrics = objective.loss(model, mb)``;
   ``(loss_sum · world / n).backward()``;
4. optimizer step (unless the spike guard skips it); ``objective.commit()``.

The normalizer is a separate call, known before any forward pass, because the global denominator
must scale each micro batch's loss *before* its gradients accumulate: that keeps the loss a true
mean over the whole global batch under gradient accumulation and FSDP (whose gradient reduction
averages over processes) and gives the same bits on 1 or N processes. ``metrics`` are sums too;
the loop all-reduces them and divides by ``n``. The first of :attr:`Objective.metric_names` is the
loss the spike guard watches and the progress bar shows.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Objective", "RunContext"]


@dataclass
class RunContext:
    """What an objective may know about the run it is part of (set by the loop before step 1)."""

    model_cfg: Any
    device: torch.device
    rank: int
    world_size: int
    seed: int
    #: a context manager factory: bf16 autocast when the run uses it, else a no-op
    autocast: Callable[[], contextlib.AbstractContextManager]


class Objective(ABC):
    """Batches + loss + resumable state of one kind of training. See the module docstring."""

    #: shown on the progress bar and in log events
    name: str = "train"
    #: keys of the metric sums :meth:`loss` returns, in a fixed order; the first is the watched loss
    metric_names: tuple[str, ...] = ("loss",)
    #: True when a global batch may have nothing to learn from (normalizer 0: e.g. RL rollouts whose
    #: rewards all agree); the loop then skips the update and logs the step as skipped. False: an error.
    allow_empty: bool = False

    def setup(self, run: RunContext) -> None:
        """Called once by the loop after the model exists and before any batch is drawn."""
        self.run = run

    @abstractmethod
    def next_batch(self, model: torch.nn.Module) -> list[Any]:
        """This process's micro batches of the next optimizer step. Must not advance the
        objective's position: :meth:`commit` does, once the step has been taken."""

    @abstractmethod
    def normalizer(self, micro_batch: Any) -> float:
        """This micro batch's share of the loss denominator (e.g. its number of target tokens)."""

    @abstractmethod
    def loss(self, model: torch.nn.Module, micro_batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss_sum, metric_sums)`` of one micro batch; ``loss_sum`` is differentiable and
        ``metric_sums`` holds a scalar for each of :attr:`metric_names`."""

    @abstractmethod
    def commit(self) -> None:
        """The step drawn by :meth:`next_batch` was taken (or skipped by the guard): move on."""

    def step_metrics(self) -> dict[str, Any]:
        """Metrics of the last committed step that are not per-normalizer sums (e.g. RL rollout
        statistics: reward mean, prompts retired); merged into the step's record."""
        return {}

    def step_tokens(self) -> int:
        """Tokens the last committed step consumed over all processes (for logs and throughput)."""
        return 0

    def validate(self, model: torch.nn.Module) -> dict[str, float] | None:
        """Validation metrics (e.g. ``{"val_loss": ...}``), or None when there is no validation data."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state that makes the next :meth:`next_batch` after a resume exact."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if state:
            raise ValueError(f"{self.name}: unexpected objective state keys {sorted(state)}")
