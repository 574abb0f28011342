"""The OLMo 2 / OLMo 3 transformer, readable top to bottom.

Block ("reordered norm"): ``h = x + RMSNorm(attn(x))``, ``out = h + RMSNorm(mlp(h))``. QK-norm over
the full projected q and k before RoPE, SwiGLU MLP, GQA, per-layer full or sliding-window attention,
no biases, untied embedding and head. Norms, RoPE and the loss run in float32. q/k/v and gate/up
are stored stacked (one GEMM each; ``hf.py`` splits them for transformers). Attention kernels live
in ``attention.py``. The file holds no distributed code: FSDP, activation checkpointing and compile
are applied from outside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from olmoflow.model.attention import (
    BlockedMask,
    DecodeBias,
    attend,
    blocked_sliding_mask,
    decode_bias,
    sliding_block_size,
)
from olmoflow.model.config import ModelConfig
from olmoflow.model.rope import Rotary, apply_rotary

#: rows of logits the fused loss materialises at a time (``Olmo.forward(labels=...)``, ``fused_lm_loss``)
LOSS_CHUNK = 1024


class _RMSNormFn(torch.autograd.Function):
    """RMSNorm with an analytic backward, ``dx = r · (g·w − x̂ · mean(g·w · x̂))``, ``dw = Σ g · x̂``
    (x̂ = x·r): about half the kernels of autograd through ``F.rms_norm``, whose CPU backward is a
    long chain of small ops."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        r = x.pow(2).mean(-1, keepdim=True).add_(eps).rsqrt_()
        xhat = x * r
        ctx.save_for_backward(xhat, r, w)
        return xhat * w

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        xhat, r, w = ctx.saved_tensors
        gw = g * w
        dot = (gw * xhat).mean(-1, keepdim=True)
        dx = torch.addcmul(gw, xhat, dot, value=-1).mul_(r)
        dw = (g * xhat).reshape(-1, g.shape[-1]).sum(0) if ctx.needs_input_grad[1] else None
        return dx, dw, None


