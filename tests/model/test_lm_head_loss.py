"""The chunked LM-head + cross-entropy + z-loss with gradients in forward (``lm_head_loss`` /
``Olmo.forward(labels=...)``) equals the unfused ``lm_loss(model(ids), labels)`` path: loss, ce, z and
every gradient; with per-token weights it equals the weighted sum over full logits and the same
reduction over ``token_logprobs``.

Tolerance (float32): values and gradients agree to a relative error of 1e-5 (max |a − b| ≤ 1e-5 ·
max |b|, elementwise on the loss parts); only the order of float32 sums differs (chunked GEMMs and
per-chunk partial sums). Under bf16 autocast both paths round the head's GEMMs to bf16, so they
agree to 1e-2 of the gradient norm.
"""

from __future__ import annotations

import pytest
import torch

from olmoflow.model import ModelConfig, Olmo, lm_head_loss, lm_loss, token_logprobs

CFG = dict(flavor="olmo3", vocab_size=96, eos_token_id=0, pad_token_id=1, d_model=32, n_layers=2, n_heads=4,
           n_kv_heads=2, mlp_hidden=64, max_seq_len=64, sliding_window=8)
REL = 1e-5


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = REL) -> bool:
    return float((a.detach().double() - b.detach().double()).abs().max()) <= rel * max(float(b.detach().double().abs().max()), 1e-30)


def _data(n: int = 50, d: int = 24, v: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g)
    w = 0.5 * torch.randn(v, d, generator=g)
    labels = torch.randint(0, v, (n,), generator=g)
    labels[[0, 3, 17, n - 1]] = -100
    return h, w, labels


def _both(h, w, labels, z_loss, reduction, chunk):
    """(loss, parts, dh, dw) of the fused and of the unfused path."""
    out = []
    for fused in (True, False):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        if fused:
            loss, parts = lm_head_loss(hh, ww, labels, z_loss=z_loss, reduction=reduction, chunk_size=chunk)
        else:
            loss, parts = lm_loss(hh @ ww.T, labels, z_loss=z_loss, reduction=reduction)
        loss.backward()
        out.append((loss.detach(), parts, hh.grad, ww.grad))
    return out


@pytest.mark.parametrize("chunk", [7, 16, 50, 1000])  # not dividing N=50, dividing, = N, > N
@pytest.mark.parametrize("z_loss", [0.0, 1e-2])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_fused_equals_unfused(chunk, z_loss, reduction):
    (loss, parts, dh, dw), (loss0, parts0, dh0, dw0) = _both(*_data(), z_loss, reduction, chunk)
    assert _close(loss, loss0) and _close(parts["ce"], parts0["ce"]) and _close(parts["z"], parts0["z"])
    assert parts["n_tokens"].item() == parts0["n_tokens"].item() == 46
    assert not parts["ce"].requires_grad and not parts["z"].requires_grad
    assert _close(dh, dh0) and _close(dw, dw0)
    assert dh[[0, 3, 17, 49]].abs().max() == 0  # ignored rows get no gradient


def test_all_ignored_chunk_and_all_ignored_batch():
    h, w, labels = _data()
    labels[8:16] = -100  # the whole second chunk of 8 rows
    (loss, parts, dh, dw), (loss0, _, dh0, dw0) = _both(h, w, labels, 1e-2, "sum", 8)
    assert _close(loss, loss0) and _close(dh, dh0) and _close(dw, dw0)
    assert dh[8:16].abs().max() == 0
    labels[:] = -100  # nothing to predict: zero loss and zero gradients (as lm_loss)
    for reduction in ("sum", "mean"):
        (loss, parts, dh, dw), (loss0, _, _, _) = _both(h, w, labels, 1e-2, reduction, 8)
        assert loss.item() == loss0.item() == 0.0 and parts["n_tokens"].item() == 0
        assert dh.abs().max() == 0 and dw.abs().max() == 0


