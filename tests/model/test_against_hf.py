"""Our logits equal transformers' Olmo2ForCausalLM / Olmo3ForCausalLM (fp32, CPU) in both directions."""

from __future__ import annotations

import json

import pytest
import torch

from olmoflow.model import ModelConfig, Olmo, YarnConfig, load
from olmoflow.model.hf import config_to_hf, export_hf

transformers = pytest.importorskip("transformers")
ATOL = 1e-5


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def _hf_model(hf_cfg: dict, tmp_path, seed: int = 0):
    cfg_cls = transformers.AutoConfig.for_model(**hf_cfg)
    model = transformers.AutoModelForCausalLM.from_config(cfg_cls, attn_implementation="sdpa").eval()
    _randomize(model, seed)
    d = tmp_path / "hf"
    model.save_pretrained(d)
    return model, d


def _ids(vocab: int, b: int, t: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


def _hf_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _our_logits(model, ids):
    with torch.no_grad():
        return model(ids)


CASES = {
    "olmo2": dict(flavor="olmo2", vocab_size=256, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=2, n_heads=4, mlp_hidden=160,
                  max_seq_len=128, rope_theta=10000.0, sliding_window=None, rms_eps=1e-6),
    "olmo3_gqa": dict(flavor="olmo3", vocab_size=256, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=4, n_heads=4, n_kv_heads=2,
                      mlp_hidden=160, max_seq_len=128, sliding_window=16),
    "olmo3_past_window": dict(flavor="olmo3", vocab_size=256, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=4, n_heads=4, n_kv_heads=1,
                              mlp_hidden=128, max_seq_len=256, sliding_window=8),
    "olmo3_yarn": dict(flavor="olmo3", vocab_size=256, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=4, n_heads=4, n_kv_heads=2,
                       mlp_hidden=128, max_seq_len=512, sliding_window=8,
                       rope_theta=10000.0,
                       rope_scaling=YarnConfig(factor=8.0, original_max_seq_len=24)),
    "olmo3_6_layers": dict(flavor="olmo3", vocab_size=256, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=6, n_heads=4, n_kv_heads=2,
                           mlp_hidden=128, max_seq_len=128, sliding_window=8),
    "olmo3_explicit_types": dict(flavor="olmo3", vocab_size=256, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=5, n_heads=4,
                                 n_kv_heads=2, mlp_hidden=128, max_seq_len=128, sliding_window=8,
                                 layer_types=["full", "sliding", "full", "sliding", "sliding"]),
}
# sequences longer than the window and (for YaRN) than the original context
SEQ = {"olmo3_past_window": 40, "olmo3_yarn": 64}


@pytest.mark.parametrize("case", list(CASES))
def test_hf_to_ours(case, tmp_path):
    cfg = ModelConfig(**CASES[case])
    hf_model, hf_dir = _hf_model(config_to_hf(cfg), tmp_path)
    ours = load(hf_dir)
    assert ours.cfg.layer_types == cfg.layer_types
    ids = _ids(cfg.vocab_size, 3, SEQ.get(case, 24))
    diff = (_our_logits(ours, ids) - _hf_logits(hf_model, ids)).abs().max().item()
    assert diff < ATOL, f"{case}: max abs diff {diff}"


@pytest.mark.parametrize("case", list(CASES))
def test_ours_to_hf(case, tmp_path):
    cfg = ModelConfig(**CASES[case])
    ours = Olmo(cfg).eval()
    _randomize(ours, seed=3)
    out = export_hf(ours, tmp_path / "export")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="sdpa").eval()
    assert type(hf_model).__name__ == {"olmo2": "Olmo2ForCausalLM", "olmo3": "Olmo3ForCausalLM"}[cfg.flavor]
    ids = _ids(cfg.vocab_size, 2, SEQ.get(case, 24), seed=5)
    diff = (_our_logits(ours, ids) - _hf_logits(hf_model, ids)).abs().max().item()
    assert diff < ATOL, f"{case}: max abs diff {diff}"


def test_yarn_only_on_full_layers_matters(tmp_path):
    """Guard against a YaRN implementation that scales every layer: it must change sliding layers' output."""
    base = dict(CASES["olmo3_yarn"])
    cfg = ModelConfig(**base)
    wrong = ModelConfig(**{**base, "rope_scaling_sliding": base["rope_scaling"]})
    a, b = Olmo(cfg).eval(), Olmo(wrong).eval()
    b.load_state_dict(a.state_dict())
    ids = _ids(cfg.vocab_size, 1, 64)
    assert (_our_logits(a, ids) - _our_logits(b, ids)).abs().max() > 1e-3


def test_hf_config_without_layer_types_uses_transformers_default(tmp_path):
    """An HF olmo3 config.json with no layer_types follows transformers' rule ((i+1) % 4 == 0 -> full)."""
    cfg = ModelConfig(**CASES["olmo3_6_layers"])
    hf_cfg = config_to_hf(cfg)
    del hf_cfg["layer_types"]
    hf_model, hf_dir = _hf_model(hf_cfg, tmp_path)
    raw = json.loads((hf_dir / "config.json").read_text())
    raw.pop("layer_types", None)
    (hf_dir / "config.json").write_text(json.dumps(raw))
    ours = load(hf_dir)
    assert ours.cfg.layer_types == ["sliding", "sliding", "sliding", "full", "sliding", "sliding"]
    ids = _ids(cfg.vocab_size, 2, 30)
    assert (_our_logits(ours, ids) - _hf_logits(hf_model, ids)).abs().max().item() < ATOL


