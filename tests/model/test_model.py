"""Model behaviour users rely on: presets, masks, loss, save/load, clear errors on bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from olmoflow.cli import main as cli_main
from olmoflow.config import ConfigError
from olmoflow.model import ModelConfig, ModelLoadError, Olmo, get_preset, lm_loss, load, save
from olmoflow.model.hf import export_hf

TINY = dict(vocab_size=128, eos_token_id=0, pad_token_id=1, d_model=32, n_layers=4, n_heads=4, n_kv_heads=2,
            mlp_hidden=64, max_seq_len=64, sliding_window=8)


def test_presets_match_reference():
    p7 = get_preset("olmo3-7b")
    assert (p7.n_layers, p7.d_model, p7.n_heads, p7.mlp_hidden, p7.max_seq_len) == (32, 4096, 32, 11008, 8192)
    assert p7.layer_types.count("full") == 8 and p7.layer_types[-1] == "full" and p7.sliding_window == 4096
    assert 6.5e9 < p7.num_params() < 7.6e9
    p32 = get_preset("olmo3-32b")
    assert (p32.n_heads, p32.n_kv_heads, p32.mlp_hidden) == (40, 8, 27648)
    assert get_preset("olmo2-13b").layer_types == ["full"] * 40
    assert get_preset("olmo2-7b").vocab_size == 100352
    for name, target in {"tiny-1m": 1e6, "tiny-5m": 5e6, "tiny-20m": 20e6}.items():
        with torch.device("meta"):
            n = Olmo(get_preset(name), init=False).num_params()
        assert n == get_preset(name).num_params()
        assert 0.6 * target < n < 1.4 * target, (name, n)
    assert get_preset("olmo3-7b-long").rope_scaling.factor == 8.0
    # 8d/3 rounded up to a multiple of 256 (7B: 11008)
    assert ModelConfig(d_model=4096, n_heads=32).mlp_hidden == 11008


def test_layer_rule_last_layer_always_full():
    cfg = ModelConfig(**{**TINY, "n_layers": 6})
    assert cfg.layer_types == ["sliding", "sliding", "sliding", "full", "sliding", "full"]


def test_unknown_preset_is_one_line_error():
    with pytest.raises(ConfigError, match="unknown model preset 'olmo9-1t'.*available: tiny-1m"):
        get_preset("olmo9-1t")


def test_init_truncated_normal():
    m = Olmo(get_preset("tiny-5m"))
    w = m.blocks[0].mlp.gate_up.weight
    assert abs(w.std().item() - 0.02 * 0.9866) < 0.0005  # N(0, .02) truncated at ±3σ has std 0.0197
    assert w.abs().max().item() <= 0.06 + 1e-6
    assert torch.all(m.blocks[0].attn_norm.weight == 1)


def test_doc_mask_isolates_documents():
    """Packed sequence: each document's logits equal those of the document alone."""
    m = Olmo(ModelConfig(**TINY)).eval()
    a, b = torch.randint(2, 128, (1, 11)), torch.randint(2, 128, (1, 13))
    packed = torch.cat([a, b], 1)
    doc_ids = torch.tensor([[0] * 11 + [1] * 13])
    with torch.no_grad():
        out = m(packed, doc_ids=doc_ids)
        assert torch.allclose(out[:, :11], m(a), atol=1e-5)
        assert torch.allclose(out[:, 11:], m(b), atol=1e-5)


def test_left_padding_matches_unpadded():
    m = Olmo(ModelConfig(**TINY)).eval()
    x = torch.randint(2, 128, (1, 20))
    padded = torch.cat([torch.ones(1, 5, dtype=torch.long), x], 1)
    mask = torch.cat([torch.zeros(1, 5), torch.ones(1, 20)], 1)
    with torch.no_grad():
        assert torch.allclose(m(padded, attention_mask=mask)[:, 5:], m(x), atol=1e-5)


def test_lm_loss_matches_reference_formula():
    logits = torch.randn(2, 5, 11)
    labels = torch.randint(0, 11, (2, 5))
    labels[0, 0] = -100
    loss, parts = lm_loss(logits, labels, z_loss=1e-2)
    valid = labels != -100
    ce = torch.nn.functional.cross_entropy(logits[valid], labels[valid])
    z = torch.logsumexp(logits[valid], -1).pow(2).mean()
    assert torch.allclose(loss, ce + 1e-2 * z)
    assert parts["n_tokens"].item() == 9
    # gradients of the fused loss equal autograd through the reference formula
    a = logits.clone().requires_grad_()
    lm_loss(a, labels, z_loss=1e-2)[0].backward()
    b = logits.clone().requires_grad_()
    (torch.nn.functional.cross_entropy(b[valid], labels[valid])
     + 1e-2 * torch.logsumexp(b[valid], -1).pow(2).mean()).backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-7)
    assert math.isclose(lm_loss(torch.zeros(1, 1, 4), torch.tensor([[2]]), z_loss=0)[0].item(), math.log(4),
                        rel_tol=1e-6)


