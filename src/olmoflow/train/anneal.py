"""Training on a mix of named token datasets: what midtraining, microanneals and long-context
extension add to the LM objective.

Pretraining mixes *sources* (the ``source`` of each shard) to ``data.mixture`` ratios. The later
stages mix *datasets* instead (``{"dolmino": 0.5, "pretrain": 0.5}``: the pretraining mix next to
a new one, whose source names may overlap). :class:`DatasetMixObjective` prefixes every source with
its dataset's name (``dolmino/math``) so they stay apart, and :func:`dataset_mixture` turns dataset
ratios into those per-source ratios (each dataset's share split over its sources by their token
counts, so a dataset keeps its own internal proportions).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

from olmoflow.errors import OlmoflowError
from olmoflow.train.config import TrainConfig
from olmoflow.train.data import build_sources
from olmoflow.train.lm import LMObjective, load_token_data

__all__ = ["DatasetMixObjective", "dataset_mixture", "trained_context"]


def _source_tokens(path: str | Path) -> dict[str, int]:
    meta = Path(path) / "meta.json"
    if not meta.is_file():
        raise OlmoflowError(f"{path}: not a token dataset (no meta.json)")
    sources = json.loads(meta.read_text()).get("sources") or {}
    return {k: int(v) for k, v in sources.items()}


def dataset_mixture(datasets: dict[str, str], ratios: dict[str, float] | None, key: str = "mix") -> dict[str, float]:
    """Per-source mixture ``{"DATASET/SOURCE": share}`` for dataset ``ratios`` (None: every dataset
    in proportion to its tokens). A ratio naming a dataset that is not given is a one-line error
    naming ``key``."""
    ratios = dict(ratios or {})
    unknown = sorted(set(ratios) - set(datasets))
    if unknown:
        raise OlmoflowError(f"key '{key}' names dataset(s) {unknown} that are not inputs (token datasets given: "
                            f"{sorted(datasets)})")
    for name, r in ratios.items():
        if not r >= 0:
            raise OlmoflowError(f"key '{key}.{name}': ratio must be >= 0, got {r}")
    out: dict[str, float] = {}
    for name, path in datasets.items():
        toks = _source_tokens(path)
        total = sum(toks.values())
        if ratios and name not in ratios:
            continue
        share = ratios[name] if ratios else total
        for src, n in toks.items():
            out[f"{name}/{src}"] = share * n / max(1, total)
    if not out or sum(out.values()) <= 0:
        raise OlmoflowError(f"key '{key}': the ratios give no data (all zero?)")
    s = sum(out.values())
    return {k: v / s for k, v in sorted(out.items()) if v > 0}


class DatasetMixObjective(LMObjective):
    """The LM objective over named token datasets; ``cfg.data.mixture`` is keyed ``DATASET/SOURCE``
    (:func:`dataset_mixture`). Validation data (``cfg.data.val_paths``) keeps its source names."""

    def __init__(self, cfg: TrainConfig, datasets: dict[str, str], name: str = "pretrain"):
        super().__init__(cfg, name=name)
        self.datasets = dict(datasets)

    def build_sources(self, run):
        cfg, pad, vocab = self.cfg, run.model_cfg.pad_token_id, run.model_cfg.vocab_size
        renamed = []
        for name, path in self.datasets.items():
            (ds,) = load_token_data([path], vocab, f"inputs.{name}")
            if name not in {k.split("/")[0] for k in cfg.data.mixture}:
                continue  # not part of this mix (ratio 0 / not named)
            renamed.append(SimpleNamespace(shards=[dataclasses.replace(s, source=f"{name}/{s.source}")
                                                   for s in ds.shards]))
        train = build_sources(renamed, cfg.data.mode, cfg.seq_len, pad)
        val = None
        if cfg.data.val_paths:
            val = build_sources(load_token_data(cfg.data.val_paths, vocab, "data.val_paths"), cfg.data.mode,
                                cfg.seq_len, pad)
        return train, val


def trained_context(path: str | Path) -> int | None:
    """The sequence length the model at ``path`` was trained with: the training run's ``seq_len``
    (``path`` a run dir or its ``final/`` / checkpoint), a soup's first ingredient's, else None."""
    p = Path(path)
    for d in (p, p.parent, p.parent.parent):
        cfg = d / "config.json"
        if cfg.is_file():
            data = json.loads(cfg.read_text())
            if isinstance(data.get("seq_len"), int):
                return data["seq_len"]
        soup = d / "soup.json"
        if soup.is_file():
            data = json.loads(soup.read_text())
            if isinstance(data.get("seq_len"), int):
                return data["seq_len"]
            ingredients = data.get("ingredients") or []
            if ingredients and Path(ingredients[0]["path"]).is_absolute():
                return trained_context(ingredients[0]["path"])
    return None


def heldout_loss(model_path: str | Path, data_path: str | Path, seq_len: int, max_seqs: int = 64,
                 batch_size: int = 8, device: str = "cpu") -> dict[str, float]:
    """Token-mean cross-entropy of the model at ``model_path`` on the first ``max_seqs`` windows of
    ``seq_len`` tokens of the token dataset ``data_path`` (every source, sorted by name, in turn):
    the same sequences for every model, so soups and their ingredients compare on one set."""
    import torch

    from olmoflow.model import load
    from olmoflow.train.data import IGNORE_INDEX, collate

    model = load(model_path).to(device).eval()
    (ds,) = load_token_data([str(data_path)], model.cfg.vocab_size, "val")
    sources = build_sources([ds], "fixed", seq_len, model.cfg.pad_token_id)
    items = [src[i] for i in range(max(len(s) for s in sources)) for src in sources if i < len(src)][:max_seqs]
    ce, n = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(items), batch_size):
            batch = collate(items[b : b + batch_size])
            labels = batch["labels"].to(device)
            loss, parts = model(batch["input_ids"].to(device), labels=labels, z_loss=0.0, reduction="sum")
            ce += float(parts["ce"])
            n += int((labels != IGNORE_INDEX).sum())
    return {"loss": ce / max(1, n), "tokens": n}
