"""Interop with transformers' OLMo 2 / OLMo 3 format (config.json + safetensors).

Every config field is honoured as written: an explicit ``layer_types`` list, ``sliding_window``,
``rope_theta`` / ``rope_parameters`` / ``rope_scaling`` (per layer type for OLMo 3),
``num_key_value_heads``, ``rms_norm_eps``. Exports are loadable by ``AutoModelForCausalLM`` and vLLM.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from olmoflow.errors import OlmoflowError
from olmoflow.model.config import ModelConfig, YarnConfig
from olmoflow.model.io import ModelLoadError, find_model_dir, read_safetensors
from olmoflow.model.olmo import Olmo
from olmoflow.tokenizer.special import STOP_TOKENS

SUPPORTED = {"olmo2": "Olmo2ForCausalLM", "olmo3": "Olmo3ForCausalLM"}
_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
_TYPE_FROM_HF = {"full_attention": "full", "sliding_attention": "sliding"}
_TYPE_TO_HF = {v: k for k, v in _TYPE_FROM_HF.items()}

# ours -> transformers, per block (prefix model.layers.{i}.); a stacked weight of ours maps to
# several HF weights, concatenated along dim 0 in this order
_BLOCK_KEYS = {
    "attn.qkv.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "attn.o.weight": ("self_attn.o_proj.weight",),
    "attn.q_norm.weight": ("self_attn.q_norm.weight",),
    "attn.k_norm.weight": ("self_attn.k_norm.weight",),
    "attn_norm.weight": ("post_attention_layernorm.weight",),
    "mlp.gate_up.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
    "mlp.down.weight": ("mlp.down_proj.weight",),
    "mlp_norm.weight": ("post_feedforward_layernorm.weight",),
}
_TOP_KEYS = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
             "lm_head.weight": "lm_head.weight"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def hf_keys(ours: str) -> tuple[str, ...]:
    """The transformers name(s) of a native state-dict key (several for a stacked weight)."""
    if ours in _TOP_KEYS:
        return (_TOP_KEYS[ours],)
    _, i, rest = ours.split(".", 2)
    return tuple(f"model.layers.{i}.{k}" for k in _BLOCK_KEYS[rest])


def _split_sizes(cfg: ModelConfig, rest: str) -> list[int]:
    if rest == "attn.qkv.weight":
        return [cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim]
    return [cfg.mlp_hidden, cfg.mlp_hidden]


def to_hf_state(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """A native state dict under transformers' names, stacked weights split into their parts."""
    out = {}
    for name, w in state.items():
        keys = hf_keys(name)
        parts = w.split(_split_sizes(cfg, name.split(".", 2)[2]), dim=0) if len(keys) > 1 else (w,)
        out.update(zip(keys, parts))
    return out


# --------------------------------------------------------------------------- HF -> ours


def _mscale(factor: float, mscale: float = 1.0) -> float:
    return 0.1 * mscale * math.log(factor) + 1.0 if factor > 1 else 1.0


def _yarn(params: dict, where: str, max_pos: int) -> YarnConfig | None:
    """YaRN settings from one rope parameter dict, with transformers' defaults for the optional keys."""
    rtype = params.get("rope_type", params.get("type", "default"))
    if rtype in (None, "default"):
        return None
    if rtype != "yarn":
        raise ModelLoadError(f"{where}: rope_type {rtype!r} is not supported (supported: default, yarn)")
    if "factor" not in params:
        raise ModelLoadError(f"{where}: yarn rope parameters need factor")
    # transformers: no original length means max_position_embeddings; factor null means their ratio
    original = int(params.get("original_max_position_embeddings") or max_pos)
    factor = float(params["factor"]) if params["factor"] is not None else max_pos / original
    attention_factor = params.get("attention_factor")
    mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
    if attention_factor is None and mscale and mscale_all_dim:
        attention_factor = _mscale(factor, mscale) / _mscale(factor, mscale_all_dim)
    return YarnConfig(
        factor=factor,
        beta_fast=float(params.get("beta_fast") or 32.0),
        beta_slow=float(params.get("beta_slow") or 1.0),
        original_max_seq_len=original,
        attention_factor=attention_factor,
        truncate=bool(params.get("truncate", True)),
    )


def config_from_hf(hf: dict, source: Path | str = "config.json") -> ModelConfig:
    """Translate a transformers OLMo 2/3 config.json into a ModelConfig (one-line errors on problems)."""
    mt = hf.get("model_type")
    if mt not in SUPPORTED:
        raise ModelLoadError(f"{source}: model_type {mt!r} is not supported (supported: olmo2, olmo3)")
    missing = [k for k in _REQUIRED if k not in hf]
    if missing:
        raise ModelLoadError(f"{source}: missing required fields: {', '.join(missing)}")
    if hf.get("attention_bias"):
        raise ModelLoadError(f"{source}: attention_bias=true is not part of the OLMo architecture")
    if hf.get("tie_word_embeddings"):
        raise ModelLoadError(f"{source}: tie_word_embeddings=true is not supported (OLMo unties them)")
    if hf.get("hidden_act", "silu") not in ("silu", "swish"):
        raise ModelLoadError(f"{source}: hidden_act {hf['hidden_act']!r} is not supported (OLMo uses silu)")
    nulls = [k for k in (*_REQUIRED, "max_position_embeddings", "rms_norm_eps") if k in hf and hf[k] is None]
    if nulls:
        raise ModelLoadError(f"{source}: {nulls[0]} must be a number, got null")
    try:
        return _config_from_hf(hf, mt, source)
    except (ValueError, TypeError) as e:
        raise ModelLoadError(f"{source}: invalid config: {str(e).splitlines()[0]}") from None