def test_save_load_roundtrip(tmp_path):
    m = Olmo(ModelConfig(**TINY)).eval()
    save(m, tmp_path / "ck")
    m2 = load(tmp_path / "ck")
    x = torch.randint(0, 128, (2, 12))
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert m2.cfg == m.cfg


def test_checkpoint_with_separate_qkv_and_gate_up_still_loads(tmp_path):
    """Native checkpoints from before q/k/v and gate/up were stacked load to the same model."""
    from safetensors.torch import load_file, save_file

    from olmoflow.model.io import NATIVE_FORMAT

    m = Olmo(ModelConfig(**TINY)).eval()
    save(m, tmp_path / "ck")
    state = load_file(tmp_path / "ck" / "model.safetensors")
    old = {}
    for k, v in state.items():
        if k.endswith("attn.qkv.weight"):
            q, kk, vv = v.split(list(m.blocks[0].attn.split), dim=0)
            old |= {k.replace("qkv", "q"): q, k.replace("qkv", "k"): kk, k.replace("qkv", "v"): vv}
        elif k.endswith("mlp.gate_up.weight"):
            gate, up = v.chunk(2, dim=0)
            old |= {k.replace("gate_up", "gate"): gate.contiguous(), k.replace("gate_up", "up"): up.contiguous()}
        else:
            old[k] = v
    save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "ck" / "model.safetensors"),
              metadata={"format": NATIVE_FORMAT})
    x = torch.randint(0, 128, (2, 12))
    with torch.no_grad():
        assert torch.equal(m(x), load(tmp_path / "ck")(x))


# ------------------------------------------------------------------ bad input: one-line errors


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_other_architecture_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(ModelLoadError) as e:
        load(tmp_path)
    assert "model_type 'llama' is not supported" in _one_line(e)


def test_missing_fields_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "olmo3", "hidden_size": 8}))
    with pytest.raises(ModelLoadError) as e:
        load(tmp_path)
    assert "missing required fields: vocab_size, num_hidden_layers" in _one_line(e)


def test_truncated_safetensors(tmp_path):
    out = export_hf(Olmo(ModelConfig(**TINY)), tmp_path / "hf")
    f = out / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ModelLoadError) as e:
        load(out)
    assert "not a valid safetensors file" in _one_line(e)


def test_pickle_checkpoint_refused(tmp_path):
    out = export_hf(Olmo(ModelConfig(**TINY)), tmp_path / "hf")
    (out / "model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, out / "pytorch_model.bin")
    with pytest.raises(ModelLoadError) as e:
        load(out)
    assert "safetensors only" in _one_line(e)
    with pytest.raises(ModelLoadError, match="pickle checkpoints are not loaded"):
        load(out / "pytorch_model.bin")


def test_not_a_model_dir(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model directory"):
        load(tmp_path)
    with pytest.raises(ModelLoadError, match="no such file"):
        load(tmp_path / "nope")


def test_convert_cli_roundtrip(tmp_path, capsys):
    m = Olmo(ModelConfig(**TINY)).eval()
    save(m, tmp_path / "native")
    assert cli_main(["convert", "--to-hf", str(tmp_path / "native"), "--out", str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "olmo3"
    assert cli_main(["convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back")]) == 0
    x = torch.randint(0, 128, (1, 16))
    with torch.no_grad():
        assert torch.equal(m(x), load(tmp_path / "back")(x))


def test_cli_reports_bad_model_in_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    rc = cli_main(["convert", "--to-hf", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "model_type 'gpt2' is not supported" in err


def test_inference_kernels_equal_training_kernels():
    """RMSNorm's no-autograd formula and Linear's few-row orientation compute what the autograd
    paths compute (up to float rounding), for every row count a decoding batch can have."""
    from olmoflow.model.olmo import Linear, RMSNorm

    g = torch.Generator().manual_seed(0)
    norm, lin = RMSNorm(48, 1e-6), Linear(48, 80)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(48, generator=g) + 0.5)
        lin.weight.copy_(torch.randn(80, 48, generator=g))
    for rows in range(1, 11):
        x = torch.randn(rows, 1, 48, generator=g, requires_grad=True)
        ref_norm, ref_lin = norm(x), lin(x)  # autograd paths
        with torch.no_grad():
            assert torch.allclose(norm(x), ref_norm, atol=1e-6, rtol=1e-6)
            assert torch.allclose(lin(x), ref_lin, atol=1e-5, rtol=1e-6)
            assert lin(x).shape == (rows, 1, 80)
