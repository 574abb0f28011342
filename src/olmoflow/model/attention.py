"""Attention kernels for the OLMo model: one entry point, ``attend``, and the masks it takes.

Three paths compute the same softmax attention (grouped-query heads: head ``h`` reads kv head
``h // (n_heads / n_kv_heads)``):

* plain ``scaled_dot_product_attention`` with a boolean mask or ``is_causal``;
* **blocked sliding window** (training and long prefills without a cache): queries are cut into
  blocks of ``c`` tokens and each block attends only to the ``window + c`` keys that can reach it,
  instead of all T keys under a mask. Work per sliding layer drops from T² to T·(window + c) —
  the layers OLMo 3 has most of (3 in 4);
* **single-token decode** (``DecodeBias``): baddbmm, softmax, bmm, avoiding SDPA's per-call setup,
  which dominates when there is one query per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class BlockedMask:
    """Mask for blocked sliding-window attention over a sequence of ``t`` tokens.

    ``mask`` [B' * nb, 1, c, (prev + 1) * c] (B' = 1 or the batch) says which of the keys gathered
    for a query block each query may attend to; ``prev`` previous blocks are gathered per block.
    """

    mask: torch.Tensor
    t: int
    block: int
    prev: int


def sliding_block_size(window: int, t: int) -> int | None:
    """Query-block size for blocked sliding-window attention, or None when a full mask is cheaper.

    Half the window: each block then reads 1.5 × window keys. Blocking pays only when that is at
    most half the sequence (measured on CPU: 1.8× faster fwd+bwd at T=256, window 64; slower at
    T=128, where the gathers cost more than the skipped keys save).
    """
    c = max(window // 2, 1)
    prev = math.ceil(window / c)
    return c if (prev + 1) * c <= 0.5 * t else None


def blocked_sliding_mask(
    t: int, window: int, block: int, dev, doc_ids: torch.Tensor | None, valid: torch.Tensor | None
) -> BlockedMask:
    """Build the per-block mask: causal, within ``window``, same document, real (non-pad) keys.

    Pad queries attend to every gathered key (their outputs are discarded; this avoids NaN rows),
    matching the full-mask convention of the model.
    """
    prev = math.ceil(window / block)
    nb = math.ceil(t / block)
    kw = (prev + 1) * block
    qpos = torch.arange(nb, device=dev)[:, None] * block + torch.arange(block, device=dev)[None, :]  # [nb, c]
    kpos = (torch.arange(nb, device=dev)[:, None] - prev) * block + torch.arange(kw, device=dev)[None, :]
    q, k = qpos[:, :, None], kpos[:, None, :]
    m = (k >= 0) & (k < t) & (k <= q) & (q - k < window)  # [nb, c, kw]
    if doc_ids is not None or valid is not None:
        qi, ki = qpos.clamp(max=t - 1).reshape(-1), kpos.clamp(0, t - 1).reshape(-1)
        m = m[None]
        if doc_ids is not None:
            dq = doc_ids[:, qi].view(-1, nb, block, 1)
            dk = doc_ids[:, ki].view(-1, nb, 1, kw)
            m = m & (dq == dk)
        if valid is not None:
            vq = valid[:, qi].view(-1, nb, block, 1)
            vk = valid[:, ki].view(-1, nb, 1, kw)
            m = (m & vk) | ~vq
    m = m | (q >= t)  # queries past the end (block padding) see everything; they are cut off
    return BlockedMask(m.reshape(-1, 1, block, kw), t, block, prev)


def _blocked(q, k, v, bm: BlockedMask, gqa: bool) -> torch.Tensor:
    b, h, t, hd = q.shape
    kv = k.shape[1]
    c, prev = bm.block, bm.prev
    nb = math.ceil(t / c)
    pad = nb * c - t
    qb = F.pad(q, (0, 0, 0, pad)).view(b, h, nb, c, hd).transpose(1, 2).reshape(b * nb, h, c, hd)

    def gather(x):  # [B, KV, T, hd] -> [B * nb, KV, (prev + 1) * c, hd]: keys reaching each block
        x = F.pad(x, (0, 0, prev * c, pad)).unfold(2, (prev + 1) * c, c)  # [B, KV, nb, hd, kw]
        return x.permute(0, 2, 1, 4, 3).reshape(b * nb, kv, (prev + 1) * c, hd)

    mask = bm.mask if bm.mask.shape[0] == b * nb else bm.mask.repeat(b, 1, 1, 1)
    y = F.scaled_dot_product_attention(qb, gather(k), gather(v), attn_mask=mask, enable_gqa=gqa)
    return y.view(b, nb, h, c, hd).transpose(1, 2).reshape(b, h, nb * c, hd)[:, :, :t]


@dataclass
class DecodeBias:
    """Mask for one query per row as an additive bias [B * KV, 1, S]: 0 attend, -inf masked."""

    bias: torch.Tensor


def decode_bias(attend_to: torch.Tensor, n_kv: int, dtype: torch.dtype) -> DecodeBias:
    """``DecodeBias`` from a boolean [B, S] (True = attend), built once per step for all layers."""
    b, s = attend_to.shape
    zero = torch.zeros((), dtype=dtype, device=attend_to.device)
    bias = zero.masked_fill(~attend_to, float("-inf"))  # broadcasts to [B, S]
    return DecodeBias(bias[:, None, None, :].expand(b, n_kv, 1, s).reshape(b * n_kv, 1, s))


def _decode(q, k, v, bias: torch.Tensor) -> torch.Tensor:
    """One query per row: q [B, H, 1, hd], k/v [B, KV, S, hd], bias [B * KV, 1, S].

    Query heads sharing a kv head form one [G, hd] matrix, so scores are one batched
    ``bias + scale · q kᵀ`` (baddbmm) and the output one bmm: three kernels for the whole layer.
    """
    b, h, _, hd = q.shape
    kv, s = k.shape[1], k.shape[2]
    if q.dtype != torch.float32:
        # bf16/fp16: baddbmm would round the scores to q's dtype before the softmax (error ~20x
        # SDPA's for peaked attention); SDPA keeps scores and softmax in float32. Same grouping.
        y = F.scaled_dot_product_attention(q.reshape(b, kv, h // kv, hd), k, v, attn_mask=bias.view(b, kv, 1, s))
        return y.view(b, h, 1, hd)
    qg = q.reshape(b * kv, h // kv, hd)
    scores = torch.baddbmm(bias, qg, k.reshape(b * kv, s, hd).transpose(1, 2), alpha=hd**-0.5)
    return torch.bmm(scores.softmax(-1), v.reshape(b * kv, s, hd)).view(b, h, 1, hd)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | BlockedMask | DecodeBias | None
) -> torch.Tensor:
    """Softmax attention of q [B, H, T, hd] over k, v [B, KV, S, hd]; returns [B, H, T, hd].

    mask: None for plain causal (T == S), a boolean mask broadcastable to [B, 1, T, S]
    (True = attend), a ``BlockedMask`` for blocked sliding-window attention, or a ``DecodeBias``
    when T == 1.
    """
    if isinstance(mask, DecodeBias):
        return _decode(q, k, v, mask.bias)
    gqa = k.shape[1] != q.shape[1]
    if isinstance(mask, BlockedMask):
        return _blocked(q, k, v, mask, gqa)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=gqa)
