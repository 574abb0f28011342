"""Token selection for a batch of rows that each carry their own sampling parameters and seed.

Greedy (temperature 0) is ``argmax``. Sampling applies temperature, then top-k, then top-p
(nucleus: the smallest set of most likely tokens whose probability reaches ``top_p``), all in
float32, and draws the token by inverse-CDF with a uniform number taken from the row's own
pre-drawn stream. Every row's choice therefore depends only on its own logits, parameters and
seed, never on which other rows share the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class BatchSampler:
    """Per-row sampling state for one batch; ``reorder`` keeps it aligned with the KV cache rows."""

    def __init__(
        self,
        temperature: Sequence[float],
        top_k: Sequence[int],
        top_p: Sequence[float],
        uniforms: torch.Tensor,
        device: torch.device,
    ):
        """``uniforms`` [B, steps]: row i's uniform numbers in [0, 1), one per generated token."""
        self.temp = torch.tensor(list(temperature), dtype=torch.float32, device=device)
        self.top_k = torch.tensor(list(top_k), dtype=torch.long, device=device)
        self.top_p = torch.tensor(list(top_p), dtype=torch.float32, device=device)
        self.uniforms = uniforms.to(device=device, dtype=torch.float32)
        self._refresh()

    def _refresh(self) -> None:
        self.greedy = self.temp <= 0
        self.filtered = (self.top_k > 0) | (self.top_p < 1.0)
        # Python-side flags decide which code paths run at all (no device sync per step)
        self.all_greedy = bool(self.greedy.all())
        self.any_filtered = bool((self.filtered & ~self.greedy).any())
        self.any_plain = bool((~self.filtered & ~self.greedy).any())
        self.safe_temp = torch.where(self.greedy, torch.ones_like(self.temp), self.temp)[:, None]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep/reorder rows exactly like ``KVCache.reorder``."""
        self.temp, self.top_k, self.top_p = self.temp[index], self.top_k[index], self.top_p[index]
        self.uniforms = self.uniforms[index]
        self._refresh()

    def sample(
        self, logits: torch.Tensor, step: int, want_logprobs: bool = False, top: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]:
        """Tokens [B] for next-token ``logits`` [B, V]; their log-probs when asked; and, when
        ``top`` > 0, the ``top`` most likely tokens of each row as (log-probs [B, top], ids [B, top]),
        most likely first.

        Log-probs are ``log_softmax(logits / temperature)`` (plain ``log_softmax`` for greedy
        rows), before top-k/top-p truncation: the distribution a policy-gradient learner computes.
        """
        logits = logits.float()
        greedy_tok = logits.argmax(dim=-1)
        if self.all_greedy:
            tokens = greedy_tok
        else:
            scaled = logits / self.safe_temp
            u = self.uniforms[:, step]
            tokens = greedy_tok
            if self.any_plain:
                plain = _inverse_cdf(torch.softmax(scaled, dim=-1), u, greedy_tok)
                tokens = torch.where(~self.greedy & ~self.filtered, plain, tokens)
            if self.any_filtered:
                filt = _sample_filtered(scaled, u, self.top_k, self.top_p)
                tokens = torch.where(~self.greedy & self.filtered, filt, tokens)
        logprobs = alternatives = None
        if want_logprobs or top > 0:
            lp = torch.log_softmax(logits / self.safe_temp, dim=-1)
            logprobs = lp.gather(1, tokens[:, None])[:, 0]
            if top > 0:
                alternatives = lp.topk(min(top, lp.shape[-1]), dim=-1, sorted=True)
                alternatives = (alternatives.values, alternatives.indices)
        return tokens, logprobs, alternatives


def _inverse_cdf(probs: torch.Tensor, u: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Index i with cdf[i-1] <= u·total < cdf[i]; zero-probability entries are never chosen."""
    cdf = probs.cumsum(dim=-1)
    x = (u * cdf[:, -1])[:, None]
    idx = torch.searchsorted(cdf, x, right=True)[:, 0].clamp(max=probs.shape[-1] - 1)
    ok = probs.gather(1, idx[:, None])[:, 0] > 0  # guards the (rounding-only) u·total == total case
    return torch.where(ok, idx, fallback)


def _sample_filtered(scaled: torch.Tensor, u: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Temperature-scaled logits -> top-k -> top-p -> inverse-CDF draw, in descending-sorted order."""
    vocab = scaled.shape[-1]
    sorted_logits, order = scaled.sort(dim=-1, descending=True, stable=True)
    ranks = torch.arange(vocab, device=scaled.device)[None, :]
    k = torch.where(top_k > 0, top_k.clamp(max=vocab), torch.full_like(top_k, vocab))[:, None]
    sorted_logits = sorted_logits.masked_fill(ranks >= k, float("-inf"))
    probs = torch.softmax(sorted_logits, dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass of strictly more likely tokens
    keep = (before < top_p[:, None]) | (ranks == 0)
    probs = probs * keep
    j = _inverse_cdf(probs, u, torch.zeros_like(top_k))
    return order.gather(1, j[:, None])[:, 0]
