"""Model configuration and the named presets (OLMo 2 / OLMo 3 sizes and tiny CPU models)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from olmoflow.config import Config, ConfigError

LayerType = Literal["full", "sliding"]


class YarnConfig(Config):
    """YaRN RoPE extension (OLMo 3 long context: factor 8, 8192 -> 65536)."""

    factor: float = Field(8.0, gt=1.0)
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    original_max_seq_len: int = Field(8192, gt=0)
    #: cos/sin multiplier; None means the YaRN default 0.1·ln(factor) + 1
    attention_factor: float | None = None
    #: floor/ceil the correction range (the YaRN paper and transformers' default)
    truncate: bool = True


class ModelConfig(Config):
    """Everything that defines the network. Defaults follow REFERENCE.md §1."""

    name: str = "custom"
    flavor: Literal["olmo2", "olmo3"] = "olmo3"
    vocab_size: int = Field(100352, gt=0)
    d_model: int = Field(4096, gt=0)
    n_layers: int = Field(32, gt=0)
    n_heads: int = Field(32, gt=0)
    #: None means multi-head attention (n_kv_heads == n_heads)
    n_kv_heads: int | None = None
    #: None means d_model // n_heads
    head_dim: int | None = None
    #: None means 8·d/3 rounded up to a multiple of ``mlp_multiple_of``
    mlp_hidden: int | None = None
    mlp_multiple_of: int = 256
    max_seq_len: int = Field(8192, gt=0)
    rope_theta: float = 500_000.0
    #: RoPE base for sliding layers when it differs (only seen in imported HF configs)
    rope_theta_sliding: float | None = None
    rms_eps: float = 1e-6
    #: OLMo 3: window size of the sliding-attention layers (a query sees itself and window-1 previous)
    sliding_window: int | None = 4096
    #: per-layer attention; None means the OLMo 3 rule (every 4th layer and the last are full)
    layer_types: list[LayerType] | None = None
    #: YaRN on full-attention layers (sliding layers keep plain RoPE)
    rope_scaling: YarnConfig | None = None
    #: YaRN on sliding layers too (only for imported HF configs that ask for it)
    rope_scaling_sliding: YarnConfig | None = None
    init_std: float = 0.02
    eos_token_id: int = 100257
    pad_token_id: int = 100277
    bos_token_id: int | None = None

    @model_validator(mode="after")
    def _resolve(self) -> ModelConfig:
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)
        if self.head_dim % 2:
            raise ValueError(f"head_dim ({self.head_dim}) must be even for RoPE")
        if self.mlp_hidden is None:
            m = self.mlp_multiple_of
            object.__setattr__(self, "mlp_hidden", m * math.ceil(8 * self.d_model / 3 / m))
        if self.layer_types is None:
            object.__setattr__(self, "layer_types", default_layer_types(self.flavor, self.n_layers))
        if len(self.layer_types) != self.n_layers:
            raise ValueError(f"layer_types has {len(self.layer_types)} entries, expected n_layers={self.n_layers}")
        for key in ("eos_token_id", "pad_token_id"):
            if not 0 <= getattr(self, key) < self.vocab_size:
                raise ValueError(f"{key} ({getattr(self, key)}) must be < vocab_size ({self.vocab_size})")
        if "sliding" in self.layer_types and not self.sliding_window:
            raise ValueError("sliding layers need sliding_window > 0")
        return self

    @property
    def kv_groups(self) -> int:
        return self.n_heads // self.n_kv_heads

    def num_params(self, include_embedding: bool = True) -> int:
        """Parameter count (embedding and head counted separately: they are untied)."""
        d, hd = self.d_model, self.head_dim
        attn = d * self.n_heads * hd * 2 + d * self.n_kv_heads * hd * 2 + (self.n_heads + self.n_kv_heads) * hd
        block = attn + 3 * d * self.mlp_hidden + 2 * d
        n = self.n_layers * block + d + self.vocab_size * d
        return n + (self.vocab_size * d if include_embedding else 0)

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token: 6·N (non-embedding + head) plus attention 6·L·T·d (causal-halved 12/2)."""
        t = seq_len or self.max_seq_len
        n = self.num_params(include_embedding=False)
        return 6 * n + 6 * self.n_layers * t * self.n_heads * self.head_dim


