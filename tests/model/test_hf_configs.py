"""HF-format handling checked without a transformers model: refusals as one-line errors, export fields, load memory."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import pytest
import torch

from olmoflow.model import ModelConfig, ModelLoadError, Olmo, get_preset, load
from olmoflow.model.hf import config_from_hf, config_to_hf, export_hf

_BASE = dict(
    model_type="olmo3",
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    eos_token_id=0,
    pad_token_id=1,
    sliding_window=8,
    max_position_embeddings=64,
)
_YARN = dict(rope_type="yarn", factor=8.0, original_max_position_embeddings=8)


def _one_line_error(hf: dict) -> str:
    with pytest.raises(ModelLoadError) as e:
        config_from_hf(hf, source="x/config.json")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("x/config.json: "), msg
    return msg


@pytest.mark.parametrize(
    "hf, field",
    [
        (dict(_BASE, hidden_act="gelu"), "hidden_act"),
        (dict(_BASE, partial_rotary_factor=0.5), "partial_rotary_factor"),
        (
            dict(
                _BASE,
                rope_parameters={
                    "full_attention": dict(_YARN, partial_rotary_factor=0.5),
                    "sliding_attention": {"rope_type": "default"},
                },
            ),
            "partial_rotary_factor",
        ),
        (
            dict(
                _BASE,
                model_type="olmo2",
                rope_scaling={"type": "yarn", "original_max_position_embeddings": 8},
            ),
            "factor",
        ),
        (dict(_BASE, num_hidden_layers=None), "num_hidden_layers"),
        (dict(_BASE, rms_norm_eps=None), "rms_norm_eps"),
    ],
)
def test_unsupported_or_bad_fields_are_refused_in_one_line(hf, field):
    """Fields olmoflow cannot honour are refused (never silently ignored), naming the field."""
    assert field in _one_line_error(hf)


def test_partial_rotary_factor_one_is_accepted():
    assert config_from_hf(dict(_BASE, model_type="olmo2", partial_rotary_factor=1.0)).head_dim == 16


def test_absent_max_position_embeddings_is_transformers_default():
    hf = {k: v for k, v in _BASE.items() if k != "max_position_embeddings"}
    assert config_from_hf(hf).max_seq_len == 2048  # Olmo2Config / Olmo3Config default


@pytest.mark.parametrize("index", ["{oops", '{"weight_map": 3}', "[]"])
def test_bad_safetensors_index_is_a_one_line_error(index, tmp_path):
    cfg = config_to_hf(get_preset("tiny-1m"))
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors.index.json").write_text(index)
    with pytest.raises(ModelLoadError) as e:
        load(tmp_path)
    assert "model.safetensors.index.json" in str(e.value) and "\n" not in str(e.value)


def test_export_yarn_also_writes_rope_scaling():
    """transformers 4.x and vLLM before rope_parameters read YaRN from rope_scaling (full layers only);
    an export writes it alongside rope_parameters, and reading both back gives the same config."""
    cfg = get_preset("olmo3-7b-long")
    hf = config_to_hf(cfg)
    full = {k: v for k, v in hf["rope_parameters"]["full_attention"].items() if k != "rope_theta"}
    assert hf["rope_scaling"] == full and full["rope_type"] == "yarn"
    assert config_from_hf(json.loads(json.dumps(hf))).model_dump() == {**cfg.model_dump(), "name": "hf-olmo3"}
    assert "rope_scaling" not in config_to_hf(get_preset("olmo3-7b"))
    assert "rope_scaling" not in config_to_hf(get_preset("olmo2-7b"))


def _vm_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def test_load_in_bf16_peaks_near_the_checkpoint_size(tmp_path):
    """Loading a bf16 checkpoint with dtype=bfloat16 must not pass through a float32 copy of the model
    (measured: peak growth 6.3x the model's bytes with it, 3.3x without; a 7B peaked near 90 GB for a
    14 GB result)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux)
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak memory")
    cfg = ModelConfig(
        flavor="olmo2",
        vocab_size=8192,
        eos_token_id=0,
        pad_token_id=1,
        d_model=512,
        n_layers=8,
        n_heads=8,
        mlp_hidden=2048,
        sliding_window=None,
    )
    export_hf(Olmo(cfg, init=False), tmp_path / "hf", dtype="bfloat16")  # ~70 MB
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    before = _vm_kib("VmRSS")
    model = load(tmp_path / "hf", dtype=torch.bfloat16)
    grown = (_vm_kib("VmHWM") - before) * 1024
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    assert next(model.parameters()).dtype == torch.bfloat16
    assert grown / size < 4.5, f"peak grew {grown / size:.2f}x the model size"