def _config_from_hf(hf: dict, mt: str, source: Path | str) -> ModelConfig:
    n_layers = int(hf["num_hidden_layers"])
    max_pos = int(hf.get("max_position_embeddings", 2048))  # transformers' default for olmo2 and olmo3
    theta = hf.get("rope_theta")  # null as absent, like transformers (rope_parameters may carry it)
    theta = float(theta if theta is not None else 10000.0 if mt == "olmo2" else 500000.0)
    rp = hf.get("rope_parameters")
    full_params: dict = {}
    slide_params: dict = {}
    if mt == "olmo3" and isinstance(rp, dict) and ("full_attention" in rp or "sliding_attention" in rp):
        full_params = dict(rp.get("full_attention") or {})
        slide_params = dict(rp.get("sliding_attention") or {})
    elif isinstance(rp, dict):
        full_params = dict(rp)
    if hf.get("rope_scaling"):
        full_params = {**full_params, **hf["rope_scaling"]}
    for params in (hf, full_params, slide_params):
        prf = params.get("partial_rotary_factor")
        if prf is not None and float(prf) != 1.0:
            raise ModelLoadError(
                f"{source}: partial_rotary_factor {prf} is not supported (OLMo rotates whole heads)"
            )
    theta_full = float(full_params.get("rope_theta", theta))
    theta_slide = float(slide_params.get("rope_theta", theta))
    if mt == "olmo3":
        raw_types = hf.get("layer_types") or [
            "sliding_attention" if (i + 1) % 4 != 0 else "full_attention" for i in range(n_layers)
        ]
        try:
            layer_types = [_TYPE_FROM_HF[t] for t in raw_types]
        except KeyError as e:
            raise ModelLoadError(f"{source}: unknown layer type {e.args[0]!r} in layer_types") from None
        window = hf.get("sliding_window", 4096)
    else:
        layer_types, window = ["full"] * n_layers, None
    eos = hf.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    return ModelConfig(
        name=hf.get("_name_or_path") or f"hf-{mt}",
        flavor=mt,
        vocab_size=int(hf["vocab_size"]),
        d_model=int(hf["hidden_size"]),
        n_layers=n_layers,
        n_heads=int(hf["num_attention_heads"]),
        n_kv_heads=int(hf.get("num_key_value_heads") or hf["num_attention_heads"]),
        head_dim=hf.get("head_dim"),
        mlp_hidden=int(hf["intermediate_size"]),
        max_seq_len=max_pos,
        rope_theta=theta_full,
        rope_theta_sliding=theta_slide if theta_slide != theta_full else None,
        rms_eps=float(hf.get("rms_norm_eps", 1e-5)),
        sliding_window=window if "sliding" in layer_types else (window or None),
        layer_types=layer_types,
        rope_scaling=_yarn(full_params, f"{source}: rope (full layers)", max_pos),
        rope_scaling_sliding=(
            _yarn(slide_params, f"{source}: rope (sliding layers)", max_pos) if slide_params else None
        ),
        init_std=float(hf.get("initializer_range", 0.02)),
        eos_token_id=eos if eos is not None else 0,
        pad_token_id=hf.get("pad_token_id") if hf.get("pad_token_id") is not None else 0,
        bos_token_id=hf.get("bos_token_id"),
    )


def _hf_weight_files(d: Path) -> list[Path]:
    index = d / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [d / f for f in files]
        except (ValueError, KeyError, TypeError, AttributeError):  # ValueError covers invalid JSON
            raise ModelLoadError(
                f"{index}: not a valid index (needs a weight_map of tensor name -> file)"
            ) from None
    single = d / "model.safetensors"
    if single.is_file():
        return [single]
    shards = sorted(d.glob("*.safetensors"))
    if shards:
        return shards
    pickles = sorted(p.name for p in d.glob("*.bin")) + sorted(p.name for p in d.glob("*.pt"))
    if pickles:
        raise ModelLoadError(f"{d}: only pickle weights found ({pickles[0]}); olmoflow loads safetensors only")
    raise ModelLoadError(f"{d}: no safetensors weights found")


