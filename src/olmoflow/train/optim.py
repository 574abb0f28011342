"""AdamW with OLMo parameter groups.

Weight decay (0.1) applies to every parameter except the input embedding, as in OLMo 2/3
(REFERENCE.md §3; the released OLMo 2 configs set ``decay_embeddings: false`` and
``decay_norm_and_bias: true``, and OLMo-core's recipes override only ``embeddings.weight``).
Both are config flags (``decay_embeddings``; ``decay_norms=False`` exempts norm weights and other
1-d parameters too).
"""

from __future__ import annotations

import torch
from torch import nn

from olmoflow.train.config import OptimizerConfig

__all__ = ["build_optimizer", "param_groups"]


def _is_embedding(name: str, module_of: dict[str, nn.Module]) -> bool:
    mod = module_of.get(name.rsplit(".", 1)[0])
    return isinstance(mod, nn.Embedding) or name.startswith("embed.") or ".embed." in name


def param_groups(model: nn.Module, cfg: OptimizerConfig) -> list[dict]:
    """Two groups: ``decay`` (weight_decay) and ``no_decay`` (0); names kept for inspection."""
    modules = dict(model.named_modules())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if _is_embedding(name, modules):
            (decay if cfg.decay_embeddings else no_decay).append((name, p))
        elif p.ndim < 2:
            (decay if cfg.decay_norms else no_decay).append((name, p))
        else:
            decay.append((name, p))
    groups = [
        {"params": [p for _, p in decay], "names": [n for n, _ in decay], "weight_decay": cfg.weight_decay},
        {"params": [p for _, p in no_decay], "names": [n for n, _ in no_decay], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW (betas 0.9/0.95, eps 1e-8 by default) over :func:`param_groups`."""
    groups = param_groups(model, cfg)
    for g in groups:
        g.pop("names")
    # foreach keeps CPU and GPU fast; fused is not available for DTensor params on every backend
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, foreach=True)