def test_scaled_backward_and_frozen_inputs():
    """The stored gradients are scaled by the incoming gradient (the trainer's world / n_global)."""
    h, w, labels = _data()
    hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
    (lm_head_loss(hh, ww, labels, reduction="sum", chunk_size=16)[0] * 0.37).backward()
    h0, w0 = h.clone().requires_grad_(), w.clone().requires_grad_()
    (lm_loss(h0 @ w0.T, labels, reduction="sum")[0] * 0.37).backward()
    assert _close(hh.grad, h0.grad) and _close(ww.grad, w0.grad)
    # only the weight needs a gradient (h frozen), then neither (no_grad: evaluation)
    ww = w.clone().requires_grad_()
    lm_head_loss(h, ww, labels, chunk_size=16)[0].backward()
    assert _close(ww.grad, w0.grad / 0.37 / 46)
    with torch.no_grad():
        loss, parts = lm_head_loss(h, w, labels, reduction="sum", chunk_size=16)
    assert not loss.requires_grad and _close(parts["ce"], lm_loss(h @ w.T, labels, reduction="sum")[1]["ce"])


@pytest.mark.parametrize("chunk", [1, 16, 1000])
def test_token_weights_equal_weighted_sum_over_full_logits_and_over_token_logprobs(chunk):
    """SFT-style weights (mask / per-sequence normaliser, arbitrary here): the loss is
    Σ w_i·(lse_i − z_i[t_i]) + z_loss·Σ w_i·lse_i², ignored rows excluded whatever their weight."""
    h, w, labels = _data()
    tw = torch.rand(50, generator=torch.Generator().manual_seed(1)) * 3
    valid = (labels != -100).float()
    got, ref, via_op = [], [], []
    for out, path in ((got, "loss"), (ref, "full"), (via_op, "op")):
        hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
        if path == "loss":
            loss, parts = lm_head_loss(hh, ww, labels, token_weights=tw, z_loss=1e-2, reduction="sum", chunk_size=chunk)
            out.append(parts["ce"])
        elif path == "full":
            z = hh @ ww.T
            lse = z.logsumexp(-1)
            ce_i = lse - z.gather(1, labels.clamp(min=0)[:, None])[:, 0]
            ce = (tw * valid * ce_i).sum()
            out.append(ce.detach())
            loss = ce + 1e-2 * (tw * valid * lse.pow(2)).sum()
        else:
            logp, lse, _ = token_logprobs(hh, ww, labels, chunk_size=chunk)
            ce = -(tw * logp).sum()  # logp and lse are 0 on ignored rows
            out.append(ce.detach())
            loss = ce + 1e-2 * (tw * lse.pow(2)).sum()
        loss.backward()
        out += [loss.detach(), hh.grad, ww.grad]
    for other in (ref, via_op):
        assert all(_close(a, b) for a, b in zip(got, other))
    assert got[2][[0, 3, 17, 49]].abs().max() == 0
    # reduction "mean" divides by the valid-token count, not by the weights
    mean, _ = lm_head_loss(h, w, labels, token_weights=tw, z_loss=1e-2, reduction="mean", chunk_size=chunk)
    assert _close(mean, got[1] / 46)


def test_token_weights_must_be_constants():
    h, w, labels = _data()
    with pytest.raises(ValueError, match="constants"):
        lm_head_loss(h, w, labels, token_weights=torch.ones(50, requires_grad=True))
    with pytest.raises(ValueError, match="token_weights has 49"):
        lm_head_loss(h, w, labels, token_weights=torch.ones(49))


def test_second_backward_is_a_clear_error():
    h, w, labels = _data()
    loss, _ = lm_head_loss(h.requires_grad_(), w, labels, chunk_size=16)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="once"):
        loss.backward()


def test_bad_arguments():
    h, w, labels = _data()
    with pytest.raises(ValueError, match="reduction"):
        lm_head_loss(h, w, labels, reduction="none")
    with pytest.raises(ValueError, match="chunk_size"):
        lm_head_loss(h, w, labels, chunk_size=0)
    m = Olmo(ModelConfig(**CFG))
    ids = torch.randint(2, 96, (2, 10))
    with pytest.raises(ValueError, match="logits_to_keep"):
        m(ids, labels=ids, logits_to_keep=1)


