"""The OLMo 2 / OLMo 3 transformer, readable top to bottom.

Block ("reordered norm"): ``h = x + RMSNorm(attn(x))``, ``out = h + RMSNorm(mlp(h))``. QK-norm over
the full projected q and k before RoPE, SwiGLU MLP, GQA, per-layer full or sliding-window attention,
no biases, untied embedding and head. Norms, RoPE and the loss run in float32. q/k/v and gate/up
are stored stacked (one GEMM each; ``hf.py`` splits them for transformers). Attention kernels live
in ``attention.py``, the chunked LM head (loss, per-token log-probs) in ``lm_head.py``, the decoding
cache in ``kv_cache.py``. The file holds no distributed code: FSDP, activation checkpointing and
compile are applied from outside.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from olmoflow.model.attention import BlockedMask, attend, blocked_sliding_mask, sliding_block_size
from olmoflow.model.config import ModelConfig
from olmoflow.model.kv_cache import KVCache
from olmoflow.model.lm_head import LOSS_CHUNK, lm_head_loss, token_logprobs
from olmoflow.model.rope import Rotary, apply_rotary


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
    """Decoder-only OLMo 2 / OLMo 3 language model; ``forward`` returns logits [B, T, vocab], or the
    LM loss (``labels=``), or per-token log-probs (``targets=``)."""

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
        token_weights: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        return_entropy: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]] | dict[str, torch.Tensor]:
        """Logits for ``input_ids`` [B, T] (only the last ``logits_to_keep`` positions when > 0); or,
        given ``labels``, the training loss; or, given ``targets``, per-token log-probs; the last two
        without ever materialising the [B·T, vocab] logits (``lm_head.py``, ``loss_chunk`` rows at a
        time). They live in ``forward`` (not separate methods) so that FSDP's hooks have the head
        weight unsharded when they run.

        doc_ids: [B, T] document index per token for packed sequences: attention stays within a
            document and positions restart at 0 for each document.
        attention_mask: [B, T] 1 for real tokens, 0 for padding (e.g. left-padded batches).
        cache: a KVCache for incremental decoding; positions continue from what it holds.
        labels: [B, T] next-token targets (``ignore_index`` = no loss). Returns ``(loss, {"ce", "z",
            "n_tokens"})`` exactly as ``lm_loss(self(input_ids), labels, z_loss, ignore_index,
            reduction)`` would give (:func:`lm_head_loss`; its gradients are computed during
            forward). ``token_weights`` [B, T] (constants) weight each token's CE and z-loss.
        targets: [B, T] token ids to score (``ignore_index`` = skip: 0 there). Returns
            ``{"logp", "lse"}`` (plus ``"entropy"`` when ``return_entropy``), float32 [B, T]: the log-prob
            of each target, the logsumexp of the logits and the entropy of the next-token
            distribution, differentiable for any downstream objective (:func:`token_logprobs`,
            which recomputes the head in backward): DPO's sequence sums, GRPO's ratios, SFT.
        """
        if labels is not None and targets is not None:
            raise ValueError("pass labels (the LM loss) or targets (per-token log-probs), not both")
        if (labels is not None or targets is not None) and logits_to_keep > 0:
            raise ValueError("logits_to_keep cannot be combined with labels or targets (they need every position)")
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
            return lm_head_loss(self.norm(x), self.lm_head.weight, labels, token_weights=token_weights, z_loss=z_loss,
                                ignore_index=ignore_index, reduction=reduction, chunk_size=loss_chunk)
        if targets is not None:
            logp, lse, ent = token_logprobs(self.norm(x), self.lm_head.weight, targets, chunk_size=loss_chunk,
                                            entropy=return_entropy, ignore_index=ignore_index)
            return {"logp": logp, "lse": lse} | ({"entropy": ent} if return_entropy else {})
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