# --- config.json variants as released checkpoints write them (transformers 4.x and 5.x styles)

_HF_BASE = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    eos_token_id=0,
    pad_token_id=1,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    attention_bias=False,
)
_OLMO3_LAYERS = dict(sliding_window=8, layer_types=["sliding_attention"] * 3 + ["full_attention"])


def _hf_base(model_type: str, **kw) -> dict:
    extra = _OLMO3_LAYERS if model_type == "olmo3" else {}
    return dict(_HF_BASE, model_type=model_type, **extra, **kw)


def _rope(model_type: str, full: dict, theta: float = 10000.0) -> dict:
    """rope_parameters as transformers 5.x writes them (per layer type for olmo3)."""
    full = dict(full, rope_theta=theta)
    if model_type == "olmo2":
        return full
    return {"full_attention": full, "sliding_attention": {"rope_type": "default", "rope_theta": theta}}


def _compare_with_rewritten_config(hf_cfg: dict, tmp_path, edit=None, t: int = 64) -> float:
    """Build transformers' model from ``hf_cfg``, optionally rewrite its config.json (``edit(raw)``), load
    it with olmoflow and return the max abs logit difference."""
    hf_model, hf_dir = _hf_model(hf_cfg, tmp_path)
    if edit is not None:
        raw = json.loads((hf_dir / "config.json").read_text())
        edit(raw)
        (hf_dir / "config.json").write_text(json.dumps(raw))
    ours = load(hf_dir)
    ids = _ids(hf_cfg["vocab_size"], 2, t)
    return (_our_logits(ours, ids) - _hf_logits(hf_model, ids)).abs().max().item()


@pytest.mark.parametrize("model_type", ["olmo2", "olmo3"])
def test_hf_yarn_mscale_sets_attention_factor_like_transformers(model_type, tmp_path):
    """YaRN with mscale / mscale_all_dim (and no attention_factor): cos/sin scale is their ratio, as in
    transformers (and DeepSeek-style configs), not the plain 0.1·ln(factor) + 1."""
    yarn = dict(
        rope_type="yarn", factor=8.0, original_max_position_embeddings=24, mscale=1.0, mscale_all_dim=0.5
    )
    hf_cfg = _hf_base(model_type, max_position_embeddings=192, rope_parameters=_rope(model_type, yarn))
    assert _compare_with_rewritten_config(hf_cfg, tmp_path) < ATOL


def _pop_original(raw: dict) -> None:
    rp = raw["rope_parameters"]
    (rp.get("full_attention") or rp).pop("original_max_position_embeddings")


def _null_factor(raw: dict) -> None:
    rp = raw["rope_parameters"]
    (rp.get("full_attention") or rp)["factor"] = None


@pytest.mark.parametrize("model_type", ["olmo2", "olmo3"])
@pytest.mark.parametrize("case", ["no_original_max", "null_factor"])
def test_hf_yarn_defaults_follow_transformers(model_type, case, tmp_path):
    """Optional YaRN keys take transformers' defaults: original_max_position_embeddings absent means
    max_position_embeddings; factor null means max_position_embeddings / original_max_position_embeddings."""
    if case == "no_original_max":
        yarn, max_pos, edit = dict(rope_type="yarn", factor=4.0), 32, _pop_original
    else:
        yarn, max_pos, edit = (
            dict(rope_type="yarn", factor=8.0, original_max_position_embeddings=8),
            64,
            _null_factor,
        )
    hf_cfg = _hf_base(model_type, max_position_embeddings=max_pos, rope_parameters=_rope(model_type, yarn))
    assert _compare_with_rewritten_config(hf_cfg, tmp_path, edit) < ATOL


def test_hf_olmo3_transformers4_style_config(tmp_path):
    """An OLMo 3 long-context config.json as transformers 4.57 wrote it for the release: top-level
    rope_theta, rope_scaling (YaRN with explicit attention_factor) for the full layers only."""
    yarn = dict(
        rope_type="yarn",
        factor=8.0,
        original_max_position_embeddings=24,
        beta_fast=32,
        beta_slow=1,
        attention_factor=1.2079441541679836,
    )
    hf_cfg = _hf_base(
        "olmo3", max_position_embeddings=192, rope_parameters=_rope("olmo3", yarn, theta=500000.0)
    )

    def to_4x(raw):
        raw.pop("rope_parameters")
        raw.update(rope_theta=500000, rope_scaling=yarn, eos_token_id=[0, 2], pad_token_id=None)

    assert _compare_with_rewritten_config(hf_cfg, tmp_path, to_4x) < ATOL


def test_ours_to_hf_olmo3_without_sliding_window(tmp_path):
    """An OLMo 3 model with only full-attention layers (sliding_window None) exports to a directory
    transformers can run (its olmo3 code always builds a sliding mask and needs an integer window)."""
    cfg = ModelConfig(**{**CASES["olmo3_gqa"], "sliding_window": None, "layer_types": ["full"] * 4})
    ours = Olmo(cfg).eval()
    _randomize(ours, seed=3)
    out = export_hf(ours, tmp_path / "export")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="sdpa").eval()
    ids = _ids(cfg.vocab_size, 2, 24, seed=5)
    assert (_our_logits(ours, ids) - _hf_logits(hf_model, ids)).abs().max().item() < ATOL
    assert load(out).cfg.layer_types == ["full"] * 4
