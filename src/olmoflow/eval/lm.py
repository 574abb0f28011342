"""The harness's view of a model: the three lm-evaluation-harness request types.

``HarnessLM`` wraps any torch module whose ``forward(input_ids)`` returns logits ``[B, T, V]``
(``olmoflow.model.Olmo``; a transformers model also works, its ``.logits`` is used) plus a
tokenizer with ``encode``/``decode``.

- ``loglikelihood``: sum of log-probs of a continuation given a context. Tokenization follows
  lm-eval exactly (trailing context spaces move into the continuation, the pair is encoded whole
  and split at the context's length; an empty context conditions on the EOS token), so per-item
  scores agree with lm-eval's ``HFLM`` on the same HF directory.
- ``loglikelihood_rolling``: the log-likelihood of a whole document, conditioned only on EOS,
  scored in windows of the model's context (lm-eval's rolling windows) — each document
  separately, never packed with another.
- ``generate_until``: greedy or sampled continuation that stops at any stop string.

Results do not depend on the batch size, bit for bit: requests are sorted by length and padded
on the right (a causal model never attends to the right, so padding cannot leak into real
positions) to a width that depends only on the request's own length (a multiple of
``pad_multiple``), since CPU attention kernels round differently for different sequence
lengths; a batch only holds requests of one width. Every score is read from its own row and
stored in request order.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from olmoflow.errors import OlmoflowError

__all__ = ["HarnessLM", "rolling_windows"]

ProgressFn = Callable[[int], None]


def rolling_windows(tokens: list[int], prefix: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """Split ``tokens`` into ``(input, targets)`` windows; lm-eval's ``get_rolling_token_windows``
    with ``context_len=1``: the first window conditions on ``prefix``, later ones on as much
    preceding text as fits, and every token is predicted exactly once.
    """
    out: list[tuple[list[int], list[int]]] = []
    if not tokens:
        return out
    first = min(max_len, len(tokens))
    out.append(([prefix] + tokens[: first - 1], tokens[:first]))
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, max_len)
        end = done + n
        out.append((tokens[max(0, end - max_len - 1): end - 1], tokens[end - n: end]))
        done = end
    return out


#: fewest positions per row the LM head computes (see loglikelihood_tokens)
_MIN_KEEP = 16


class HarnessLM:
    """Batched scoring and generation over one model and tokenizer (fp32 on CPU by default)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        batch_size: int = 8,
        max_length: int | None = None,
        eos_id: int | None = None,
        device: str | torch.device = "cpu",
        pad_multiple: int = 32,
        share_prefix: bool = False,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device)
        self.pad_multiple = max(1, int(pad_multiple))
        # run a context once for all its continuations (KV cache); olmoflow models only
        self.share_prefix = bool(share_prefix) and hasattr(model, "cfg") and hasattr(model, "blocks")
        try:  # olmoflow models can skip the LM head on positions nobody reads
            self._can_trim = "logits_to_keep" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            self._can_trim = False
        cfg = getattr(model, "cfg", None) or getattr(model, "config", None)
        self.max_length = int(
            max_length
            or getattr(cfg, "max_seq_len", None)
            or getattr(cfg, "max_position_embeddings", None)
            or 2048
        )
        if eos_id is None:
            eos_id = getattr(tokenizer, "eos_id", None)
        if eos_id is None:
            eos_id = getattr(cfg, "eos_token_id", None)
        if eos_id is None:
            raise ValueError("cannot tell the EOS token id; pass eos_id=")
        self.eos_id = int(eos_id)

    # -- tokenization (lm-eval compatible) ---------------------------------------------------
    def tok_encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added."""
        enc = self.tokenizer.encode(text) if hasattr(self.tokenizer, "eos_id") else self.tokenizer.encode(
            text, add_special_tokens=False
        )
        return list(getattr(enc, "ids", enc))

    def tok_decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Split tokens of ``context + continuation`` the way lm-eval does."""
        if not context:
            return [self.eos_id], self.tok_encode(continuation)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        return ctx, whole[len(ctx):]

    # -- model call -------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, keep: int = 0) -> torch.Tensor:
        """fp32 logits [B, T, V] for a right-padded batch; with ``keep`` > 0 (and a model that
        supports it) only the last ``keep`` positions [B, keep, V]."""
        kw = {"logits_to_keep": keep} if keep and self._can_trim else {}
        out = self.model(input_ids.to(self.device), **kw)
        out = getattr(out, "logits", out)
        out = out.float()
        return out[:, -keep:] if keep else out

    def _width(self, n: int) -> int:
        """Padded width of a row of ``n`` tokens: a function of ``n`` alone, never of its batch."""
        m = self.pad_multiple
        return max(n, min(-(-n // m) * m, self.max_length))

    def _batches(self, rows: list[tuple[int, list[int], int]]) -> list[list[tuple[int, list[int], int]]]:
        """Longest first; a batch only holds rows of the same padded width."""
        rows = sorted(rows, key=lambda r: (-self._width(len(r[1])), -len(r[1]), r[0]))
        out: list[list[tuple[int, list[int], int]]] = []
        for r in rows:
            if out and len(out[-1]) < self.batch_size and self._width(len(out[-1][0][1])) == self._width(len(r[1])):
                out[-1].append(r)
            else:
                out.append([r])
        return out

    # -- loglikelihood ----------------------------------------------------------------------
    def loglikelihood(
        self, requests: Sequence[tuple[str, str]], progress: ProgressFn | None = None
    ) -> list[tuple[float, bool]]:
        """``(sum log p(continuation | context), continuation is the greedy decode)`` per request."""
        pairs = [self.encode_pair(c, x) for c, x in requests]
        return self.loglikelihood_tokens(pairs, progress)

    def loglikelihood_tokens(
        self, pairs: Sequence[tuple[list[int], list[int]]], progress: ProgressFn | None = None
    ) -> list[tuple[float, bool]]:
        """Score pre-tokenized ``(context_ids, continuation_ids)`` pairs, batched by length.

        Requests whose model input is identical (e.g. the choices `` A``/`` B``/… of one MC item,
        or PMI's ``Answer:`` + the same answer) share one row: one forward serves all of them.
        """
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        results: list[tuple[float, bool]] = [(0.0, True)] * len(pairs)
        shared: set[int] = set()
        if self.share_prefix:
            shared = self._shared_prefix(pairs, results, progress)
        for i, (ctx, cont) in enumerate(pairs):
            if not cont or i in shared:
                continue
            inp = ((list(ctx) or [self.eos_id]) + list(cont))[-(self.max_length + 1):][:-1]
            groups.setdefault(tuple(inp), []).append((i, len(cont)))
        rows = [(users[0][0], list(inp), len(users)) for inp, users in groups.items()]
        for batch in self._batches(rows):
            width = self._width(len(batch[0][1]))
            ids = torch.full((len(batch), width), self.eos_id, dtype=torch.long)
            for b, (_, inp, _) in enumerate(batch):
                ids[b, : len(inp)] = torch.tensor(inp, dtype=torch.long)
            # the LM head only runs on positions from the earliest scored one to the end
            first = min(len(inp) - min(n, len(inp)) for _, inp, _ in batch for _, n in groups[tuple(inp)])
            # at least _MIN_KEEP positions per row: below that, the few-row GEMM kernels of the head
            # round differently for different batch sizes (scores must not depend on the batch)
            keep = max(width - first, min(width, _MIN_KEEP))
            logits = self.logits(ids, keep=keep)
            off = width - keep
            done = 0
            for b, (_, inp, _) in enumerate(batch):
                for i, n_cont in groups[tuple(inp)]:
                    n_cont = min(n_cont, len(inp))  # truncated context: score what fits
                    target = torch.tensor(list(pairs[i][1])[-n_cont:], dtype=torch.long, device=logits.device)
                    # log-softmax only over the positions scored (not the whole B x T x V block)
                    lp = F.log_softmax(logits[b, len(inp) - n_cont - off: len(inp) - off], dim=-1)
                    tok_lp = lp.gather(-1, target[:, None]).squeeze(-1)
                    results[i] = (float(tok_lp.sum()), bool((lp.argmax(-1) == target).all()))
                    done += 1
            if progress:
                progress(done)
        return results

    @torch.no_grad()
    def _shared_prefix(
        self, pairs: Sequence[tuple[list[int], list[int]]], results: list[tuple[float, bool]],
        progress: ProgressFn | None,
    ) -> set[int]:
        """Score requests that share a context (the choices of one item) with one context
        forward per item: contexts are prefilled into a KV cache (left-padded), the cache rows
        are replicated per continuation, and the continuations run on top. Fills ``results``
        and returns the request indices it handled. Agrees with the plain path to ~1e-6 but,
        unlike it, is not bit-identical across batch sizes."""
        from olmoflow.model import KVCache

        by_ctx: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, cont) in enumerate(pairs):
            if ctx and cont and len(ctx) + len(cont) <= self.max_length:
                by_ctx.setdefault(tuple(ctx), []).append(i)
        items = sorted(((c, ids) for c, ids in by_ctx.items() if len(ids) > 1), key=lambda x: (-len(x[0]), x[1][0]))
        done: set[int] = set()
        for start in range(0, len(items), self.batch_size):
            chunk = items[start: start + self.batch_size]
            wc = max(len(c) for c, _ in chunk)
            conts = [(b, i) for b, (_, ids) in enumerate(chunk) for i in ids]
            wk = max(len(pairs[i][1]) - 1 for _, i in conts)
            ids = torch.full((len(chunk), wc), self.eos_id, dtype=torch.long)
            valid = torch.zeros(len(chunk), wc, dtype=torch.bool)
            for b, (c, _) in enumerate(chunk):
                ids[b, wc - len(c):] = torch.tensor(c)
                valid[b, wc - len(c):] = True
            param = next(self.model.parameters())
            cache = KVCache(self.model.cfg, len(chunk), wc + max(wk, 1), device=self.device, dtype=param.dtype)
            kw = {"logits_to_keep": 1} if self._can_trim else {}
            last = self.model(ids.to(self.device), attention_mask=valid.to(self.device), cache=cache, **kw)[:, -1].float()
            cont_logits = None
            if wk > 0:
                cache.reorder(torch.tensor([b for b, _ in conts], device=self.device))
                kid = torch.full((len(conts), wk), self.eos_id, dtype=torch.long)
                kvalid = torch.zeros(len(conts), wk, dtype=torch.bool)
                for n, (_, i) in enumerate(conts):
                    toks = list(pairs[i][1])[:-1]
                    if toks:
                        kid[n, : len(toks)] = torch.tensor(toks)
                        kvalid[n, : len(toks)] = True
                kvalid[:, 0] = True  # keep every row non-empty (single-token rows ignore it)
                cont_logits = self.model(kid.to(self.device), attention_mask=kvalid.to(self.device), cache=cache).float()
            for n, (b, i) in enumerate(conts):
                cont = list(pairs[i][1])
                rows = [last[b]] + ([cont_logits[n, : len(cont) - 1]] if len(cont) > 1 else [])
                lp = F.log_softmax(torch.cat([r.reshape(-1, last.shape[-1]) for r in rows]), dim=-1)
                target = torch.tensor(cont, dtype=torch.long, device=lp.device)
                tok_lp = lp.gather(-1, target[:, None]).squeeze(-1)
                results[i] = (float(tok_lp.sum()), bool((lp.argmax(-1) == target).all()))
                done.add(i)
            if progress:
                progress(len(conts))
        return done

    def loglikelihood_rolling(
        self, texts: Sequence[str], progress: ProgressFn | None = None
    ) -> list[tuple[float, int]]:
        """``(log-likelihood, n_tokens)`` of each whole text, conditioned only on EOS."""
        pairs: list[tuple[list[int], list[int]]] = []
        owner: list[int] = []
        n_tokens: list[int] = []
        for i, text in enumerate(texts):
            toks = self.tok_encode(text)
            n_tokens.append(len(toks))
            for inp, tgt in rolling_windows(toks, self.eos_id, self.max_length):
                ctx = inp[: len(inp) - (len(tgt) - 1)]  # disjoint context part
                pairs.append((ctx, tgt))
                owner.append(i)
        scores = self.loglikelihood_tokens(pairs, _windows_to_texts(progress, len(pairs), len(texts)))
        totals = [0.0] * len(texts)
        for i, (lp, _) in zip(owner, scores):
            totals[i] += lp
        return list(zip(totals, n_tokens))

    # -- generation -------------------------------------------------------------------------
    def generate_until(
        self,
        requests: Sequence[tuple[str, dict[str, Any]]],
        progress: ProgressFn | None = None,
    ) -> list[str]:
        """Continue each prompt until a stop string, EOS or ``max_gen_toks``.

        Generation kwargs (lm-eval names): ``until`` (list of stop strings), ``max_gen_toks``,
        ``temperature`` (0 = greedy), ``top_p``, ``seed``; and ``stop_tokens`` (special tokens that
        end generation besides EOS, e.g. ``<|im_end|>`` for a chat turn). The text is cut before the
        first stop.
        olmoflow models go through the shared engine (``olmoflow.inference``: KV cache, batched);
        other modules use a plain full-recompute loop.
        """
        prompts: list[tuple[list[int], dict[str, Any]]] = []
        for prompt, kw in requests:
            max_new = int(kw.get("max_gen_toks", 256))
            ids = self.tok_encode(prompt) or [self.eos_id]
            # left-truncate the prompt, keeping at least half the context for it; generation
            # then gets whatever room is left (never past the model's context)
            keep = max(self.max_length - max_new, self.max_length // 2)
            ids = ids[-keep:]
            prompts.append((ids, {**kw, "max_gen_toks": max(1, min(max_new, self.max_length - len(ids)))}))
        if not (hasattr(self.model, "cfg") and hasattr(self.model, "blocks")):
            raise OlmoflowError("generation needs an olmoflow model (olmoflow.model.load); "
                                f"got {type(self.model).__name__}")
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start: start + self.batch_size]
            texts = self._engine_generate(chunk)
            out.extend(_cut(t, list(kw.get("until") or [])) for t, (_, kw) in zip(texts, chunk))
            if progress:
                progress(len(chunk))
        return out

    def _token_ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of special tokens given by text (``stop_tokens`` of a chat turn), where the vocabulary has them."""
        out = []
        for t in tokens:
            ids = self.tok_encode(t)
            if len(ids) == 1:
                out.append(ids[0])
        return out

    def _engine_generate(self, chunk: list[tuple[list[int], dict[str, Any]]]) -> list[str]:
        from olmoflow.inference import Engine, GenerationRequest

        reqs = [
            GenerationRequest(
                prompt=ids, max_new_tokens=int(kw.get("max_gen_toks", 256)),
                temperature=float(kw.get("temperature", 0.0)), top_p=float(kw.get("top_p", 1.0)),
                stop_token_ids=[self.eos_id, *self._token_ids(kw.get("stop_tokens") or [])],
                stop_strings=[s for s in kw.get("until") or [] if s],
                seed=int(kw.get("seed", 0)),
            )
            for ids, kw in chunk
        ]
        engine = Engine(self.model, tokenizer=self.tokenizer, max_batch_size=self.batch_size)
        return [r.text if r.text is not None else self.tok_decode(r.token_ids) for r in engine.generate(reqs)]

def _cut(text: str, until: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest stop string."""
    end = len(text)
    for s in until:
        if s:
            j = text.find(s)
            if j != -1:
                end = min(end, j)
    return text[:end]


def _windows_to_texts(progress: ProgressFn | None, n_windows: int, n_texts: int) -> ProgressFn | None:
    """Report rolling-window progress in texts: a long text is several windows, but progress bars
    count one request per text, so a bar never runs past its total."""
    if progress is None:
        return None
    done = [0, 0]  # windows done, texts reported

    def advance(n: int) -> None:
        done[0] += n
        texts = done[0] * n_texts // max(n_windows, 1)
        if texts > done[1]:
            progress(texts - done[1])
            done[1] = texts

    return advance