def default_layer_types(flavor: str, n_layers: int) -> list[LayerType]:
    """OLMo 3: full attention when (i+1) % 4 == 0 and always on the last layer; OLMo 2: all full."""
    if flavor == "olmo2":
        return ["full"] * n_layers
    return ["full" if (i + 1) % 4 == 0 or i == n_layers - 1 else "sliding" for i in range(n_layers)]


_OLMO3_VOCAB = dict(vocab_size=100352, eos_token_id=100257, pad_token_id=100277)
_TINY = dict(vocab_size=4096, eos_token_id=0, pad_token_id=1, max_seq_len=512, sliding_window=64)

PRESETS: dict[str, dict] = {
    # tiny CPU models (vocab of the demo tokenizer; override vocab_size to match yours)
    "tiny-1m": dict(_TINY, d_model=96, n_layers=4, n_heads=4, n_kv_heads=2, mlp_hidden=256),
    "tiny-5m": dict(_TINY, d_model=192, n_layers=8, n_heads=6, n_kv_heads=2, mlp_hidden=512),
    "tiny-20m": dict(_TINY, d_model=384, n_layers=10, n_heads=6, n_kv_heads=2, mlp_hidden=1024),
    # OLMo 2
    "olmo2-1b": dict(_OLMO3_VOCAB, flavor="olmo2", d_model=2048, n_layers=16, n_heads=16, mlp_hidden=8192,
                     max_seq_len=4096, sliding_window=None),
    "olmo2-7b": dict(_OLMO3_VOCAB, flavor="olmo2", d_model=4096, n_layers=32, n_heads=32, mlp_hidden=11008,
                     max_seq_len=4096, sliding_window=None),
    "olmo2-13b": dict(_OLMO3_VOCAB, flavor="olmo2", d_model=5120, n_layers=40, n_heads=40, mlp_hidden=13824,
                      max_seq_len=4096, sliding_window=None),
    "olmo2-32b": dict(_OLMO3_VOCAB, flavor="olmo2", d_model=5120, n_layers=64, n_heads=40, n_kv_heads=8,
                      mlp_hidden=27648, max_seq_len=4096, sliding_window=None),
    # OLMo 3 (8192 pretraining context, sliding window 4096 in 3 of 4 layers)
    "olmo3-1b": dict(_OLMO3_VOCAB, d_model=2048, n_layers=16, n_heads=16, mlp_hidden=8192),
    "olmo3-7b": dict(_OLMO3_VOCAB, d_model=4096, n_layers=32, n_heads=32, mlp_hidden=11008),
    "olmo3-32b": dict(_OLMO3_VOCAB, d_model=5120, n_layers=64, n_heads=40, n_kv_heads=8, mlp_hidden=27648),
    # OLMo 3 after long-context extension (YaRN on full layers, 65536 tokens)
    "olmo3-7b-long": dict(_OLMO3_VOCAB, d_model=4096, n_layers=32, n_heads=32, mlp_hidden=11008,
                          max_seq_len=65536, rope_scaling=dict(factor=8.0, original_max_seq_len=8192)),
    "olmo3-32b-long": dict(_OLMO3_VOCAB, d_model=5120, n_layers=64, n_heads=40, n_kv_heads=8,
                           mlp_hidden=27648, max_seq_len=65536,
                           rope_scaling=dict(factor=8.0, original_max_seq_len=8192)),
}


def get_preset(name: str, **overrides) -> ModelConfig:
    """A preset by name, with optional field overrides (e.g. ``vocab_size=`` for your tokenizer)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r} (available: {', '.join(PRESETS)})")
    return ModelConfig.model_validate({"name": name, **PRESETS[name], **overrides})
