"""Save and load models: native checkpoints and HF directories, safetensors only (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from olmoflow.errors import OlmoflowError
from olmoflow.model.config import ModelConfig
from olmoflow.model.olmo import Olmo

NATIVE_FORMAT = "olmoflow-model-v1"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


class ModelLoadError(OlmoflowError):
    """A model path could not be loaded; the message names the file and the problem."""


def save(model: Olmo, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (native format) into ``out_dir``."""
    return save_state(model.state_dict(), model.cfg, out_dir, extra)


def save_state(
    state: dict[str, torch.Tensor], cfg: ModelConfig, out_dir: str | Path, extra: dict | None = None
) -> Path:
    """Write a state dict as a native model directory (for callers holding a gathered state dict)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": NATIVE_FORMAT})
    meta = {"format": NATIVE_FORMAT, "model": cfg.model_dump(mode="json"), **(extra or {})}
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def read_config(path: str | Path) -> ModelConfig:
    """The ModelConfig of a native checkpoint or transformers directory, without loading weights."""
    return _read_config(find_model_dir(path))[0]


def _read_config(d: Path) -> tuple[ModelConfig, bool]:
    """(config, is_native) from ``d/config.json``."""
    try:
        meta = json.loads((d / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{d / 'config.json'}:{e.lineno}: invalid JSON ({e.msg})") from None
    if meta.get("format") == NATIVE_FORMAT:
        from olmoflow.config import ConfigError

        try:
            return ModelConfig.model_validate(meta["model"]), True
        except Exception as e:  # pydantic ValidationError
            raise ConfigError(f"{d / 'config.json'}: invalid model config: {e}") from None
    if "model_type" in meta:
        from olmoflow.model.hf import config_from_hf

        return config_from_hf(meta, source=d / "config.json"), False
    raise ModelLoadError(f"{d / 'config.json'}: neither an olmoflow checkpoint nor a transformers config")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Load one safetensors file, turning a truncated/corrupt file into a one-line error."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: not a valid safetensors file ({str(e).splitlines()[0]})") from None


_STORED_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def stored_dtype(path: str | Path) -> torch.dtype | None:
    """The floating dtype a model's weights are stored in (read from the safetensors headers only);
    None when mixed or unreadable (``load`` then reports what is wrong)."""
    try:
        d = find_model_dir(path)
        if _read_config(d)[1]:
            files = [d / "model.safetensors"]
        else:
            from olmoflow.model.hf import _hf_weight_files

            files = _hf_weight_files(d)
        found = set()
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                found.update(st.get_slice(k).get_dtype() for k in st.keys())
    except (OlmoflowError, SafetensorError, OSError, ValueError):
        return None
    return _STORED_DTYPES.get(found.pop()) if len(found) == 1 else None


def find_model_dir(path: str | Path) -> Path:
    """The directory holding config.json: ``path`` itself or its ``model/`` subfolder (training checkpoints)."""
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{p}: no such file or directory")
    if p.is_file():
        if p.suffix in _PICKLE_SUFFIXES:
            raise ModelLoadError(f"{p}: pickle checkpoints are not loaded (unsafe); convert to safetensors first")
        p = p.parent
    for cand in (p, p / "model"):
        if (cand / "config.json").is_file():
            return cand
    pickles = sorted(q.name for q in p.glob("*") if q.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{p}: only pickle weights found ({', '.join(pickles[:3])}); olmoflow loads safetensors only"
        )
    raise ModelLoadError(f"{p}: not a model directory (no config.json)")


def load(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> Olmo:
    """Load a native olmoflow checkpoint or a transformers OLMo 2/3 directory as an ``Olmo`` module."""
    d = find_model_dir(path)
    cfg, native = _read_config(d)
    if native:
        weights = d / "model.safetensors"
        if not weights.is_file():
            raise ModelLoadError(f"{d}: model.safetensors missing")
        state = _stack_legacy_keys(read_safetensors(weights))
    else:
        from olmoflow.model.hf import state_from_hf

        state = state_from_hf(d, cfg)
    with torch.device("meta"):
        model = Olmo(cfg, init=False)
    if dtype is not None:  # materialize in the target dtype: no float32 copy of a bf16 checkpoint
        model = model.to(dtype)
    model = model.to_empty(device="cpu")
    _load_state(model, state, d)
    return model.to(device).eval()


_LEGACY_STACKS = {"attn.qkv.weight": ("attn.q.weight", "attn.k.weight", "attn.v.weight"),
                  "mlp.gate_up.weight": ("mlp.gate.weight", "mlp.up.weight")}


def _stack_legacy_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Native checkpoints written before q/k/v and gate/up were stacked (2026-11) store them
    separately; stack them so those checkpoints still load."""
    out = dict(state)
    for key in state:
        for new, parts in _LEGACY_STACKS.items():
            if key.endswith("." + parts[0]):
                prefix = key[: -len(parts[0])]
                if all(prefix + p in state for p in parts):
                    out[prefix + new] = torch.cat([out.pop(prefix + p) for p in parts], dim=0)
    return out


def _load_state(model: Olmo, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensors (e.g. {unexpected[0]})")
        raise ModelLoadError(f"{source}: weights do not match the config: {'; '.join(parts)}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ModelLoadError(
                f"{source}: tensor {k} has shape {tuple(v.shape)}, config expects {tuple(expected[k].shape)}"
            )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True, assign=False)
