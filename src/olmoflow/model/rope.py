"""Rotary position embeddings (rotate-half layout) with optional YaRN, computed in float32."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from olmoflow.model.config import YarnConfig


def inv_frequencies(head_dim: int, theta: float, yarn: YarnConfig | None = None) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [head_dim/2] and the cos/sin scale (1.0 without YaRN).

    YaRN keeps high-frequency dimensions (many rotations within the original context) as they are,
    interpolates low-frequency ones by ``factor``, and ramps linearly between the two, with the
    ramp bounds set by ``beta_fast`` / ``beta_slow`` rotations over the original context.
    """
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device="cpu") / head_dim
    pos_freqs = theta**exponents
    inv_freq = 1.0 / pos_freqs
    if yarn is None:
        return inv_freq, 1.0

    def correction_dim(rotations: float) -> float:
        return head_dim * math.log(yarn.original_max_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(yarn.beta_fast), correction_dim(yarn.beta_slow)
    if yarn.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low)).clamp(0, 1)
    keep = 1.0 - ramp  # 1 = extrapolate (keep original frequency), 0 = interpolate
    inv_freq = (inv_freq / yarn.factor) * (1 - keep) + inv_freq * keep
    scale = yarn.attention_factor
    if scale is None:
        scale = 0.1 * math.log(yarn.factor) + 1.0
    return inv_freq, float(scale)


class Rotary:
    """cos/sin for given positions; one instance per distinct (theta, yarn) in the model.

    Values come from a per-device table over positions ``0..n-1`` (grown by doubling), so a forward
    pass costs two lookups instead of recomputing sin and cos — it matters when decoding one token
    per step. Each table entry is computed exactly as it would be for that position alone.
    """

    def __init__(self, head_dim: int, theta: float, yarn: YarnConfig | None = None):
        self.inv_freq, self.scale = inv_frequencies(head_dim, theta, yarn)
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, positions: torch.Tensor, bound: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [B, T] (int, >= 0) -> cos, signed sin [B, T, 1, head_dim] in float32.

        ``bound``: a known upper bound (exclusive) on the positions; without it they are read.

        The sin half that multiplies the first half of the rotated vector is negated in the table,
        so ``apply_rotary`` needs no negation per layer (see there).
        """
        if bound is None:
            bound = int(positions.max()) + 1 if positions.numel() else 1
        cos, sin = self._table(positions.device, bound)
        return F.embedding(positions, cos)[:, :, None, :], F.embedding(positions, sin)[:, :, None, :]

    def _table(self, device: torch.device, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        table = self._tables.get(device)
        if table is None or table[0].shape[0] < n:
            size = max(1 << (n - 1).bit_length(), 256)
            freqs = torch.arange(size, dtype=torch.float32, device=device)[:, None] * self.inv_freq.to(device)
            emb = torch.cat((freqs, freqs), dim=-1)
            sin = emb.sin() * self.scale
            sin[:, : freqs.shape[-1]].neg_()
            table = self._tables[device] = (emb.cos() * self.scale, sin)
        return table


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, H, hd] in float32 (rotate-half layout) and cast back to its dtype.

    ``x·cos + rotate_half(x)·sin`` with ``rotate_half(x) = (-x2, x1)``; the sign lives in the signed
    ``sin`` from ``Rotary``, so this is one swap of halves, one multiply and one fused multiply-add.
    """
    xf = x if x.dtype == torch.float32 else x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    out = torch.addcmul(xf * cos, torch.cat((x2, x1), dim=-1), sin)
    return out if out.dtype == x.dtype else out.to(x.dtype)
