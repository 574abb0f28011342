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


class SlotKVCache:
    """Per-sequence KV slots for continuous batching: each slot holds one sequence at its own length.

    Slot ``s`` stores position ``p`` of its sequence at index ``p`` of the full-attention layers and
    at ``p % window`` of the sliding-window layers (a ring, so those layers keep only their window).
    A forward runs on any subset of slots, chosen with :meth:`use` (batch row ``j`` = slot
    ``rows[j]``); each row continues from its own length, so sequences admitted at different times
    decode side by side and a finished sequence's slot is reused by :meth:`reset` at once, without
    touching the other rows. Since every index at or below a query's position belongs to the
    current sequence, masks follow from positions alone (stale keys of a slot's previous sequence
    sit above its length and are never attended to).

    Implements the cache protocol ``Olmo.forward`` uses (``next_positions``, ``begin``,
    ``update``, ``end``, ``max_len``), like :class:`KVCache`.
    """

    def __init__(self, cfg: ModelConfig, n_slots: int, max_len: int, device=None, dtype=torch.float32):
        self.cfg, self.n_slots, self.max_len, self.dtype = cfg, n_slots, max_len, dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.window = min(cfg.sliding_window or max_len, max_len)
        self.lengths = [0] * n_slots
        shape = {"full": max_len, "sliding": self.window}
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}
        for i, lt in enumerate(cfg.layer_types):
            s = (n_slots, cfg.n_kv_heads, shape[lt], cfg.head_dim)
            self.k[i] = torch.zeros(s, dtype=dtype, device=self.device)
            self.v[i] = torch.zeros(s, dtype=dtype, device=self.device)
        self.use([])

    # ------------------------------------------------------------------ slot management

    def reset(self, slot: int) -> None:
        """Free a slot for a new sequence (its old keys are masked out by position)."""
        self.lengths[slot] = 0

    def use(self, rows: list[int]) -> None:
        """Select the slots of the next forward: batch row ``j`` reads and writes slot ``rows[j]``."""
        self.rows = list(rows)
        self._rows_t = torch.tensor(self.rows, dtype=torch.long, device=self.device)
        # rows 0..B-1 in order: slot tensors are sliced (views), not gathered
        self._contiguous = self.rows == list(range(len(self.rows)))

    def _select(self, x: torch.Tensor, s: int) -> torch.Tensor:
        x = x[:, :, :s]
        return x[: len(self.rows)] if self._contiguous else x.index_select(0, self._rows_t)

    # ------------------------------------------------------------------ the forward protocol

    def next_positions(self, valid: torch.Tensor | None, t: int) -> torch.Tensor:
        """Positions [B, t] of the next tokens of each selected slot (padding does not advance them)."""
        n = torch.tensor([self.lengths[r] for r in self.rows], dtype=torch.long, device=self.device)[:, None]
        if valid is None:
            return n + torch.arange(t, device=self.device)
        return n + (valid.long().cumsum(1) - 1).clamp(min=0)

    def begin(self, qpos: torch.Tensor, valid: torch.Tensor | None) -> dict[str, torch.Tensor | DecodeBias]:
        """Plan this step's writes and return the per-type masks (``DecodeBias`` for one token per
        row without padding, else boolean [B, 1, T, S])."""
        b, t = qpos.shape
        if b != len(self.rows):
            raise ValueError(f"SlotKVCache: batch of {b} rows but {len(self.rows)} slots selected (use())")
        counts = [t] * b if valid is None else valid.long().sum(1).tolist()
        before = [self.lengths[r] for r in self.rows]
        after = [n + c for n, c in zip(before, counts)]
        if max(after, default=0) > self.max_len:
            raise ValueError(f"KV cache full: a sequence would reach {max(after)} tokens > max_len {self.max_len}")
        self._counts = counts
        w = self.window
        self._s = max(after, default=0)
        if t == 1 and valid is None:
            q = qpos[:, 0]
            # where each row's new key goes, per layer type: (first slot, index) when the rows are
            # slots 0..B-1 at one length (or a single row): a plain slice write, as one shared cache
            # would do; else flat row indices into the [slots * KV * S, hd] view, for one index_copy_
            if b == 1 or (self._contiguous and len(set(before)) == 1):
                self._decode = {"full": (self.rows[0], before[0]), "sliding": (self.rows[0], before[0] % w)}
            else:
                heads = torch.arange(self.cfg.n_kv_heads, device=self.device)[None, :]
                base = self._rows_t[:, None] * self.cfg.n_kv_heads + heads
                self._decode = {"full": (base * self.max_len + q[:, None]).reshape(-1),
                                "sliding": (base * w + (q % w)[:, None]).reshape(-1)}
            kidx = torch.arange(self._s, device=self.device)
            full = kidx[None, :] <= q[:, None]
            ring = self._ring_positions(q + 1)
            return {"full": decode_bias(full, self.cfg.n_kv_heads, self.dtype),
                    "sliding": decode_bias(ring >= 0, self.cfg.n_kv_heads, self.dtype)}
        self._decode = None
        if valid is None:
            valid = torch.ones_like(qpos, dtype=torch.bool)
        src_b, src_t = valid.nonzero(as_tuple=True)
        dest = qpos[src_b, src_t]
        self._full_write = (self._rows_t[src_b], dest, src_b, src_t)
        end = torch.tensor(after, dtype=torch.long, device=self.device)
        keep = dest > end[src_b] - 1 - w  # only each row's last `window` tokens go into the ring
        self._ring_write = (self._rows_t[src_b[keep]], dest[keep] % w, src_b[keep], src_t[keep])
        q = qpos[:, :, None]
        kidx = torch.arange(self._s, device=self.device)[None, None, :]
        pad_q = ~valid[:, :, None]
        full = (kidx <= q) | pad_q
        n0 = torch.tensor(before, dtype=torch.long, device=self.device)
        kpos = torch.cat([self._ring_positions(n0), torch.where(valid, qpos, torch.full_like(qpos, -1))], dim=1)
        kpos = kpos[:, None, :]
        sliding = ((kpos >= 0) & (kpos <= q) & (kpos > q - w)) | pad_q
        return {"full": full[:, None], "sliding": sliding[:, None]}

    def _ring_positions(self, n: torch.Tensor) -> torch.Tensor:
        """[B, window]: the position ring index i holds once a slot has ``n`` tokens (-1: empty)."""
        i = torch.arange(self.window, device=self.device)[None, :]
        last = n[:, None] - 1
        p = last - torch.remainder(last - i, self.window)
        return torch.where(p >= 0, p, torch.full_like(p, -1))

    def update(self, layer: int, layer_type: str, k: torch.Tensor, v: torch.Tensor):
        """Store this step's k/v [B, KV, T, hd] in the selected slots; return what to attend over."""
        kc, vc = self.k[layer], self.v[layer]
        if k.dtype != self.dtype:  # under autocast new keys may be bf16
            k, v = k.to(self.dtype), v.to(self.dtype)
        if self._decode is not None:
            where = self._decode[layer_type]
            b = k.shape[0]
            if isinstance(where, tuple):
                first, idx = where
                kc[first : first + b, :, idx] = k[:, :, 0]
                vc[first : first + b, :, idx] = v[:, :, 0]
            else:
                hd = k.shape[-1]
                kc.view(-1, hd).index_copy_(0, where, k.reshape(-1, hd))
                vc.view(-1, hd).index_copy_(0, where, v.reshape(-1, hd))
            s = self._s if layer_type == "full" else self.window
            if b == 1:
                return kc[self.rows[0] : self.rows[0] + 1, :, :s], vc[self.rows[0] : self.rows[0] + 1, :, :s]
            return self._select(kc, s), self._select(vc, s)
        if layer_type == "full":
            slot, dest, sb, st = self._full_write
            kc[slot, :, dest] = k[sb, :, st]
            vc[slot, :, dest] = v[sb, :, st]
            return self._select(kc, self._s), self._select(vc, self._s)
        k_all = torch.cat([self._select(kc, self.window), k], dim=2)
        v_all = torch.cat([self._select(vc, self.window), v], dim=2)
        slot, dest, sb, st = self._ring_write
        kc[slot, :, dest] = k[sb, :, st]
        vc[slot, :, dest] = v[sb, :, st]
        return k_all, v_all

    def end(self, t: int) -> None:
        for r, c in zip(self.rows, self._counts):
            self.lengths[r] += c
