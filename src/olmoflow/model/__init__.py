"""The OLMo 2 / OLMo 3 model: config presets, the transformer, RoPE/YaRN, save/load, HF interop."""

from olmoflow.model.config import PRESETS, ModelConfig, YarnConfig, default_layer_types, get_preset
from olmoflow.model.io import ModelLoadError, load, save
from olmoflow.model.olmo import LOSS_CHUNK, KVCache, Olmo, fused_lm_loss, lm_loss

__all__ = [
    "LOSS_CHUNK",
    "PRESETS",
    "KVCache",
    "ModelConfig",
    "ModelLoadError",
    "Olmo",
    "YarnConfig",
    "default_layer_types",
    "fused_lm_loss",
    "get_preset",
    "lm_loss",
    "load",
    "save",
]
