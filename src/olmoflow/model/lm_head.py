"""The LM head without [tokens, vocab] logits: per-token log-probs, and the LM loss over them.

One chunked op over the head ``logits = h Wᵀ`` (h [N, d] final normed hidden states, W [V, d]),
``chunk_size`` rows at a time, so at most one or two [chunk, V] float32 buffers exist:

* :func:`token_logprobs` — per-token ``logp_i = log softmax(z_i)[t_i]``, ``lse_i = logsumexp(z_i)``
  and optionally the entropy ``H_i``, differentiable for *any* downstream function of them (SFT's
  masked mean, DPO's per-sequence sums, GRPO's per-token ratios and clipping). Nothing [N, V] is
  saved: backward recomputes each chunk's logits (one more head GEMM) and applies
  ``dlogp_i/dz = onehot(t_i) − p_i``, ``dlse_i/dz = p_i``, ``dH_i/dz = −p_i ⊙ (log p_i + H_i)``.
* :func:`lm_head_loss` — CE + z-loss, ``Σ w_i (lse_i − z_i[t_i]) + z_loss · Σ w_i lse_i²``, the same
  op reduced with weights known at forward time, so its gradient is computed in forward right after
  each chunk's softmax (no recompute; backward only scales the stored dh, dW). This is what
  ``Olmo.forward(labels=...)`` and the trainer run.

Both schedules share one per-chunk kernel (``_softmax_chunk``: head GEMM, float32 softmax
statistics) and one gradient step (``_head_grads``: dh = dz W, dW += dzᵀ h). Under autocast the GEMMs
run in the autocast dtype (as ``lm_head`` does); softmax and sums are float32; dW accumulates in
float32 over chunks; gradients come back in the inputs' dtypes. Neither has a second derivative:
``create_graph=True`` raises. :func:`lm_loss` over materialised logits is the reference.
"""

from __future__ import annotations

import torch

#: rows of logits materialised at a time (``Olmo.forward(labels=... / targets=...)``)
LOSS_CHUNK = 1024

_NO_DOUBLE_BACKWARD = ("the chunked LM head has no second derivative (create_graph=True); use the logits "
                       "path (lm_loss over model(ids), or loss_impl: logits in the trainer)")


class _CrossEntropyZLoss(torch.autograd.Function):
    """Sums over valid rows of cross-entropy and logsumexp², from one log_softmax, with an analytic
    backward: d/dlogits = softmax · (g_ce + 2·g_z·lse) − onehot · g_ce. About 2-3× faster on CPU than
    autograd through cross_entropy + a separate logsumexp, and it keeps one [N, V] buffer."""

    @staticmethod
    def forward(ctx, logits, labels, valid):
        lsm = torch.log_softmax(logits, dim=-1)
        idx = labels.clamp(min=0)[:, None]
        target_lsm = lsm.gather(1, idx)[:, 0]
        lse = logits.gather(1, idx)[:, 0] - target_lsm
        vf = valid.to(logits.dtype)
        ctx.save_for_backward(lsm, idx, lse, vf)
        return (-target_lsm * vf).sum(), (lse.pow(2) * vf).sum()

    @staticmethod
    def backward(ctx, g_ce, g_z):
        lsm, idx, lse, vf = ctx.saved_tensors
        coef = (g_ce + 2 * g_z * lse) * vf
        grad = lsm.exp().mul_(coef[:, None])
        grad.scatter_add_(1, idx, (-g_ce * vf)[:, None])
        return grad, None, None


def lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    z_loss: float = 1e-5,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy + z_loss · logsumexp², in float32, over tokens whose label != ignore_index: the
    reference over materialised logits (:func:`lm_head_loss` computes the same from h and W).

    reduction "mean" averages over valid tokens; "sum" returns sums (for token-mean across
    micro-batches, divide by the global token count yourself).
    """
    _check_reduction(reduction)
    logits = logits.float().reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    valid = labels != ignore_index
    ce, z = _CrossEntropyZLoss.apply(logits, labels, valid)
    n = valid.sum()
    if reduction == "mean":
        denom = n.clamp(min=1)
        ce, z = ce / denom, z / denom
    loss = ce + z_loss * z
    return loss, {"ce": ce.detach(), "z": z.detach(), "n_tokens": n.detach()}


# ---------------------------------------------------------------------------- the per-chunk kernel


def _softmax_chunk(h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, entropy: bool = False):
    """Head GEMM and float32 softmax statistics of one chunk of rows.

    Returns ``(e, sum_e, lse, target_logit, H)``: ``e = exp(z − rowmax)`` [c, V] (the logits buffer,
    overwritten in place; a second buffer only when the entropy is asked for), ``sum_e = Σ e``,
    ``lse = logsumexp(z)``, ``z[t]`` and the entropy ``H = log Σe − Σ e·(z − max) / Σe`` (or None).
    ``targets`` must be valid indices (ignored rows clamped by the caller)."""
    z = (h @ w.T).float()
    target = z.gather(1, targets[:, None])[:, 0]
    row_max = z.amax(-1)
    s = z.sub_(row_max[:, None])
    ent = None
    if entropy:
        e = s.exp()
        sum_e = e.sum(-1)
        es = torch.bmm(e[:, None, :], s[:, :, None]).view(-1)  # Σ e·s per row, no [c, V] temporary
        ent = sum_e.log() - es / sum_e
    else:
        e = s.exp_()
        sum_e = e.sum(-1)
    lse = sum_e.log().add_(row_max)
    return e, sum_e, lse, target, ent


def _head_grads(dz: torch.Tensor, h: torch.Tensor, w: torch.Tensor, dh: torch.Tensor | None,
                dw: torch.Tensor | None) -> None:
    """Backpropagate a chunk's d/dlogits ``dz`` [c, V] through ``z = h Wᵀ``: write its rows of
    ``dh`` and add to the float32 ``dw`` (each when not None). ``dz`` is cast to W's dtype first (the
    autocast dtype under autocast), so the GEMMs run where the forward ones did."""
    dz = dz.to(w.dtype)
    if dh is not None:
        torch.mm(dz, w, out=dh)
    if dw is not None:
        if dw.dtype == dz.dtype:
            dw.addmm_(dz.T, h)
        else:  # low-precision GEMM, float32 accumulation over chunks
            dw += (dz.T @ h).float()


def _prepare(h: torch.Tensor, weight: torch.Tensor, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """h as [N, d] and W, both in the GEMM dtype: the autocast dtype under autocast (as ``lm_head``),
    else the promoted input dtype. The casts are differentiable, so gradients return in input dtypes."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if h.shape[-1] != weight.shape[-1]:
        raise ValueError(f"h has {h.shape[-1]} features but the head weight {tuple(weight.shape)} expects {weight.shape[-1]}")
    dev = h.device.type
    dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
             else torch.promote_types(h.dtype, weight.dtype))
    return h.reshape(-1, h.shape[-1]).to(dtype), weight.to(dtype)


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


# ---------------------------------------------------------------------------- per-token log-probs


class _TokenLogprobs(torch.autograd.Function):
    """(logp, lse[, H]) per row of ``h Wᵀ`` for rows whose target is valid; backward recomputes each
    chunk's logits. Saves h, W, targets, lse and H only."""

    @staticmethod
    def forward(ctx, h, w, targets, chunk_size: int, entropy: bool):
        n = h.shape[0]
        logp = torch.empty(n, dtype=torch.float32, device=h.device)
        lse = torch.empty_like(logp)
        ent = torch.empty_like(logp) if entropy else None
        with torch.autocast(h.device.type, enabled=False):  # dtypes are chosen by _prepare
            for s in range(0, n, chunk_size):
                rows = slice(s, s + chunk_size)
                _, _, lse_c, target, ent_c = _softmax_chunk(h[rows], w, targets[rows], entropy)
                lse[rows] = lse_c
                logp[rows] = target - lse_c
                if entropy:
                    ent[rows] = ent_c
        ctx.chunk_size = chunk_size
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(h, w, targets, lse, *(() if ent is None else (ent,)))
        return (logp, lse) if ent is None else (logp, lse, ent)

    @staticmethod
    def backward(ctx, g_logp, g_lse, g_ent=None):
        if torch.is_grad_enabled():  # create_graph=True: this backward is not itself differentiable
            raise RuntimeError(_NO_DOUBLE_BACKWARD)
        h, w, targets, lse, *ent = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[:2]
        if (g_logp is None and g_lse is None and g_ent is None) or not (need_h or need_w):
            return None, None, None, None, None
        zero = torch.zeros_like(lse)
        g_logp = zero if g_logp is None else g_logp.float()
        # p's coefficient in dz: g_lse − g_logp − g_H·H (the −g_H·log p part is added per chunk)
        coef = (zero if g_lse is None else g_lse.float()) - g_logp
        if g_ent is not None:
            g_ent = g_ent.float()
            coef = coef - g_ent * ent[0]
        dh = torch.empty_like(h) if need_h else None
        dw = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if need_w else None
        with torch.autocast(h.device.type, enabled=False):
            for s in range(0, h.shape[0], ctx.chunk_size):
                rows = slice(s, s + ctx.chunk_size)
                _logprobs_grad_chunk(h[rows], w, targets[rows], lse[rows], coef[rows], g_logp[rows],
                                     None if g_ent is None else g_ent[rows], None if dh is None else dh[rows], dw)
        return dh, None if dw is None else dw.to(w.dtype), None, None, None