class RMSNorm(nn.Module):
    """Weight-only RMSNorm computed in float32.

    Without autograd (evaluation, decoding) it uses ``x / hypot(‖x‖, √(d·eps)) · (√d · w)``, the
    same quantity (up to float rounding) in five small kernels with no Python-scalar operands: when
    one token per row is decoded the norms are bound by per-kernel dispatch, not arithmetic
    (measured ~2× faster per call on CPU).
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self._consts: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cast = x.dtype != torch.float32 or self.weight.dtype != torch.float32  # casts cost per call
        xf, w = (x.float(), self.weight.float()) if cast else (x, self.weight)
        if torch.is_grad_enabled() and (xf.requires_grad or w.requires_grad):
            out = _RMSNormFn.apply(xf, w, self.eps)
        else:
            c, sqrt_d = self._constants(x.device)
            out = xf / torch.hypot(torch.linalg.vector_norm(xf, dim=-1, keepdim=True), c) * (w * sqrt_d)
        return out.to(x.dtype) if cast else out

    def _constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        consts = self._consts.get(device)
        if consts is None:
            d = self.weight.shape[0]
            consts = self._consts[device] = (
                torch.tensor(math.sqrt(d * self.eps), device=device),
                torch.tensor(math.sqrt(d), device=device),
            )
        return consts


class Linear(nn.Linear):
    """Bias-free linear layer; on CPU without autograd, 3-8 rows are computed as ``(W xᵀ)ᵀ``
    (for the usual [out, in] weight layout; not when the engine has made it input-major).

    The same product as ``F.linear`` up to float rounding (equal tokens in the decode tests), but
    MKL's kernel for that orientation is faster at a decoding batch's handful of rows (measured:
    10-25% per decode step at 4 and 8 rows on an AMD EPYC; see docs/benchmarks.md).
    """

    def __init__(self, d_in: int, d_out: int):
        super().__init__(d_in, d_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[-1]
        rows = x.numel() // k
        w = self.weight
        if 2 < rows <= 8 and x.device.type == "cpu" and not torch.is_grad_enabled() and w.is_contiguous():
            return (w @ x.reshape(rows, k).T).T.reshape(*x.shape[:-1], -1)
        return F.linear(x, w)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_type: str):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.layer_type = layer_type
        self.split = (self.n_heads * self.hd, self.n_kv * self.hd, self.n_kv * self.hd)
        self.qkv = Linear(cfg.d_model, sum(self.split))  # q, k, v stacked: one GEMM
        self.o = Linear(self.n_heads * self.hd, cfg.d_model)
        self.q_norm = RMSNorm(self.n_heads * self.hd, cfg.rms_eps)
        self.k_norm = RMSNorm(self.n_kv * self.hd, cfg.rms_eps)

    def forward(self, x: torch.Tensor, ctx: _AttnContext, layer_idx: int) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(self.split, dim=-1)
        q = self.q_norm(q).view(b, t, self.n_heads, self.hd)
        k = self.k_norm(k).view(b, t, self.n_kv, self.hd)
        v = v.reshape(b, t, self.n_kv, self.hd)
        cos, sin = ctx.rope[self.layer_type]
        qk = apply_rotary(torch.cat((q, k), dim=2), cos, sin)  # one rotation for q and k heads
        q, k = qk[:, :, : self.n_heads].transpose(1, 2), qk[:, :, self.n_heads :].transpose(1, 2)
        v = v.transpose(1, 2)
        if ctx.cache is not None:
            k, v = ctx.cache.update(layer_idx, self.layer_type, k, v)
        y = attend(q, k, v, ctx.masks[self.layer_type])
        return self.o(y.transpose(1, 2).reshape(b, t, self.n_heads * self.hd))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), with gate and up stacked in one weight (one GEMM)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_up = Linear(cfg.d_model, 2 * cfg.mlp_hidden)
        self.down = Linear(cfg.mlp_hidden, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.attn = Attention(cfg, cfg.layer_types[layer_idx])
        self.attn_norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.mlp = MLP(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.rms_eps)

    def forward(self, x: torch.Tensor, ctx: _AttnContext) -> torch.Tensor:
        h = x + self.attn_norm(self.attn(x, ctx, self.layer_idx))
        return h + self.mlp_norm(self.mlp(h))


class _AttnContext:
    """What every layer needs for one forward: cos/sin and masks per layer type, and the cache."""

    def __init__(self, rope: dict, masks: dict, cache: KVCache | None):
        self.rope, self.masks, self.cache = rope, masks, cache


class Olmo(nn.Module):
    """Decoder-only OLMo 2 / OLMo 3 language model; ``forward`` returns logits [B, T, vocab]."""

    def __init__(self, cfg: ModelConfig, init: bool = True):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size)
        self.rotary = {
            "full": Rotary(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling),
            "sliding": Rotary(cfg.head_dim, cfg.rope_theta_sliding or cfg.rope_theta, cfg.rope_scaling_sliding),
        }
        if init:
            self.init_weights()

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Truncated normal (std 0.02, cut at ±3σ) for every linear, the embedding and the head; norms 1."""
        std = self.cfg.init_std
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.trunc_normal_(m.weight, 0.0, std, -3 * std, 3 * std, generator=generator)
            elif isinstance(m, RMSNorm):
                m.weight.fill_(1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        doc_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        logits_to_keep: int = 0,
        labels: torch.Tensor | None = None,
        z_loss: float = 1e-5,
        ignore_index: int = -100,
        reduction: str = "mean",
        loss_chunk: int = LOSS_CHUNK,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits for ``input_ids`` [B, T] (only the last ``logits_to_keep`` positions when > 0); or,
        given ``labels``, the training loss without logits.

        doc_ids: [B, T] document index per token for packed sequences: attention stays within a
            document and positions restart at 0 for each document.
        attention_mask: [B, T] 1 for real tokens, 0 for padding (e.g. left-padded batches).
        cache: a KVCache for incremental decoding; positions continue from what it holds.
        labels: [B, T] next-token targets (``ignore_index`` = no loss). Then the return value is
            ``(loss, {"ce", "z", "n_tokens"})`` exactly as ``lm_loss(self(input_ids), labels, z_loss,
            ignore_index, reduction)`` would give, computed by :func:`fused_lm_loss` in chunks of
            ``loss_chunk`` rows, so the [B·T, vocab] logits never exist. It lives in ``forward`` (not
            a separate method) so that FSDP's hooks have the head weight unsharded when it runs.
        """
        if labels is not None and logits_to_keep > 0:
            raise ValueError("logits_to_keep cannot be combined with labels (the loss needs every position)")
        b, t = input_ids.shape
        dev = input_ids.device
        valid = attention_mask.bool() if attention_mask is not None else None
        bound = None  # an upper bound on the positions, when known without reading them (no device sync)
        if cache is not None:
            if doc_ids is not None:
                raise ValueError("doc_ids are not supported with a KV cache")
            if position_ids is None:
                position_ids, bound = cache.next_positions(valid, t), cache.max_len
            masks = cache.begin(position_ids, valid)
        else:
            if position_ids is None:
                position_ids, bound = _default_positions(b, t, dev, doc_ids, valid), t
            masks = _masks(self.cfg, t, dev, doc_ids, valid)
        types = set(self.cfg.layer_types)
        rope = {lt: self.rotary[lt](position_ids, bound) for lt in types}
        ctx = _AttnContext(rope, masks, cache)
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x, ctx)
        if cache is not None:
            cache.end(t)
        if logits_to_keep > 0:
            x = x[:, -logits_to_keep:]
        if labels is not None:
            return fused_lm_loss(self.norm(x), self.lm_head.weight, labels, z_loss=z_loss,
                                 ignore_index=ignore_index, reduction=reduction, chunk_size=loss_chunk)
        return self.lm_head(self.norm(x))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _default_positions(b, t, dev, doc_ids, valid) -> torch.Tensor:
    if doc_ids is not None:
        idx = torch.arange(t, device=dev).expand(b, t)
        starts = torch.ones_like(doc_ids, dtype=torch.bool)
        starts[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
        start_idx = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
        return idx - start_idx
    if valid is not None:
        return (valid.long().cumsum(1) - 1).clamp(min=0)
    return torch.arange(t, device=dev).expand(b, t)


def _masks(cfg: ModelConfig, t: int, dev, doc_ids, valid) -> dict[str, torch.Tensor | BlockedMask | None]:
    """Attention masks per layer type (see ``attention.attend``): None means plain causal, a
    boolean tensor [B or 1, 1, T, T] (True = attend), or a ``BlockedMask`` for sliding layers of a
    sequence long enough for blocked sliding-window attention to pay."""
    idx = torch.arange(t, device=dev)
    causal = idx[None, :] <= idx[:, None]
    window = cfg.sliding_window or t
    out: dict[str, torch.Tensor | BlockedMask | None] = {}
    for lt in set(cfg.layer_types):
        if lt == "sliding" and window < t and (block := sliding_block_size(window, t)) is not None:
            out[lt] = blocked_sliding_mask(t, window, block, dev, doc_ids, valid)
            continue
        m = causal & (idx[:, None] - idx[None, :] < window) if lt == "sliding" and window < t else None
        if doc_ids is None and valid is None:
            out[lt] = m
            continue
        m = (causal if m is None else m)[None]
        if doc_ids is not None:
            m = m & (doc_ids[:, :, None] == doc_ids[:, None, :])
        if valid is not None:
            m = (m & valid[:, None, :]) | ~valid[:, :, None]  # pad queries see everything (no NaN)
        out[lt] = m[:, None]
    return out


class KVCache:
    """Preallocated keys/values for incremental decoding.

    Full-attention layers keep every position; sliding-window layers keep a ring of ``window``
    slots, so their memory stays bounded however long the generation runs. Each slot remembers its
    token position (-1 = empty or padding) and masks are built from positions, so left-padded
    batches of different prompt lengths decode exactly like unpadded single prompts.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        self.cfg, self.b, self.max_len, self.dtype = cfg, batch_size, max_len, dtype
        self.window = min(cfg.sliding_window or max_len, max_len)
        self.n = 0  # slots written so far (the same for every row)
        self._next = torch.zeros(batch_size, dtype=torch.long, device=device)
        shape = {"full": max_len, "sliding": self.window}
        self.pos = {lt: torch.full((batch_size, shape[lt]), -1, dtype=torch.long, device=device) for lt in shape}
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}
        for i, lt in enumerate(cfg.layer_types):
            s = (batch_size, cfg.n_kv_heads, shape[lt], cfg.head_dim)
            self.k[i] = torch.zeros(s, dtype=dtype, device=device)
            self.v[i] = torch.zeros(s, dtype=dtype, device=device)
        self._slots = torch.zeros(0, dtype=torch.long, device=device)  # ring slots of a multi-token step
        self._slot: int | None = None  # ring slot of a one-token step

    def next_positions(self, valid: torch.Tensor | None, t: int) -> torch.Tensor:
        """Positions [B, t] of the next tokens (padding, valid False, does not advance them)."""
        if valid is None:
            return self._next[:, None] if t == 1 else self._next[:, None] + torch.arange(t, device=self._next.device)
        return self._next[:, None] + (valid.long().cumsum(1) - 1).clamp(min=0)

    def begin(self, qpos: torch.Tensor, valid: torch.Tensor | None) -> dict[str, torch.Tensor | DecodeBias]:
        """Record the new tokens' positions; return per-type masks: boolean [B, 1, T, S], or a
        ``DecodeBias`` when one token per row is added (decoding). ``valid`` None: no padding."""
        t = qpos.shape[1]
        if self.n + t > self.max_len:
            raise ValueError(f"KV cache full: {self.n} + {t} tokens > max_len {self.max_len}")
        ring = self.pos["sliding"]
        self._slot = self.n % self.window if t == 1 else None
        if t == 1 and valid is None:
            # decode without padding: every written slot is causal and the ring holds exactly the
            # window, so the masks are just "slot holds a real token"
            self.pos["full"][:, self.n] = qpos[:, 0]
            ring[:, self._slot] = qpos[:, 0]
            self._next = self._next + 1
            occupied = {"full": self.pos["full"][:, : self.n + 1] >= 0, "sliding": ring >= 0}
            return {lt: decode_bias(m, self.cfg.n_kv_heads, self.dtype) for lt, m in occupied.items()}
        if valid is None:
            valid = torch.ones_like(qpos, dtype=torch.bool)
        newpos = torch.where(valid, qpos, torch.full_like(qpos, -1))
        self.pos["full"][:, self.n : self.n + t] = newpos
        masks = {}
        q = qpos[:, :, None]
        kfull = self.pos["full"][:, None, : self.n + t]
        masks["full"] = ((kfull >= 0) & (kfull <= q)) | ~valid[:, :, None]
        if t == 1:  # write first, attend over the ring alone (no copy of the window)
            ring[:, self._slot] = newpos[:, 0]
            kslide = ring[:, None, :]
        else:
            self._slots, m = self._ring_slots(t)
            kslide = torch.cat([ring, newpos], dim=1)[:, None, :]
            ring.index_copy_(1, self._slots, newpos[:, t - m :])
        masks["sliding"] = ((kslide >= 0) & (kslide <= q) & (kslide > q - self.window)) | ~valid[:, :, None]
        self._next = self._next + valid.long().sum(1)
        if t == 1:
            return {lt: decode_bias(m[:, 0], self.cfg.n_kv_heads, self.dtype) for lt, m in masks.items()}
        return {k: v[:, None] for k, v in masks.items()}

    def _ring_slots(self, t: int) -> tuple[torch.Tensor, int]:
        m = min(t, self.window)
        slots = (self.n + t - m + torch.arange(m, device=self._next.device)) % self.window
        return slots, m

    def update(self, layer: int, layer_type: str, k: torch.Tensor, v: torch.Tensor):
        """Store this step's k/v [B, KV, T, hd]; return the keys/values to attend over."""
        t = k.shape[2]
        if layer_type == "full":
            self.k[layer][:, :, self.n : self.n + t] = k
            self.v[layer][:, :, self.n : self.n + t] = v
            return self.k[layer][:, :, : self.n + t], self.v[layer][:, :, : self.n + t]
        if t == 1:
            self.k[layer][:, :, self._slot] = k[:, :, 0]
            self.v[layer][:, :, self._slot] = v[:, :, 0]
            return self.k[layer], self.v[layer]
        m = self._slots.numel()
        k_all = torch.cat([self.k[layer], k], dim=2)
        v_all = torch.cat([self.v[layer], v], dim=2)
        # .to: under autocast the new keys are bf16 while the cache keeps the model's dtype
        self.k[layer].index_copy_(2, self._slots, k[:, :, t - m :].to(self.dtype))
        self.v[layer].index_copy_(2, self._slots, v[:, :, t - m :].to(self.dtype))
        return k_all, v_all

    def end(self, t: int) -> None:
        self.n += t

    def reorder(self, index: torch.Tensor) -> None:
        """Keep only/reorder batch rows (e.g. drop finished sequences)."""
        self._next = self._next[index]
        for lt in self.pos:
            self.pos[lt] = self.pos[lt][index]
        for i in self.k:
            self.k[i] = self.k[i][index]
            self.v[i] = self.v[i][index]
        self.b = int(index.numel())


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
    """Cross-entropy + z_loss · logsumexp², in float32, over tokens whose label != ignore_index.

    reduction "mean" averages over valid tokens; "sum" returns sums (for token-mean across
    micro-batches, divide by the global token count yourself).
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
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


class _FusedLinearCrossEntropyZLoss(torch.autograd.Function):
    """Sums over valid rows of cross-entropy and logsumexp² of ``h Wᵀ``, and their gradients, one
    chunk of rows at a time: only [chunk, V] logits ever exist (float32, whatever h and W are).

    The gradient is computed in ``forward``, right after each chunk's loss, from
    d/dlogits = softmax · (1 + 2·z_loss·lse) − onehot (valid rows only), so ``backward`` only
    scales the stored dh [N, d] and dW [V, d] by the incoming gradient (in place: it can run once).
    dW is accumulated over chunks in float32. Returns ``(ce_sum + z_loss·z_sum, ce_sum, z_sum)``;
    only the first is differentiable.
    """

    @staticmethod
    def forward(ctx, h, w, labels, valid, z_loss: float, chunk_size: int, with_grad: bool):
        need_h, need_w = with_grad and ctx.needs_input_grad[0], with_grad and ctx.needs_input_grad[1]
        ce = torch.zeros((), dtype=torch.float32, device=h.device)
        z = torch.zeros_like(ce)
        dh = torch.empty_like(h) if need_h else None
        dw = torch.zeros(w.shape, dtype=torch.float32, device=w.device) if need_w else None
        with torch.autocast(h.device.type, enabled=False):  # dtypes are chosen by fused_lm_loss
            for s in range(0, h.shape[0], chunk_size):
                rows = slice(s, s + chunk_size)
                _loss_chunk(h[rows], w, labels[rows], valid[rows], z_loss, ce, z,
                            None if dh is None else dh[rows], dw)
        ctx.grads = (dh, None if dw is None else dw.to(w.dtype))
        ctx.mark_non_differentiable(ce, z)
        return ce + z_loss * z, ce, z

    @staticmethod
    def backward(ctx, g, _g_ce, _g_z):
        if torch.is_grad_enabled():  # create_graph=True: the stored gradients are constants
            raise RuntimeError("the fused LM loss has no second derivative (create_graph=True); "
                               "use the logits path (lm_loss, or loss_impl: logits in the trainer)")
        if ctx.grads is None:
            raise RuntimeError("the fused LM loss frees its stored gradients: backward can run only once")
        dh, dw = ctx.grads
        ctx.grads = None
        return (None if dh is None else dh.mul_(g), None if dw is None else dw.mul_(g),
                None, None, None, None, None)


def _loss_chunk(h, w, labels, valid, z_loss: float, ce, z, dh, dw) -> None:
    """One chunk of ``_FusedLinearCrossEntropyZLoss``: adds its ce and lse² sums to ``ce``, ``z``;
    writes its dh rows into ``dh`` and adds its dW to ``dw`` (each when not None).

    The float32 logits are the only [chunk, V] buffer: exp(logits − max) and then the gradient
    overwrite them in place. A function of its own so that the buffer is freed before the next
    chunk allocates its own."""
    logits = (h @ w.T).float()
    idx = labels.clamp(min=0)[:, None]
    target = logits.gather(1, idx)[:, 0]
    row_max = logits.amax(-1)
    e = logits.sub_(row_max[:, None]).exp_()
    sum_e = e.sum(-1)
    lse = sum_e.log().add_(row_max)
    vf = valid.float()
    ce += ((lse - target) * vf).sum()
    z += (lse.pow(2) * vf).sum()
    if dh is None and dw is None:
        return
    # softmax · (1 + 2·z_loss·lse) − onehot, on valid rows only
    grad = e.mul_(((1 + 2 * z_loss * lse) * vf / sum_e)[:, None])
    grad = grad.scatter_add_(1, idx, -vf[:, None]).to(w.dtype)
    if dh is not None:
        torch.mm(grad, w, out=dh)
    if dw is not None:
        if dw.dtype == grad.dtype:
            dw.addmm_(grad.T, h)
        else:  # low-precision GEMM, float32 accumulation over chunks
            dw += (grad.T @ h).float()


def fused_lm_loss(
    h: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    z_loss: float = 1e-5,
    ignore_index: int = -100,
    reduction: str = "mean",
    chunk_size: int = LOSS_CHUNK,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``lm_loss(h @ weight.T, labels, ...)`` without materialising the logits: the LM head, the
    float32 cross-entropy + z_loss · logsumexp² and their gradients run ``chunk_size`` rows at a time.

    h: [..., d] final normed hidden states; weight: [V, d] head weight; labels: [...]. Under
    autocast the head's GEMMs use the autocast dtype (as ``lm_head`` + ``lm_loss`` do), otherwise
    the inputs' dtype; softmax and the sums are float32 and gradients come back in the inputs'
    dtypes. The gradients are computed during this call (the backward pass only scales them), so
    peak memory is one [chunk_size, V] float32 buffer plus a float32 dW, instead of about three
    [N, V] buffers. Returns
    ``(loss, {"ce", "z", "n_tokens"})`` like :func:`lm_loss`; under ``torch.no_grad`` no gradient
    work is done.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dev = h.device.type
    dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
             else torch.promote_types(h.dtype, weight.dtype))
    h, weight = h.reshape(-1, h.shape[-1]).to(dtype), weight.to(dtype)
    labels = labels.reshape(-1)
    valid = labels != ignore_index
    with_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    loss, ce, z = _FusedLinearCrossEntropyZLoss.apply(h, weight, labels, valid, float(z_loss), int(chunk_size),
                                                      with_grad)
    n = valid.sum()
    if reduction == "mean":
        denom = n.clamp(min=1)
        loss, ce, z = loss / denom, ce / denom, z / denom
    return loss, {"ce": ce.detach(), "z": z.detach(), "n_tokens": n.detach()}
