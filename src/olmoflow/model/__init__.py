"""The OLMo 2 / OLMo 3 model: config presets, the transformer, RoPE/YaRN, the chunked LM head (loss and
per-token log-probs), the KV cache, save/load, HF interop."""

from olmoflow.model.config import PRESETS, ModelConfig, YarnConfig, default_layer_types, get_preset
from olmoflow.model.io import ModelLoadError, load, save
from olmoflow.model.kv_cache import KVCache
from olmoflow.model.lm_head import LOSS_CHUNK, lm_head_loss, lm_loss, token_logprobs
from olmoflow.model.olmo import Olmo

__all__ = [
    "LOSS_CHUNK",
    "PRESETS",
    "KVCache",
    "ModelConfig",
    "ModelLoadError",
    "Olmo",
    "YarnConfig",
    "default_layer_types",
    "get_preset",
    "lm_head_loss",
    "lm_loss",
    "load",
    "save",
    "token_logprobs",
]
