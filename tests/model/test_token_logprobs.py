"""``token_logprobs`` (chunked LM head, logits recomputed in backward) equals the computation over full
logits: per-token log-probs, logsumexp and entropy, and the gradients w.r.t. h and W of post-training
objectives built on them (SFT masked mean, DPO-like sigmoid of per-sequence sums, GRPO-like clipped
per-token ratios with entropy), also through the whole model (``Olmo.forward(targets=...)``).

Tolerance (float32): relative 1e-5 of the reference's max |value| (only the order of float32 sums
differs); under bf16 autocast both paths round the head's GEMMs to bf16: 1e-2 of the gradient norm.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from olmoflow.model import ModelConfig, Olmo, token_logprobs

CFG = dict(flavor="olmo3", vocab_size=96, eos_token_id=0, pad_token_id=1, d_model=32, n_layers=2, n_heads=4,
           n_kv_heads=2, mlp_hidden=64, max_seq_len=64, sliding_window=8)
REL = 1e-5
B, T, D, V = 4, 12, 24, 40
IGNORED = [0, 3, 17, 47]


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = REL) -> bool:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max()) <= rel * max(float(b.abs().max()), 1e-30)


def _data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B * T, D, generator=g)
    w = 0.5 * torch.randn(V, D, generator=g)
    targets = torch.randint(0, V, (B * T,), generator=g)
    targets[IGNORED] = -100
    return h, w, targets


def _full(h, w, targets):
    return _from_logits(h @ w.T, targets)


def _from_logits(logits, targets):
    """The reference: log_softmax over the materialised logits, gathered; 0 on ignored rows."""
    z = logits.float()
    lsm = z.log_softmax(-1)
    valid = (targets != -100).float()
    logp = lsm.gather(1, targets.clamp(min=0)[:, None])[:, 0] * valid
    lse = z.logsumexp(-1) * valid
    ent = -(lsm.exp() * lsm).sum(-1) * valid
    return logp, lse, ent


# objectives a post-training loss builds from (logp, lse, entropy), all per token [B·T]
def _sft_mean(logp, lse, ent, targets):
    mask = (targets != -100).float()
    return -(logp * mask).sum() / mask.sum()


def _dpo(logp, lse, ent, targets):
    s = logp.view(B, T).sum(1)  # per-sequence sums; rows (0, 1) and (2, 3) are chosen/rejected pairs
    ref = torch.tensor([-40.0, -42.0, -39.0, -45.0])
    margin = (s[0::2] - ref[0::2]) - (s[1::2] - ref[1::2])
    return -F.logsigmoid(0.1 * margin).sum()


def _grpo(logp, lse, ent, targets):
    g = torch.Generator().manual_seed(7)
    adv = torch.randn(B * T, generator=g)  # an arbitrary weight per token
    old = logp.detach() + 0.3 * torch.randn(B * T, generator=g)
    ratio = (logp - old).exp()
    clipped = torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    mask = (targets != -100).float()
    seq = torch.sigmoid(0.05 * logp.view(B, T).sum(1)).sum()  # a nonlinear function of sequence sums
    return -(clipped * mask).sum() / mask.sum() - 0.01 * (ent * mask).mean() + 1e-3 * lse.pow(2).sum() + seq


def _lse_only(logp, lse, ent, targets):
    return lse.pow(2).sum()


def _entropy_only(logp, lse, ent, targets):
    return ent.sum()


OBJECTIVES = {"sft_mean": _sft_mean, "dpo": _dpo, "grpo": _grpo, "lse_only": _lse_only,
              "entropy_only": _entropy_only}


def _grads(h, w, targets, objective, chunk=None, autocast=False):
    """(logp, lse, ent, dh, dw) of the chunked op (chunk given) or of the full-logits reference."""
    hh, ww = h.clone().requires_grad_(), w.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        if chunk is None:
            outs = _full(hh, ww, targets)
        else:
            outs = token_logprobs(hh, ww, targets, chunk_size=chunk, entropy=True)
    objective(*outs, targets).backward()
    return (*outs, hh.grad, ww.grad)


@pytest.mark.parametrize("chunk", [1, 7, 48, 1000])  # every row, not dividing N=48, = N, > N
def test_values_equal_log_softmax_gathered(chunk):
    h, w, targets = _data()
    logp, lse, ent = token_logprobs(h, w, targets, chunk_size=chunk, entropy=True)
    ref = _full(h, w, targets)
    assert all(_close(a, b) for a, b in zip((logp, lse, ent), ref))
    assert logp.dtype == lse.dtype == ent.dtype == torch.float32
    assert (logp[IGNORED] == 0).all() and (lse[IGNORED] == 0).all() and (ent[IGNORED] == 0).all()
    assert token_logprobs(h, w, targets, chunk_size=chunk)[2] is None  # no entropy unless asked
    # shaped like targets
    out = token_logprobs(h.view(B, T, D), w, targets.view(B, T), chunk_size=chunk)
    assert out[0].shape == out[1].shape == (B, T) and _close(out[0].view(-1), ref[0])


@pytest.mark.parametrize("chunk", [1, 7, 1000])
@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_gradients_equal_autograd_through_full_logits(name, chunk):
    h, w, targets = _data()
    got = _grads(h, w, targets, OBJECTIVES[name], chunk)
    ref = _grads(h, w, targets, OBJECTIVES[name])
    for a, b, what in zip(got, ref, ("logp", "lse", "entropy", "dh", "dw")):
        assert _close(a, b), what
    assert got[3][IGNORED].abs().max() == 0  # ignored rows get no gradient
    assert got[3].abs().max() > 0 and got[4].abs().max() > 0


def test_whole_ignored_chunk_and_all_ignored():
    h, w, targets = _data()
    targets[8:16] = -100  # the whole second chunk of 8 rows
    got, ref = _grads(h, w, targets, _grpo, 8), _grads(h, w, targets, _grpo)
    assert all(_close(a, b) for a, b in zip(got, ref)) and got[3][8:16].abs().max() == 0
    targets[:] = -100
    logp, lse, ent = token_logprobs(h, w.requires_grad_(), targets, entropy=True)
    (logp.sum() + lse.sum() + ent.sum()).backward()
    assert not logp.any() and not lse.any() and not ent.any() and w.grad.abs().max() == 0


def test_frozen_inputs_and_no_grad():
    h, w, targets = _data()
    ref = _grads(h, w, targets, _dpo)
    ww = w.clone().requires_grad_()  # only the head weight trains (h frozen)
    logp, lse, ent = token_logprobs(h, ww, targets, chunk_size=7, entropy=True)
    _dpo(logp, lse, ent, targets).backward()
    assert _close(ww.grad, ref[4])
    hh = h.clone().requires_grad_()  # only h (a frozen head)
    _dpo(*token_logprobs(hh, w, targets, chunk_size=7, entropy=True), targets).backward()
    assert _close(hh.grad, ref[3])
    with torch.no_grad():
        logp, _, _ = token_logprobs(h, ww, targets)
    assert not logp.requires_grad and _close(logp, ref[0])


def test_nothing_vocab_sized_is_saved_for_backward():
    """Backward recomputes the logits: autograd holds h, W and per-token vectors, never [N, V]."""
    h, w, targets = _data()
    w = torch.randn(4000, D, requires_grad=True)  # V ≫ D so that an [N, V] tensor would stand out
    targets = targets.clamp(max=3999)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        token_logprobs(h.requires_grad_(), w, targets, chunk_size=16, entropy=True)
    assert saved and max(saved) <= w.numel() and sum(saved) <= 2 * (h.numel() + w.numel())


def test_bf16_autocast_close_and_grads_in_input_dtype():
    h, w, targets = _data()
    got = _grads(h, w, targets, _grpo, 16, autocast=True)
    ref = _grads(h, w, targets, _grpo, autocast=True)
    assert got[0].dtype == torch.float32 and got[3].dtype == got[4].dtype == torch.float32
    for a, b in zip(got, ref):
        assert torch.isfinite(a).all() and (a - b).norm() <= 1e-2 * b.norm() + 1e-6
    # bf16 inputs: float32 outputs, bf16 gradients
    hb, wb = h.bfloat16().requires_grad_(), w.bfloat16().requires_grad_()
    logp, lse, _ = token_logprobs(hb, wb, targets, chunk_size=16)
    assert logp.dtype == torch.float32
    (logp.sum() + lse.sum()).backward()
    assert hb.grad.dtype == wb.grad.dtype == torch.bfloat16


def test_double_backward_is_refused():
    h, w, targets = _data()
    hh = h.requires_grad_()
    logp, lse, ent = token_logprobs(hh, w, targets, entropy=True)
    with pytest.raises(RuntimeError, match="no second derivative"):
        torch.autograd.grad(_grpo(logp, lse, ent, targets), hh, create_graph=True)


def test_bad_arguments():
    h, w, targets = _data()
    with pytest.raises(ValueError, match="chunk_size"):
        token_logprobs(h, w, targets, chunk_size=0)
    with pytest.raises(ValueError, match="rows"):
        token_logprobs(h, w, targets[:-1])
    with pytest.raises(ValueError, match="features"):
        token_logprobs(h[:, :-1], w, targets)
    m = Olmo(ModelConfig(**CFG))
    ids = torch.randint(2, 96, (2, 10))
    with pytest.raises(ValueError, match="not both"):
        m(ids, labels=ids, targets=ids)
    with pytest.raises(ValueError, match="logits_to_keep"):
        m(ids, targets=ids, logits_to_keep=1)


def _model_batch(seed: int = 0):
    torch.manual_seed(seed)
    m = Olmo(ModelConfig(**CFG)).train()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 96, (B, T), generator=g)
    targets = ids.roll(-1, 1)
    targets[:, -1] = -100
    targets[1, :5] = -100  # e.g. a prompt
    doc_ids = torch.zeros_like(ids)
    doc_ids[:, 7:] = 1
    return m, ids, targets, doc_ids


def _model_run(m, ids, targets, doc_ids, chunked: bool, autocast: bool = False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        if chunked:
            out = m(ids, doc_ids=doc_ids, targets=targets, return_entropy=True, loss_chunk=5)
            logp, lse, ent = out["logp"], out["lse"], out["entropy"]
        else:
            logits = m(ids, doc_ids=doc_ids)
            logp, lse, ent = (o.view(B, T) for o in _from_logits(logits.reshape(B * T, -1), targets.view(-1)))
    assert logp.shape == lse.shape == ent.shape == (B, T)
    _grpo(logp.reshape(-1), lse.reshape(-1), ent.reshape(-1), targets.reshape(-1)).backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad(set_to_none=True)
    return (logp.detach(), lse.detach(), ent.detach()), grads


@pytest.mark.parametrize("autocast", [False, True])
def test_whole_model_targets_match_logits_path(autocast):
    m, ids, targets, doc_ids = _model_batch()
    got, g_got = _model_run(m, ids, targets, doc_ids, True, autocast)
    ref, g_ref = _model_run(m, ids, targets, doc_ids, False, autocast)
    rel = 1e-2 if autocast else REL
    for a, b in zip(got, ref):
        assert _close(a, b, rel)
    for name, g in g_ref.items():
        if autocast:
            assert (g_got[name] - g).norm() <= 1e-2 * g.norm() + 1e-6, name
        else:
            assert _close(g_got[name], g), name
    assert set(m(ids, targets=targets)) == {"logp", "lse"}  # entropy only when asked