def _model_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    m = Olmo(ModelConfig(**CFG)).train()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 96, (3, 20), generator=g)
    labels = ids.roll(-1, 1)
    labels[:, -1] = -100
    labels[1, :7] = -100
    doc_ids = torch.zeros_like(ids)
    doc_ids[:, 12:] = 1
    return m, ids, labels, doc_ids


def _grads(m: Olmo) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad(set_to_none=True)
    return out


def test_whole_model_gradients_match_with_trainer_reduction_and_accumulation():
    """Two micro batches, each ``backward(loss_sum / n_global)`` as the trainer does: the
    accumulated gradients of every parameter equal the unfused path's."""
    m, ids, labels, doc_ids = _model_and_batch()
    micro = [(ids[:2], labels[:2], doc_ids[:2]), (ids[2:], labels[2:], doc_ids[2:])]
    n_global = int((labels != -100).sum())
    sums = {}
    for fused in (True, False):
        total = 0.0
        for x, y, d in micro:
            if fused:
                loss, parts = m(x, doc_ids=d, labels=y, z_loss=1e-2, reduction="sum", loss_chunk=13)
            else:
                loss, parts = lm_loss(m(x, doc_ids=d), y, z_loss=1e-2, reduction="sum")
            (loss / n_global).backward()
            total += loss.item()
        sums[fused] = (total, _grads(m))
    assert abs(sums[True][0] - sums[False][0]) <= REL * abs(sums[False][0])
    for name, g in sums[False][1].items():
        assert _close(sums[True][1][name], g), name
    # the logits path is untouched: without labels forward returns logits
    assert m(ids).shape == (3, 20, 96)


def test_forward_with_labels_defaults_match_lm_loss():
    m, ids, labels, _ = _model_and_batch(1)
    loss, parts = m(ids, labels=labels)
    loss0, parts0 = lm_loss(m(ids), labels)
    assert _close(loss, loss0) and _close(parts["z"], parts0["z"]) and parts["n_tokens"] == parts0["n_tokens"]


def test_bf16_autocast_close_to_unfused_and_grads_in_param_dtype():
    m, ids, labels, doc_ids = _model_and_batch(2)
    res = {}
    for fused in (True, False):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if fused:
                loss, parts = m(ids, doc_ids=doc_ids, labels=labels, z_loss=1e-2, reduction="sum", loss_chunk=16)
            else:
                loss, parts = lm_loss(m(ids, doc_ids=doc_ids), labels, z_loss=1e-2, reduction="sum")
        assert loss.dtype == torch.float32 and parts["ce"].dtype == torch.float32
        loss.backward()
        res[fused] = (loss.item(), _grads(m))
    assert abs(res[True][0] - res[False][0]) <= 1e-3 * abs(res[False][0])
    for name, g in res[False][1].items():
        f = res[True][1][name]
        assert f.dtype == torch.float32 and torch.isfinite(f).all(), name
        assert (f - g).norm() <= 1e-2 * g.norm() + 1e-6, name


def test_bf16_params_grads_in_bf16():
    m, ids, labels, _ = _model_and_batch(3)
    m32 = Olmo(ModelConfig(**CFG)).train()
    m32.load_state_dict(m.state_dict())
    m = m.to(torch.bfloat16)
    loss, _ = m(ids, labels=labels, loss_chunk=16)
    assert loss.dtype == torch.float32
    loss.backward()
    lm_loss(m32(ids), labels)[0].backward()
    ref = dict(m32.named_parameters())
    for n, p in m.named_parameters():
        assert p.grad.dtype == torch.bfloat16 and torch.isfinite(p.grad).all(), n
        assert (p.grad.float() - ref[n].grad).norm() <= 0.1 * ref[n].grad.norm() + 1e-6, n


def test_double_backward_through_the_fused_loss_is_refused():
    """create_graph=True (e.g. a gradient penalty) would otherwise return a constant gradient, so
    the penalty would silently contribute nothing."""
    torch.manual_seed(0)
    h = torch.randn(6, 8, requires_grad=True)
    w = torch.randn(11, 8, requires_grad=True)
    labels = torch.randint(0, 11, (6,))
    loss, _ = lm_head_loss(h, w, labels)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(loss, h, create_graph=True)