def state_from_hf(d: Path, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Read HF safetensors and rename to native keys."""
    hf_state: dict[str, torch.Tensor] = {}
    for f in _hf_weight_files(d):
        if not f.is_file():
            raise ModelLoadError(f"{f}: listed in the index but missing")
        hf_state.update(read_safetensors(f))
    ours = {}
    names = [f"blocks.{i}.{k}" for i in range(cfg.n_layers) for k in _BLOCK_KEYS] + list(_TOP_KEYS)
    for name in names:
        keys = hf_keys(name)
        missing = [k for k in keys if k not in hf_state]
        if missing:
            raise ModelLoadError(f"{d}: weight {missing[0]} missing")
        ours[name] = hf_state[keys[0]] if len(keys) == 1 else torch.cat([hf_state[k] for k in keys], dim=0)
    return ours


# --------------------------------------------------------------------------- ours -> HF


def _rope_params(theta: float, yarn: YarnConfig | None) -> dict:
    if yarn is None:
        return {"rope_type": "default", "rope_theta": theta}
    out = {"rope_type": "yarn", "rope_theta": theta, "factor": yarn.factor, "beta_fast": yarn.beta_fast,
           "beta_slow": yarn.beta_slow, "original_max_position_embeddings": yarn.original_max_seq_len,
           "truncate": yarn.truncate}
    if yarn.attention_factor is not None:
        out["attention_factor"] = yarn.attention_factor
    return out


def config_to_hf(cfg: ModelConfig, dtype: str = "float32") -> dict:
    """A transformers config.json dict with every field set explicitly."""
    hf = {
        "architectures": [SUPPORTED[cfg.flavor]],
        "model_type": cfg.flavor,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.mlp_hidden,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": cfg.init_std,
        "rms_norm_eps": cfg.rms_eps,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "use_cache": True,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "dtype": dtype,
    }
    full = _rope_params(cfg.rope_theta, cfg.rope_scaling)
    if cfg.flavor == "olmo3":
        slide = _rope_params(cfg.rope_theta_sliding or cfg.rope_theta, cfg.rope_scaling_sliding)
        hf["rope_parameters"] = {"full_attention": full, "sliding_attention": slide}
        hf["layer_types"] = [_TYPE_TO_HF[t] for t in cfg.layer_types]
        # transformers' olmo3 builds a sliding mask even with no sliding layer: it needs a number here
        hf["sliding_window"] = cfg.sliding_window or cfg.max_seq_len
    else:
        if cfg.rope_scaling_sliding is not None or "sliding" in cfg.layer_types:
            raise OlmoflowError("olmo2 has no sliding-window layers; use flavor olmo3")
        hf["rope_parameters"] = full
    hf["rope_theta"] = cfg.rope_theta
    if cfg.rope_scaling is not None:  # YaRN as transformers 4.x and vLLM read it (full layers only)
        hf["rope_scaling"] = {k: v for k, v in full.items() if k != "rope_theta"}
    return hf


def export_hf(
    model_or_path: Olmo | str | Path,
    out_dir: str | Path,
    tokenizer_dir: str | Path | None = None,
    dtype: str = "float32",
) -> Path:
    """Write a transformers/vLLM-loadable directory: config.json, model.safetensors, tokenizer files."""
    from olmoflow.model.io import load

    model = model_or_path if isinstance(model_or_path, Olmo) else load(model_or_path)
    if tokenizer_dir is None and not isinstance(model_or_path, Olmo):
        src = find_model_dir(model_or_path)
        tokenizer_dir = src if (src / "tokenizer.json").is_file() else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    state = {k: v.detach().to(tdtype).contiguous().cpu() for k, v in to_hf_state(model.state_dict(), model.cfg).items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = model.cfg
    (out / "config.json").write_text(json.dumps(config_to_hf(cfg, dtype), indent=2) + "\n")
    eos = [cfg.eos_token_id]
    if tokenizer_dir is not None:
        tdir = Path(tokenizer_dir)
        if not (tdir / "tokenizer.json").is_file():
            raise OlmoflowError(f"{tdir}: no tokenizer.json to export")
        for name in _TOKENIZER_FILES:
            if (tdir / name).is_file():
                shutil.copyfile(tdir / name, out / name)
        eos += _stop_token_ids(tdir / "tokenizer.json", exclude=eos)
    # transformers' generate and vLLM stop at any of these: with the chat template, an assistant turn
    # ends with <|im_end|>, not <|endoftext|>
    gen = {"eos_token_id": eos if len(eos) > 1 else eos[0], "pad_token_id": cfg.pad_token_id}
    if cfg.bos_token_id is not None:
        gen["bos_token_id"] = cfg.bos_token_id
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    return out


def _stop_token_ids(tokenizer_json: Path, exclude: list[int]) -> list[int]:
    """Ids of the end-of-turn / end-of-text tokens this tokenizer has, other than ``exclude``."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    ids = [tok.token_to_id(t) for t in STOP_TOKENS]
    return [i for i in ids if i is not None and i not in exclude]


def import_hf(hf_dir: str | Path, out_dir: str | Path) -> Path:
    """Convert a transformers OLMo directory into a native checkpoint (tokenizer files carried along)."""
    from olmoflow.model.io import load, save

    model = load(hf_dir)
    out = save(model, out_dir)
    src = find_model_dir(hf_dir)
    for name in _TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    return out
