"""The fast attention paths compute exactly what masked SDPA computes: values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from olmoflow.model import Olmo, get_preset
from olmoflow.model import olmo as olmo_mod
from olmoflow.model.attention import attend, blocked_sliding_mask, decode_bias, sliding_block_size


def _full_mask(t, window, doc_ids, valid):
    idx = torch.arange(t)
    m = ((idx[None, :] <= idx[:, None]) & (idx[:, None] - idx[None, :] < window))[None]
    if doc_ids is not None:
        m = m & (doc_ids[:, :, None] == doc_ids[:, None, :])
    if valid is not None:
        m = (m & valid[:, None, :]) | ~valid[:, :, None]
    return m[:, None]


def _qkv(b, h, kv, t, hd, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, n, t, hd, generator=g, requires_grad=True) for n in (h, kv, kv)]


@pytest.mark.parametrize("t,window,block", [(64, 16, 8), (97, 16, 8), (50, 24, 12), (40, 8, 3), (33, 32, 16)])
@pytest.mark.parametrize("docs", [False, True])
@pytest.mark.parametrize("pad", [False, True])
def test_blocked_sliding_equals_masked_sdpa(t, window, block, docs, pad):
    b, h, kv, hd = 3, 4, 2, 8
    g = torch.Generator().manual_seed(t + window)
    doc_ids = torch.randint(0, 3, (b, t), generator=g).sort(dim=1).values if docs else None
    valid = None
    if pad:
        valid = torch.ones(b, t, dtype=torch.bool)
        valid[1, :5] = False  # left padding
        valid[2, : t // 2] = False
    q, k, v = _qkv(b, h, kv, t, hd, seed=t)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=_full_mask(t, window, doc_ids, valid), enable_gqa=True)
    out = attend(q, k, v, blocked_sliding_mask(t, window, block, "cpu", doc_ids, valid))
    keep = valid[:, None, :, None] if valid is not None else torch.ones(1, 1, t, 1, dtype=torch.bool)
    assert out.shape == ref.shape
    assert torch.allclose(out * keep, ref * keep, atol=1e-6)
    gy = torch.randn_like(ref) * keep
    grads_ref = torch.autograd.grad(ref, (q, k, v), gy)
    grads_out = torch.autograd.grad(out, (q, k, v), gy)
    for a, r in zip(grads_out, grads_ref):
        assert torch.allclose(a, r, atol=1e-5)


def test_block_size_only_when_it_pays():
    assert sliding_block_size(64, 256) == 32
    assert sliding_block_size(64, 128) is None  # 96 keys per block is not well below 128
    assert sliding_block_size(4096, 16384) == 2048
    assert sliding_block_size(4096, 8192) is None


def test_decode_path_equals_sdpa():
    q, k, v = _qkv(4, 6, 2, 1, 16, seed=0)
    k, v = _qkv(4, 2, 2, 37, 16, seed=1)[:2]
    mask = torch.rand(4, 1, 1, 37, generator=torch.Generator().manual_seed(2)) > 0.3
    mask[..., 0] = True
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    out = attend(q, k, v, decode_bias(mask[:, 0, 0], n_kv=2, dtype=q.dtype))
    assert torch.allclose(out, ref, atol=1e-6)


def test_model_blocked_path_matches_full_mask(monkeypatch):
    """Packed documents through the whole model: blocked sliding layers == full boolean masks."""
    cfg = get_preset("tiny-1m").model_copy(update={"sliding_window": 16})
    model = Olmo(cfg, init=False)
    model.init_weights(torch.Generator().manual_seed(0))
    ids = torch.randint(2, cfg.vocab_size, (2, 96), generator=torch.Generator().manual_seed(1))
    doc_ids = torch.cat([torch.zeros(2, 40, dtype=torch.long), torch.ones(2, 56, dtype=torch.long)], dim=1)
    fast = model(ids, doc_ids=doc_ids)
    monkeypatch.setattr(olmo_mod, "sliding_block_size", lambda window, t: None)
    slow = model(ids, doc_ids=doc_ids)
    assert (fast - slow).abs().max().item() < 1e-5
