"""Learning-rate schedules by name, as pure functions of the step (so resuming needs only the step).

All schedules warm up linearly from 0 to the peak over ``warmup_steps`` and then:

* ``cosine``: cosine decay from the peak to ``final_lr_ratio × peak`` at the last step;
* ``wsd``: warmup-stable-decay: constant peak, then a linear decay to ``final_lr_ratio × peak``
  over the last ``decay_fraction`` of the run;
* ``linear``: linear decay to zero at the last step (midtraining / long-context recipes);
* ``constant``: the peak after warmup.

``step`` is 0-based and the value is the lr of update number ``step + 1`` (OLMo-core's
convention): the first update runs at ``peak / warmup_steps``, the last warmup update at the peak,
and the last update of the run (``step == total_steps - 1``) at the schedule's end value.
"""

from __future__ import annotations

import math

from olmoflow.config import ConfigError
from olmoflow.train.config import SCHEDULES, ScheduleConfig

__all__ = ["lr_at", "lr_factor"]


def lr_factor(cfg: ScheduleConfig, step: int, total_steps: int) -> float:
    """Multiplier on the peak lr for optimizer step ``step`` (0-based) of ``total_steps``."""
    if cfg.name not in SCHEDULES:
        raise ConfigError(f"key 'schedule.name': unknown schedule {cfg.name!r} (allowed: {', '.join(SCHEDULES)})")
    warm = cfg.warmup_steps
    if warm and step < warm:
        return (step + 1) / warm
    if cfg.name == "constant":
        return 1.0
    n = step + 1  # the update this lr is used for, 1-based
    span = max(1, total_steps - warm)
    t = min(1.0, (n - warm) / span) if total_steps > warm else 1.0
    floor = cfg.final_lr_ratio
    if cfg.name == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.name == "linear":
        return 1.0 - t
    # wsd
    decay_steps = max(1, round(cfg.decay_fraction * total_steps))
    decay_start = max(warm, total_steps - decay_steps)
    if n <= decay_start:
        return 1.0
    u = min(1.0, (n - decay_start) / max(1, total_steps - decay_start))
    return 1.0 - (1.0 - floor) * u


def lr_at(peak_lr: float, cfg: ScheduleConfig, step: int, total_steps: int) -> float:
    """The learning rate at ``step``."""
    return peak_lr * lr_factor(cfg, step, total_steps)