def _logprobs_grad_chunk(h, w, targets, lse, coef, g_logp, g_ent, dh, dw) -> None:
    """One chunk of ``_TokenLogprobs.backward``: recompute log p = z − lse, form
    dz = p · (coef − g_H · log p) + g_logp · onehot(t), and backpropagate it (a function of its own so
    that the chunk's buffers are freed before the next chunk allocates its own)."""
    logp = (h @ w.T).float().sub_(lse[:, None])
    if g_ent is None:
        dz = logp.exp_().mul_(coef[:, None])
    else:
        p = logp.exp()
        dz = logp.mul_(-g_ent[:, None]).add_(coef[:, None]).mul_(p)
    dz.scatter_add_(1, targets[:, None], g_logp[:, None])
    _head_grads(dz, h, w, dh, dw)


def token_logprobs(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int = LOSS_CHUNK,
    entropy: bool = False,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-token ``log softmax(h Wᵀ)[target]``, ``logsumexp(h Wᵀ)`` and (``entropy=True``) the
    entropy of each row's softmax, without materialising the [N, V] logits.

    h: [..., d] final normed hidden states; weight: [V, d] head weight; targets: [...] token ids
    (``ignore_index`` = not needed: that position gets 0 in every output and no gradient, and its
    row of the head is not computed). Returns float32 tensors shaped like ``targets``; the entropy
    is None unless asked for. Differentiable w.r.t. h and weight for any function of the outputs:
    backward recomputes the logits ``chunk_size`` rows at a time (one more head GEMM than
    :func:`lm_head_loss`, which needs no recompute). Peak memory: one [chunk, V] float32 buffer
    (two when the entropy is computed) and a float32 dW.
    """
    h, weight = _prepare(h, weight, chunk_size)
    if h.shape[0] != targets.numel():
        raise ValueError(f"h has {h.shape[0]} rows but targets has {targets.numel()}")
    where = (targets != ignore_index).nonzero(as_tuple=True)  # the positions to score
    rows = torch.arange(targets.numel(), device=targets.device).view(targets.shape)[where]
    outs = _TokenLogprobs.apply(h[rows], weight, targets[where].long(), int(chunk_size), bool(entropy))
    # scattered into fresh tensors shaped like targets (ignored positions 0); not views, which FSDP2's
    # hooks on forward outputs would not follow through in-place ops
    logp, lse, *ent = (o.new_zeros(targets.shape).index_put(where, o) for o in outs)
    return logp, lse, (ent[0] if ent else None)


# ---------------------------------------------------------------------------- the LM loss


class _LMHeadLoss(torch.autograd.Function):
    """Weighted sums of cross-entropy and logsumexp² of ``h Wᵀ`` and, during forward, their gradient
    d/dz = softmax · w_i (1 + 2·z_loss·lse_i) − w_i · onehot(t_i), chunk by chunk. ``backward`` only
    scales the stored dh [N, d] and dW [V, d] by the incoming gradient (in place: it can run once).
    Returns ``(ce + z_loss·z, ce, z)``; only the first is differentiable."""

    @staticmethod
    def forward(ctx, h, w, targets, weights, z_loss: float, chunk_size: int, with_grad: bool):
        need_h, need_w = with_grad and ctx.needs_input_grad[0], with_grad and ctx.needs_input_grad[1]
        ce = torch.zeros((), dtype=torch.float32, device=h.device)
        z = torch.zeros_like(ce)
        dh = torch.empty_like(h) if need_h else None
        dw = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if need_w else None
        with torch.autocast(h.device.type, enabled=False):  # dtypes are chosen by _prepare
            for s in range(0, h.shape[0], chunk_size):
                rows = slice(s, s + chunk_size)
                _loss_chunk(h[rows], w, targets[rows], weights[rows], z_loss, ce, z,
                            None if dh is None else dh[rows], dw)
        ctx.grads = (dh, None if dw is None else dw.to(w.dtype))
        ctx.mark_non_differentiable(ce, z)
        return ce + z_loss * z, ce, z

    @staticmethod
    def backward(ctx, g, _g_ce, _g_z):
        if torch.is_grad_enabled():  # create_graph=True: the stored gradients are constants
            raise RuntimeError(_NO_DOUBLE_BACKWARD)
        if ctx.grads is None:
            raise RuntimeError("the fused LM loss frees its stored gradients: backward can run only once")
        dh, dw = ctx.grads
        ctx.grads = None
        return (None if dh is None else dh.mul_(g), None if dw is None else dw.mul_(g),
                None, None, None, None, None)


def _loss_chunk(h, w, targets, weights, z_loss: float, ce, z, dh, dw) -> None:
    """One chunk of ``_LMHeadLoss``: adds its weighted ce and lse² sums to ``ce``, ``z``; writes its
    dh rows and adds its dW (each when not None). A function of its own so that the chunk's [c, V]
    buffer is freed before the next chunk allocates its own."""
    idx = targets.clamp(min=0)
    e, sum_e, lse, target, _ = _softmax_chunk(h, w, idx)
    ce += ((lse - target) * weights).sum()
    z += (lse.pow(2) * weights).sum()
    if dh is None and dw is None:
        return
    grad = e.mul_(((1 + 2 * z_loss * lse) * weights / sum_e)[:, None])  # softmax · (1 + 2·z_loss·lse) · w
    _head_grads(grad.scatter_add_(1, idx[:, None], -weights[:, None]), h, w, dh, dw)


def lm_head_loss(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    token_weights: torch.Tensor | None = None,
    z_loss: float = 1e-5,
    ignore_index: int = -100,
    reduction: str = "mean",
    chunk_size: int = LOSS_CHUNK,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Σ_i w_i·(lse_i − logit_i[t_i]) + z_loss · Σ_i w_i·lse_i²`` over the head ``h Wᵀ`` without
    materialising the logits; with the default weights (1 on every token whose target is not
    ``ignore_index``) equal to ``lm_loss(h @ weight.T, targets, ...)`` within float32 rounding.

    h: [..., d]; weight: [V, d]; targets: [...]; token_weights: [...] constants (no gradient flows
    to them; e.g. SFT's mask / normalizer), multiplied by the valid mask. reduction "mean" divides
    by the number of valid tokens, "sum" does not. The gradients w.r.t. h and weight are computed
    during this call, ``chunk_size`` rows at a time (the backward pass only scales them), so peak
    memory is one [chunk, V] float32 buffer plus a float32 dW. Returns ``(loss, {"ce", "z",
    "n_tokens"})`` like :func:`lm_loss` (ce and z weighted); under ``torch.no_grad`` no gradient
    work is done.
    """
    _check_reduction(reduction)
    h, weight = _prepare(h, weight, chunk_size)
    targets = targets.reshape(-1).long()
    valid = targets != ignore_index
    weights = valid.float()
    if token_weights is not None:
        if token_weights.requires_grad and torch.is_grad_enabled():
            raise ValueError("lm_head_loss treats token_weights as constants; for weights that need a "
                             "gradient, reduce the outputs of token_logprobs instead")
        if token_weights.numel() != targets.numel():
            raise ValueError(f"token_weights has {token_weights.numel()} elements, targets {targets.numel()}")
        weights = weights * token_weights.reshape(-1).float()
    with_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    loss, ce, z = _LMHeadLoss.apply(h, weight, targets, weights, float(z_loss), int(chunk_size), with_grad)
    n = valid.sum()
    if reduction == "mean":
        denom = n.clamp(min=1)
        loss, ce, z = loss / denom, ce / denom, z / denom
    return loss, {"ce": ce.detach(), "z": z.detach(), "n_tokens": n.detach()}
