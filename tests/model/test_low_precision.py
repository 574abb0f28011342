"""bf16 / fp16 behaviour: errors against the float32 result no larger than transformers' (or SDPA's),
the loss in float32, and autocast training through the custom autograd functions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from olmoflow.model import KVCache, ModelConfig, Olmo, lm_loss, load, save
from olmoflow.model.attention import attend, decode_bias
from olmoflow.model.hf import export_hf
from olmoflow.model.io import stored_dtype

LOW = [torch.bfloat16, torch.float16]
CFG = dict(flavor="olmo3", vocab_size=256, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=4, n_heads=4,
           n_kv_heads=2, mlp_hidden=160, max_seq_len=128, sliding_window=8)


def _model(qk_gain: float = 1.0, **overrides) -> Olmo:
    """Random tiny model; ``qk_gain`` scales the QK-norm weights, i.e. the attention logits, as in
    trained models whose attention is peaked."""
    model = Olmo(ModelConfig(**{**CFG, **overrides})).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
                if "q_norm" in name or "k_norm" in name:
                    p.mul_(qk_gain)
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


@pytest.mark.parametrize("dtype", LOW)
def test_decode_attention_low_precision_error_like_sdpa(dtype):
    """The single-token decode kernel keeps scores and softmax in float32 like SDPA: peaked
    attention logits (std ~18) rounded to bf16 before the softmax cost ~20x SDPA's error."""
    g = torch.Generator().manual_seed(0)
    b, h, kv, s, hd = 2, 8, 2, 200, 64
    q = (6 * torch.randn(b, h, 1, hd, generator=g)).to(dtype)
    k = (3 * torch.randn(b, kv, s, hd, generator=g)).to(dtype)
    v = torch.randn(b, kv, s, hd, generator=g).to(dtype)
    att = torch.ones(b, s, dtype=torch.bool)
    att[0, :50] = False
    mask = att[:, None, None, :]
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask, enable_gqa=True)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    ours = attend(q, k, v, decode_bias(att, kv, dtype))
    assert ours.dtype == dtype and not ours.isnan().any()
    err_ours = (ours.double() - ref).abs().max().item()
    err_sdpa = (sdpa.double() - ref).abs().max().item()
    assert err_ours <= 2 * err_sdpa + 1e-3, f"decode {err_ours:.4f} vs SDPA {err_sdpa:.4f}"


@pytest.mark.parametrize("dtype", LOW)
def test_cached_decode_logits_as_close_to_fp32_as_uncached(dtype):
    """Logits decoded token by token from a bf16/fp16 cache are as close to float32 as one bf16/fp16
    forward over the whole sequence (the prefill path, SDPA)."""
    m32 = _model(qk_gain=8.0)
    m = _model(qk_gain=8.0).to(dtype)
    ids = torch.randint(2, 256, (2, 48), generator=torch.Generator().manual_seed(1))
    p = 8
    with torch.no_grad():
        ref = m32(ids).double()[:, p:]
        full = m(ids).double()[:, p:]
        cache = KVCache(m.cfg, 2, 48, dtype=dtype)
        m(ids[:, :p], cache=cache)
        dec = torch.cat([m(ids[:, i : i + 1], cache=cache) for i in range(p, 48)], 1).double()
    err_full = (full - ref).abs().mean().item()
    err_dec = (dec - ref).abs().mean().item()
    assert err_dec <= 1.15 * err_full, f"{dtype}: cached decode {err_dec:.5f} vs full forward {err_full:.5f}"


def test_lm_loss_on_bf16_logits_is_float32():
    g = torch.Generator().manual_seed(0)
    logits = (8 * torch.randn(3, 40, 256, generator=g)).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, 256, (3, 40), generator=g)
    labels[0, :5] = -100
    loss, stats = lm_loss(logits, labels)
    assert loss.dtype == torch.float32 and stats["ce"].dtype == torch.float32
    x = logits.detach().double().reshape(-1, 256)
    y = labels.reshape(-1)
    keep = y != -100
    lse = x[keep].logsumexp(-1)
    ref = F.cross_entropy(x[keep], y[keep]) + 1e-5 * (lse**2).mean()
    assert abs(loss.item() - ref.item()) < 1e-5
    loss.backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad).all()


