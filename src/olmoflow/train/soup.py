"""Model souping: the (weighted) mean of the weights of several checkpoints of one architecture.

OLMo 3 soups several midtraining runs (same start, different seeds / data orders) into one base
model: a uniform mean of their parameters. :func:`soup` checks first that every ingredient is the
same network with the same tokenizer (every ``ModelConfig`` field except ``name`` and the
context-length settings must agree, and parameter names and shapes must match), then writes an
ordinary native model directory (``model.safetensors`` + ``config.json``) that every later stage
accepts, plus ``soup.json`` naming each ingredient, its weight and the sha256 of its weights
(lineage). Sums run in float64 so the result does not depend on the order of the ingredients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from olmoflow.errors import OlmoflowError
from olmoflow.io import atomic_write_json, sha256_file

__all__ = ["SoupError", "check_compatible", "soup", "soup_main"]

#: ModelConfig fields that may differ between ingredients (they do not change the weights' meaning)
_FREE_FIELDS = ("name",)
#: fields that say which tokenizer the model was trained with
_TOKENIZER_FIELDS = ("vocab_size", "eos_token_id", "pad_token_id", "bos_token_id")


class SoupError(OlmoflowError):
    """Ingredients that cannot be averaged (different architecture, tokenizer or tensors)."""


def _model_dir(path: str | Path) -> Path:
    """A model dir from a training run dir (its ``final/``), a checkpoint or a model dir."""
    p = Path(path)
    if (p / "final").is_dir() and not (p / "model.safetensors").is_file():
        return p / "final"
    return p


def check_compatible(paths: list[Path]) -> Any:
    """The shared ``ModelConfig`` of ``paths``, or a one-line :class:`SoupError` naming the first
    field (or tokenizer file) in which an ingredient differs from the first."""
    from olmoflow.model.io import read_config

    cfgs = [read_config(p) for p in paths]
    ref = cfgs[0].model_dump(mode="json")
    for p, c in zip(paths[1:], cfgs[1:]):
        d = c.model_dump(mode="json")
        for key in ref:
            if key in _FREE_FIELDS or d.get(key) == ref[key]:
                continue
            what = "tokenizer" if key in _TOKENIZER_FIELDS else "architecture"
            raise SoupError(f"soup: {p} has a different {what} than {paths[0]}: model.{key} = {d.get(key)!r} "
                            f"vs {ref[key]!r}; only checkpoints of one model can be averaged")
    toks = {p: sha256_file(p / "tokenizer.json") for p in paths if (p / "tokenizer.json").is_file()}
    if len(set(toks.values())) > 1:
        a, b = list(toks)[:2]
        raise SoupError(f"soup: {b / 'tokenizer.json'} differs from {a / 'tokenizer.json'}; "
                        "only checkpoints trained with one tokenizer can be averaged")
    return cfgs[0]


def soup(paths: list[str | Path], out_dir: str | Path, weights: list[float] | None = None) -> dict[str, Any]:
    """Average the weights of ``paths`` (uniform, or proportional to ``weights``) into ``out_dir``.

    Returns the lineage record also written to ``out_dir/soup.json``."""
    from safetensors.torch import load_file

    from olmoflow.model.io import save_state

    if len(paths) < 2:
        raise SoupError(f"soup: needs at least 2 checkpoints, got {len(paths)}")
    dirs = [_model_dir(p) for p in paths]
    for d in dirs:
        if not (d / "model.safetensors").is_file():
            raise SoupError(f"soup: {d} has no model.safetensors (give a model dir, checkpoint or training run)")
    if weights is None:
        weights = [1.0] * len(dirs)
    if len(weights) != len(dirs):
        raise SoupError(f"soup: key 'weights' has {len(weights)} entries for {len(dirs)} checkpoints")
    if any(not (w >= 0) for w in weights) or sum(weights) <= 0:
        raise SoupError(f"soup: key 'weights' must be >= 0 with a positive sum, got {weights}")
    cfg = check_compatible(dirs)
    total = float(sum(weights))
    acc: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for i, (d, w) in enumerate(zip(dirs, weights)):
        sd = load_file(str(d / "model.safetensors"))
        if i == 0:
            dtypes = {k: v.dtype for k, v in sd.items()}
            acc = {k: v.double() * (w / total) for k, v in sd.items()}
            continue
        if set(sd) != set(acc):
            diff = sorted(set(sd) ^ set(acc))[:3]
            raise SoupError(f"soup: {d} holds other tensors than {dirs[0]} (e.g. {diff})")
        for k, v in sd.items():
            if v.shape != acc[k].shape:
                raise SoupError(f"soup: {d}: tensor {k} has shape {tuple(v.shape)} vs {tuple(acc[k].shape)}")
            acc[k] += v.double() * (w / total)
    out = Path(out_dir)
    save_state({k: v.to(dtypes[k]) for k, v in acc.items()}, cfg, out)
    if (dirs[0] / "tokenizer.json").is_file():
        (out / "tokenizer.json").write_bytes((dirs[0] / "tokenizer.json").read_bytes())
    record = {
        "ingredients": [{"path": str(d), "weight": w / total, "sha256": sha256_file(d / "model.safetensors")}
                        for d, w in zip(dirs, weights)],
        "method": "uniform" if len(set(weights)) == 1 else "weighted",
    }
    atomic_write_json(out / "soup.json", record, indent=1)
    return record


def soup_main(argv: list[str]) -> int:
    """``olmoflow soup CKPT CKPT... --out DIR [--weights W W ...]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="olmoflow soup",
                                 description="average the weights of checkpoints of one model (model souping)")
    ap.add_argument("checkpoints", nargs="+", help="model dirs, training checkpoints or training run dirs")
    ap.add_argument("--out", required=True, help="output model dir")
    ap.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per checkpoint (default uniform)")
    args = ap.parse_args(argv)
    rec = soup(args.checkpoints, args.out, args.weights)
    print(f"souped {len(rec['ingredients'])} checkpoints ({rec['method']}) -> {args.out}")
    return 0
