"""Compute estimates for the dry-run plan: tokens, parameters, FLOPs and H100 GPU-hours.

GPU-hours = 6·N·D FLOPs / (989 TFLOP/s bf16 dense on an H100 × MFU 0.4) / 3600. Attention FLOPs
and evaluation are ignored: this is the planning figure, not a promise.
"""

from __future__ import annotations

from typing import Any

__all__ = ["H100_BF16_FLOPS", "MFU", "estimate", "gpu_hours", "param_count"]

H100_BF16_FLOPS = 989e12
MFU = 0.4

# Used when olmoflow.model is not importable; computed with param_count's formula.
_FALLBACK_PARAMS = {
    "olmo2-1b": 1.48e9, "olmo2-7b": 7.30e9, "olmo2-13b": 13.7e9, "olmo2-32b": 32.2e9,
    "olmo3-7b": 7.30e9, "olmo3-32b": 32.2e9,
}
_TOKEN_KEYS = ("tokens", "train_tokens", "max_tokens", "target_tokens", "total_tokens")


def param_count(preset: str) -> float | None:
    """Parameters of a model preset (embedding + blocks + head), or None if unknown."""
    try:
        from olmoflow.model import get_preset

        cfg = get_preset(preset)
    except Exception:  # noqa: BLE001 - planning works without the model package
        return _FALLBACK_PARAMS.get(preset)
    if hasattr(cfg, "num_params"):
        return float(cfg.num_params())
    return float(_count_from_fields(cfg.model_dump() if hasattr(cfg, "model_dump") else vars(cfg)))


def _count_from_fields(c: dict[str, Any]) -> int:
    d, L, V = c["d_model"], c["n_layers"], c["vocab_size"]
    h = c["n_heads"]
    kv = c.get("n_kv_heads") or h
    hd = d // h
    mlp = c.get("mlp_hidden") or 0
    attn = d * d * 2 + 2 * d * kv * hd + d + kv * hd  # q, o, k, v + qk-norm
    block = attn + 3 * d * mlp + 2 * d
    return V * d * 2 + L * block + d


def gpu_hours(flops: float) -> float:
    return flops / (H100_BF16_FLOPS * MFU) / 3600.0


def _num(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def estimate(config: dict[str, Any]) -> dict[str, Any]:
    """Generic estimate from a stage config: ``tokens`` (or steps × batch tokens) and ``model``/``params``."""
    out: dict[str, Any] = {}
    tokens = next((_num(config[k]) for k in _TOKEN_KEYS if k in config), None)
    if tokens is None:
        steps = _num(config.get("max_steps") or config.get("steps"))
        batch = _num(config.get("batch_tokens") or config.get("global_batch_tokens"))
        if steps is None and batch is None:
            pass
        elif steps is not None and batch is not None:
            tokens = steps * batch
        elif steps is not None and config.get("batch_size") and config.get("seq_len"):
            tokens = steps * float(config["batch_size"]) * float(config["seq_len"])
    if tokens is not None:
        out["tokens"] = tokens
    params = _num(config.get("params"))
    model = config.get("model")
    if params is None and isinstance(model, str):
        params = param_count(model)
    if params is None and isinstance(model, dict) and isinstance(model.get("preset"), str):
        params = param_count(model["preset"])
    if params is not None:
        out["params"] = params
    if "tokens" in out and "params" in out:
        out["flops"] = 6.0 * out["params"] * out["tokens"]
        out["gpu_hours"] = gpu_hours(out["flops"])
    return out
