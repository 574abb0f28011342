"""Pretraining: token datasets, AdamW + schedules, atomic resumable checkpoints, FSDP2.

``pretrain(cfg)`` trains a :class:`TrainConfig`; ``olmoflow pretrain --config FILE`` is the CLI.
"""

from olmoflow.train.config import TrainConfig, batch_plan
from olmoflow.train.trainer import plan, pretrain

__all__ = ["TrainConfig", "batch_plan", "plan", "pretrain"]
