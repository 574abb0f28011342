"""The generation engine: batched, KV-cached decoding with per-request sampling and stops.

One engine serves evaluation, RLVR rollouts and the server. Requests are processed in waves of up
to ``max_batch_size``: prompts are left-padded to a common length, prefilled once into a
``KVCache``, then decoded one token per step for all unfinished rows. A row that finishes is
dropped from the batch (``KVCache.reorder``), so long tails do not pay for finished rows.

Results do not depend on batch composition: each request samples from its own seeded stream of
uniform numbers, and the model masks padding exactly, so a request alone and the same request
inside a batch produce the same tokens (up to float rounding of the logits).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from olmoflow.errors import OlmoflowError
from olmoflow.inference.detok import DecodeFn, TextStream, decode_fn
from olmoflow.inference.sampling import BatchSampler
from olmoflow.model.kv_cache import KVCache

#: stream_callback(request_index, new_token_id, text_delta)
StreamCallback = Callable[[int, int, str], None]
FinishReason = Literal["stop", "length"]


@dataclass
class GenerationRequest:
    """One prompt and how to continue it.

    temperature 0 means greedy; top_k 0 and top_p 1.0 disable those filters. ``seed`` seeds this
    request's own random stream (None: drawn from torch's global RNG). ``stop_strings`` need the
    engine to have a tokenizer. ``logprobs`` asks for the log-probability of every generated token.
    """

    prompt: Sequence[int]
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: Sequence[int] = ()
    stop_strings: Sequence[str] = ()
    seed: int | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        # accept tensors / numpy arrays / tuples; keep plain Python ints inside
        self.prompt = self.prompt.tolist() if hasattr(self.prompt, "tolist") else [int(t) for t in self.prompt]
        if isinstance(self.stop_strings, str):
            self.stop_strings = [self.stop_strings]

    def validate(self, vocab_size: int) -> None:
        if len(self.prompt) == 0:
            raise OlmoflowError("generation request has an empty prompt")
        if self.max_new_tokens < 1:
            raise OlmoflowError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise OlmoflowError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise OlmoflowError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise OlmoflowError(f"top_k must be >= 0, got {self.top_k}")
        bad = [t for t in self.prompt if not 0 <= t < vocab_size]
        if bad:
            raise OlmoflowError(f"prompt token id {bad[0]} is outside the model vocabulary (0..{vocab_size - 1})")


@dataclass
class GenerationResult:
    """What a request produced.

    ``token_ids`` are the generated tokens, including the stop token that ended generation (when
    one did); ``text`` (with a tokenizer) excludes stop tokens and is cut before a stop string.
    ``stop`` names what stopped it: the stop token id or the stop string.
    """

    token_ids: list[int]
    finish_reason: FinishReason
    n_prompt_tokens: int
    text: str | None = None
    logprobs: list[float] | None = None
    stop: int | str | None = None


@dataclass
class _Row:
    """Book-keeping for one request while it is in the batch."""

    index: int
    req: GenerationRequest
    stop_ids: frozenset[int]
    stream: TextStream | None
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    result: GenerationResult | None = None


def derive_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for request ``index`` of a call seeded with ``seed``."""
    digest = hashlib.sha256(f"olmoflow-generate:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Engine:
    """Batched generation with a KV cache for an ``olmoflow.model.Olmo``.

    ``tokenizer`` (an olmoflow ``Tok``, a ``tokenizers.Tokenizer`` or anything with ``decode``)
    enables ``text`` in results, stop strings and text deltas in streaming.
    ``drop_finished``: drop finished rows from the batch (True) or keep decoding them masked.
    ``prefill_chunk``: prompts are prefilled in chunks of this many tokens (bounds the attention
    mask / score memory of long prompts); only the last position's logits are computed.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer=None,
        max_batch_size: int = 32,
        device: str | torch.device | None = None,
        drop_finished: bool = True,
        prefill_chunk: int = 512,
    ):
        if max_batch_size < 1:
            raise OlmoflowError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model = model.eval()
        param = next(model.parameters())
        self.device = torch.device(device) if device is not None else param.device
        if param.device != self.device:
            self.model = self.model.to(self.device)
        self.dtype = param.dtype
        self.cfg = model.cfg
        self.tokenizer = tokenizer
        self.decode: DecodeFn | None = decode_fn(tokenizer)
        self.max_batch_size = max_batch_size
        self.drop_finished = drop_finished
        self.prefill_chunk = prefill_chunk

    def generate(
        self, requests: Sequence[GenerationRequest], stream_callback: StreamCallback | None = None
    ) -> list[GenerationResult]:
        """Generate for every request; results come back in request order."""
        for r in requests:
            r.validate(self.cfg.vocab_size)
            if r.stop_strings and self.decode is None:
                raise OlmoflowError("stop_strings need a tokenizer: pass tokenizer= to the Engine")
        seeds = [r.seed if r.seed is not None else int(torch.randint(0, 2**62, ()).item()) for r in requests]
        # longest prompts first: waves of similar lengths waste less compute on padding
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt))
        results: list[GenerationResult | None] = [None] * len(requests)
        rows_per_step = min(len(requests), self.max_batch_size)
        layout = _input_major_weights(self.model) if rows_per_step <= _INPUT_MAJOR_MAX_ROWS else nullcontext()
        with layout, torch.inference_mode():
            for start in range(0, len(order), self.max_batch_size):
                wave = order[start : start + self.max_batch_size]
                for i, res in zip(wave, self._generate_wave(requests, wave, seeds, stream_callback)):
                    results[i] = res
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ one wave

    def _generate_wave(self, requests, wave: list[int], seeds: list[int], callback) -> list[GenerationResult]:
        dev = self.device
        need_text = self.decode is not None and (callback is not None or any(requests[i].stop_strings for i in wave))
        rows = [
            _Row(
                index=i,
                req=requests[i],
                stop_ids=frozenset(int(t) for t in requests[i].stop_token_ids),
                stream=TextStream(self.decode, requests[i].stop_strings) if need_text else None,
            )
            for i in wave
        ]
        b = len(rows)
        t = max(len(r.req.prompt) for r in rows)
        steps = max(r.req.max_new_tokens for r in rows)
        ids = torch.full((b, t), self.cfg.pad_token_id, dtype=torch.long)
        mask = torch.zeros((b, t), dtype=torch.long)
        for j, r in enumerate(rows):
            p = torch.tensor(r.req.prompt, dtype=torch.long)
            ids[j, t - len(p) :] = p
            mask[j, t - len(p) :] = 1
        ids, mask = ids.to(dev), mask.to(dev)

        uniforms = torch.zeros(b, steps)
        for j, r in enumerate(rows):
            if r.req.temperature > 0:
                g = torch.Generator().manual_seed(seeds[r.index])
                uniforms[j, : r.req.max_new_tokens] = torch.rand(r.req.max_new_tokens, generator=g)
        sampler = BatchSampler(
            [r.req.temperature for r in rows], [r.req.top_k for r in rows], [r.req.top_p for r in rows], uniforms, dev
        )
        want_lp = any(r.req.logprobs for r in rows)

        cache = KVCache(self.cfg, b, t + steps, device=dev, dtype=self.dtype)
        logits = self._prefill(ids, mask, cache)
        active = list(range(b))  # active[k] = position in `rows` of cache row k
        for step in range(steps):
            tokens, lps = sampler.sample(logits, step, want_lp)
            tok_list = tokens.tolist()
            lp_list = lps.tolist() if lps is not None else None
            keep: list[int] = []
            for k, j in enumerate(active):
                row = rows[j]
                if row.result is not None:  # finished earlier, kept in the batch (drop_finished=False)
                    continue
                self._advance(row, tok_list[k], lp_list[k] if lp_list else None, callback)
                if row.result is None:
                    keep.append(k)
            if not keep:
                break
            if self.drop_finished and len(keep) < len(active):
                index = torch.tensor(keep, device=dev)
                cache.reorder(index)
                sampler.reorder(index)
                tokens = tokens[index]
                active = [active[k] for k in keep]
            logits = self.model(tokens[:, None], cache=cache, logits_to_keep=1)[:, -1]  # no padding
        return [r.result for r in rows]  # type: ignore[misc]

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Run the padded prompts through the model in chunks; next-token logits [B, V] in float32."""
        t = ids.shape[1]
        chunk = self.prefill_chunk if self.prefill_chunk > 0 else t
        logits = None
        for s in range(0, t, chunk):
            x, m = ids[:, s : s + chunk], mask[:, s : s + chunk]
            logits = self.model(x, attention_mask=m, cache=cache, logits_to_keep=1)[:, -1]
        return logits.float()

    def _advance(self, row: _Row, token: int, logprob: float | None, callback) -> None:
        """Record one generated token for a row; finish the row on a stop or at its length limit."""
        req = row.req
        row.tokens.append(token)
        if req.logprobs:
            row.logprobs.append(logprob)
        finish: FinishReason | None = None
        stop: int | str | None = None
        delta = ""
        if token in row.stop_ids:
            finish, stop = "stop", token
        elif row.stream is not None:
            delta = row.stream.add(token)
            if row.stream.stopped_by is not None:
                finish, stop = "stop", row.stream.stopped_by
        if finish is None and len(row.tokens) >= req.max_new_tokens:
            finish = "length"
        if finish is not None:
            if row.stream is not None:
                delta += row.stream.finish()
            row.result = self._result(row, finish, stop)
        if callback is not None:
            callback(row.index, token, delta)

    def _result(self, row: _Row, finish: FinishReason, stop: int | str | None) -> GenerationResult:
        text = None
        if row.stream is not None:
            text = row.stream.text
        elif self.decode is not None:
            text = self.decode(row.tokens[:-1] if finish == "stop" else row.tokens)
        return GenerationResult(
            token_ids=list(row.tokens),
            finish_reason=finish,
            n_prompt_tokens=len(row.req.prompt),
            text=text,
            logprobs=list(row.logprobs) if row.req.logprobs else None,
            stop=stop,
        )


#: most rows per decoding step for which input-major weights pay (CPU, measured: 1 row ~10-15% per
#: step faster, 8 rows ~8% slower; see docs/benchmarks.md)
_INPUT_MAJOR_MAX_ROWS = 2


@contextmanager
def _input_major_weights(model: nn.Module) -> Iterator[None]:
    """On CPU, store every linear weight input-major ([in, out] memory, same values) while generating.

    ``F.linear`` then runs as ``x @ W`` on contiguous columns, which MKL's matrix-vector kernels read
    about twice as fast as the default [out, in] rows when one or two tokens are decoded per step
    (see docs/benchmarks.md). The original layout is restored on exit, so training code sharing the
    model (e.g. RLVR) never sees the difference.
    """
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    weights = [w for w in weights if w.device.type == "cpu" and w.is_contiguous()]
    # not inference mode (even inside a caller's): the copies must stay usable by autograd
    with torch.inference_mode(False), torch.no_grad():
        for w in weights:
            w.data = w.data.t().contiguous().t()
    try:
        yield
    finally:
        with torch.inference_mode(False), torch.no_grad():
            for w in weights:
                w.data = w.data.contiguous()


def generate(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    stop_token_ids: Sequence[int] | None = None,
    stop_strings: Sequence[str] | None = None,
    seed: int = 0,
    tokenizer=None,
    logprobs: bool = False,
    max_batch_size: int = 32,
) -> list[GenerationResult]:
    """Generate continuations of token-id ``prompts`` with shared settings.

    Prompt i is seeded with ``derive_seed(seed, i)``, so repeated prompts get different samples
    and the whole call is reproducible from ``seed``.
    """
    reqs = [
        GenerationRequest(
            prompt=list(p),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop_token_ids=list(stop_token_ids or ()),
            stop_strings=list(stop_strings or ()),
            seed=derive_seed(seed, i),
            logprobs=logprobs,
        )
        for i, p in enumerate(prompts)
    ]
    return Engine(model, tokenizer=tokenizer, max_batch_size=max_batch_size).generate(reqs)