def test_autocast_bf16_training_step():
    """fwd+bwd under CPU autocast through ``_RMSNormFn`` and ``_CrossEntropyZLoss``: float32
    grads for float32 params, close to the float32 step."""
    m = _model().train()
    ids = torch.randint(2, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    labels = ids.roll(-1, 1)
    labels[:, -1] = -100
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = m(ids)
        loss, _ = lm_loss(logits, labels)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    lm_loss(m(ids), labels)[0].backward()
    for n, p in m.named_parameters():
        assert grads[n].dtype == p.dtype and torch.isfinite(grads[n]).all(), n
        assert (grads[n] - p.grad).norm() <= 0.05 * p.grad.norm() + 1e-6, n


@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_params_training_step(dtype):
    """A model held in bf16/fp16 trains through the custom autograd functions: grads in the params'
    dtype, finite, close to float32's."""
    m32 = _model().train()
    m = _model().train().to(dtype)
    ids = torch.randint(2, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    labels = ids.roll(-1, 1)
    lm_loss(m(ids), labels)[0].backward()
    lm_loss(m32(ids), labels)[0].backward()
    ref = dict(m32.named_parameters())
    for n, p in m.named_parameters():
        assert p.grad.dtype == dtype and torch.isfinite(p.grad).all(), n
        assert (p.grad.float() - ref[n].grad).norm() <= 0.1 * ref[n].grad.norm() + 1e-6, n


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("flavor", ["olmo2", "olmo3"])
def test_logits_against_transformers_low_precision(flavor, dtype, tmp_path):
    """``load(fp32 dir, dtype=...)`` against transformers loaded from the same weights in the same
    dtype: close to each other, and ours no further from the float32 logits than theirs."""
    transformers = pytest.importorskip("transformers")
    over = dict(flavor="olmo2", sliding_window=None, rope_theta=10000.0) if flavor == "olmo2" else {}
    m32 = _model(**over)
    d = export_hf(m32, tmp_path / "hf")
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))  # past the window
    ours = load(d, dtype=dtype)
    assert {p.dtype for p in ours.parameters()} == {dtype}
    hf = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=dtype, attn_implementation="sdpa").eval()
    with torch.no_grad():
        ref = m32(ids).double()
        lo, lh = ours(ids), hf(input_ids=ids).logits
    assert lo.dtype == dtype
    err_ours, err_hf = (lo.double() - ref).abs().mean().item(), (lh.double() - ref).abs().mean().item()
    assert err_ours <= 1.1 * err_hf, f"ours {err_ours:.5f} vs transformers {err_hf:.5f}"
    tol = 0.1 if dtype == torch.bfloat16 else 0.02
    assert (lo.double() - lh.double()).abs().max().item() < tol


def test_convert_to_hf_bfloat16_round_trip(tmp_path):
    """``olmoflow convert --to-hf --dtype bfloat16`` of a float32 checkpoint: bf16 weights that load
    back (in bf16, as stored) equal to casting the model, with equal logits."""
    from olmoflow.cli import main

    m32 = _model()
    src = save(m32, tmp_path / "native")
    assert main(["convert", "--to-hf", str(src), "--out", str(tmp_path / "hf"), "--dtype", "bfloat16"]) == 0
    assert stored_dtype(tmp_path / "hf") == torch.bfloat16
    back = load(tmp_path / "hf", dtype=torch.bfloat16)
    cast = load(src, dtype=torch.bfloat16)
    for (k, a), b in zip(back.state_dict().items(), cast.state_dict().values()):
        assert a.dtype == torch.bfloat16 and torch.equal(a, b), k
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(back(ids), cast(ids))
