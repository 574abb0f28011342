"""The KV cache for incremental decoding: preallocated keys/values per layer, positions per slot.

Used by the model's forward (``Olmo.forward(cache=...)``) and created by its users: the generation
engine (inference/), loglikelihood scoring (eval/lm.py). It builds the per-step attention masks from
slot positions (``DecodeBias`` for one-token steps, consumed by ``attention.attend``).
"""

from __future__ import annotations

import torch

from olmoflow.model.attention import DecodeBias, decode_bias
from olmoflow.model.config import ModelConfig


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
