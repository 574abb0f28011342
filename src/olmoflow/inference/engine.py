"""The generation engine: continuous batching over per-sequence KV slots, per-request sampling and stops.

One engine serves evaluation, RLVR rollouts and the server. It is a scheduler with an add / step /
abort interface: :meth:`Engine.add` queues a request, each :meth:`Engine.step` admits waiting
requests into free KV slots (up to ``max_batch_size`` sequences), decodes one token for every
running sequence and prefills the prompts of newly admitted ones (in chunks, within
``max_batched_tokens`` per step), and a sequence that finishes leaves the batch at once, its slot
free for the next request. :meth:`Engine.generate` is add-all-then-step-until-done.

Each sequence lives in its own slot of a :class:`~olmoflow.model.kv_cache.SlotKVCache` at its own
length, so a request joining mid-generation does not wait for the batch to drain. Results do not
depend on what else runs: each request samples from its own seeded stream of uniform numbers (token
``i`` uses the stream's ``i``-th number), and attention sees only the request's own slot, so a
request alone and the same request inside any batch produce the same tokens (up to float rounding
of the logits; greedy tokens are identical in the tests).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from olmoflow.errors import OlmoflowError
from olmoflow.inference.detok import DecodeFn, TextStream, decode_fn
from olmoflow.inference.sampling import BatchSampler
from olmoflow.model.kv_cache import SlotKVCache

#: stream_callback(request_index, new_token_id, text_delta)
StreamCallback = Callable[[int, int, str], None]
FinishReason = Literal["stop", "length"]


#: most alternatives per position a request can ask for (OpenAI's limit)
MAX_TOP_LOGPROBS = 20


class QueueFullError(OlmoflowError):
    """The engine's waiting queue is at its bound (``max_waiting``): try again later."""


@dataclass
class GenerationRequest:
    """One prompt and how to continue it.

    temperature 0 means greedy; top_k 0 and top_p 1.0 disable those filters. ``seed`` seeds this
    request's own random stream (None: drawn from torch's global RNG). ``stop_strings`` need the
    engine to have a tokenizer. ``logprobs`` asks for the log-probability of every generated token;
    ``top_logprobs`` > 0 also for that many most likely alternatives at each position (and implies
    ``logprobs``).
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
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        # accept tensors / numpy arrays / tuples; keep plain Python ints inside
        self.prompt = self.prompt.tolist() if hasattr(self.prompt, "tolist") else [int(t) for t in self.prompt]
        if isinstance(self.stop_strings, str):
            self.stop_strings = [self.stop_strings]
        if self.top_logprobs > 0:
            self.logprobs = True

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
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise OlmoflowError(f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs}")
        bad = [t for t in self.prompt if not 0 <= t < vocab_size]
        if bad:
            raise OlmoflowError(f"prompt token id {bad[0]} is outside the model vocabulary (0..{vocab_size - 1})")


@dataclass
class GenerationResult:
    """What a request produced.

    ``token_ids`` are the generated tokens, including the stop token that ended generation (when
    one did); ``text`` (with a tokenizer) excludes stop tokens and is cut before a stop string.
    ``stop`` names what stopped it: the stop token id or the stop string. ``top_logprobs``: per
    generated token, its (token id, log-prob) alternatives, most likely first (when asked).
    """

    token_ids: list[int]
    finish_reason: FinishReason
    n_prompt_tokens: int
    text: str | None = None
    logprobs: list[float] | None = None
    stop: int | str | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None


@dataclass
class StepOutput:
    """One token a sequence produced in a step. ``result`` is set when the sequence finished with it."""

    seq_id: int
    token: int
    delta: str
    logprob: float | None = None
    result: GenerationResult | None = None
    top_logprobs: list[tuple[int, float]] | None = None


@dataclass(eq=False)
class _Seq:
    """Book-keeping for one request from :meth:`Engine.add` until it finishes."""

    id: int
    req: GenerationRequest
    stop_ids: frozenset[int]
    stream: TextStream | None
    uniforms: torch.Tensor | None  # [max_new_tokens] for sampled requests
    slot: int = -1
    prefilled: int = 0  # prompt tokens already in the KV slot
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    result: GenerationResult | None = None

    @property
    def need(self) -> int:
        """KV slot length this sequence can reach."""
        return len(self.req.prompt) + self.req.max_new_tokens


def derive_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for request ``index`` of a call seeded with ``seed``."""
    digest = hashlib.sha256(f"olmoflow-generate:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) while generating; the caller's train/eval mode comes back after."""
    was = model.training
    if not was:  # already in eval mode: nothing to switch (train(False) walks every module)
        yield
        return
    model.eval()
    try:
        yield
    finally:
        model.train(was)


class Engine:
    """Continuous-batching generation with per-sequence KV slots for an ``olmoflow.model.Olmo``.

    ``tokenizer`` (an olmoflow ``Tok``, a ``tokenizers.Tokenizer`` or anything with ``decode``)
    enables ``text`` in results, stop strings and text deltas in streaming.
    ``max_batch_size``: most sequences running at once (KV slots).
    ``max_batched_tokens``: most tokens one step feeds the model (decode rows + prefill chunks).
    ``prefill_chunk``: most prompt tokens of one sequence prefilled per step (bounds the attention
    mask / score memory of long prompts); only the last position's logits are computed.
    ``max_len``: KV slot length (None: sized by :meth:`generate` to its requests, or the model's
    context for requests added with :meth:`add`). ``max_waiting``: bound on the waiting queue
    (None: unbounded); :meth:`add` raises :class:`QueueFullError` beyond it.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer=None,
        max_batch_size: int = 32,
        device: str | torch.device | None = None,
        prefill_chunk: int = 512,
        max_batched_tokens: int | None = None,
        max_len: int | None = None,
        max_waiting: int | None = None,
    ):
        if max_batch_size < 1:
            raise OlmoflowError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model = model
        param = next(model.parameters())
        self.device = torch.device(device) if device is not None else param.device
        if param.device != self.device:
            self.model = self.model.to(self.device)
        self.dtype = param.dtype
        self.cfg = model.cfg
        self.tokenizer = tokenizer
        self.decode: DecodeFn | None = decode_fn(tokenizer)
        self.max_batch_size = max_batch_size
        self.prefill_chunk = prefill_chunk if prefill_chunk > 0 else 1 << 30
        self.max_batched_tokens = max_batched_tokens or max(2048, max_batch_size + self.prefill_chunk)
        if self.max_batched_tokens <= max_batch_size:
            raise OlmoflowError(f"max_batched_tokens ({self.max_batched_tokens}) must exceed max_batch_size "
                                f"({max_batch_size}): prefill needs room next to a full decode batch")
        self.max_len = max_len
        self.max_waiting = max_waiting
        self.cache: SlotKVCache | None = None
        self.waiting: deque[_Seq] = deque()
        self.running: dict[int, _Seq] = {}  # by seq id, in admission order
        self._next_id = 0
        self.steps = 0  # forward steps taken (decode or prefill), for tests and metrics

    # ------------------------------------------------------------------ scheduler interface

    def add(self, request: GenerationRequest, text: bool = True) -> int:
        """Queue a request; returns its sequence id. ``text``: stream text deltas (needs a tokenizer)."""
        request.validate(self.cfg.vocab_size)
        if request.stop_strings and self.decode is None:
            raise OlmoflowError("stop_strings need a tokenizer: pass tokenizer= to the Engine")
        if self.max_len is not None and len(request.prompt) + request.max_new_tokens > self.max_len:
            raise OlmoflowError(f"prompt ({len(request.prompt)} tokens) + max_new_tokens ({request.max_new_tokens}) "
                                f"exceeds the engine's max_len {self.max_len}")
        if self.max_waiting is not None and len(self.waiting) >= self.max_waiting:
            raise QueueFullError(f"the waiting queue is full ({self.max_waiting} requests)")
        seed = request.seed if request.seed is not None else int(torch.randint(0, 2**62, ()).item())
        uniforms = None
        if request.temperature > 0:
            g = torch.Generator().manual_seed(seed)
            uniforms = torch.rand(request.max_new_tokens, generator=g)
        need_text = self.decode is not None and (text or bool(request.stop_strings))
        seq = _Seq(
            id=self._next_id,
            req=request,
            stop_ids=frozenset(int(t) for t in request.stop_token_ids),
            stream=TextStream(self.decode, request.stop_strings) if need_text else None,
            uniforms=uniforms,
        )
        self._next_id += 1
        self.waiting.append(seq)
        return seq.id

    def abort(self, seq_id: int) -> bool:
        """Drop a waiting or running sequence at once (its KV slot is free for the next step)."""
        for seq in self.waiting:
            if seq.id == seq_id:
                self.waiting.remove(seq)
                return True
        seq = self.running.pop(seq_id, None)
        if seq is None:
            return False
        self.cache.reset(seq.slot)
        return True

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def step(self) -> list[StepOutput]:
        """Admit waiting requests, decode one token for each running sequence, prefill new ones.

        Returns every token produced in this step (a prefill that completes a prompt produces the
        sequence's first token)."""
        out: list[StepOutput] = []
        with _eval_mode(self.model), torch.inference_mode():
            self._admit()
            decoding = [s for s in self.running.values() if s.prefilled == len(s.req.prompt)]
            if decoding:
                decoding.sort(key=lambda s: s.slot)  # slots 0..B-1 in order are read as views
                tokens = torch.tensor([[s.tokens[-1]] for s in decoding], device=self.device)
                self.cache.use([s.slot for s in decoding])
                logits = self.model(tokens, cache=self.cache, logits_to_keep=1)[:, -1]
                self.steps += 1
                out += self._sample(decoding, logits)
            budget = self.max_batched_tokens - len(decoding)
            chunks: list[tuple[_Seq, list[int]]] = []
            for s in self.running.values():
                left = len(s.req.prompt) - s.prefilled
                if left == 0:
                    continue
                n = min(left, self.prefill_chunk, budget)
                if n <= 0:
                    break
                chunks.append((s, s.req.prompt[s.prefilled : s.prefilled + n]))
                budget -= n
            if chunks:
                out += self._prefill(chunks)
        for o in out:
            if o.result is not None:
                seq = self.running.pop(o.seq_id)
                self.cache.reset(seq.slot)
        return out

    def generate(
        self, requests: Sequence[GenerationRequest], stream_callback: StreamCallback | None = None
    ) -> list[GenerationResult]:
        """Generate for every request; results come back in request order.

        ``stream_callback(i, token, delta)`` is called for every token of request ``i``."""
        if self.has_work:
            raise OlmoflowError("Engine.generate: the engine is already serving requests added with add()")
        for r in requests:
            r.validate(self.cfg.vocab_size)
        if not requests:
            return []
        need = max(len(r.prompt) + r.max_new_tokens for r in requests)
        self._ensure_cache(min(len(requests), self.max_batch_size), need)
        # longest prompts first: prefill chunks of similar lengths waste less compute on padding
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i].prompt))
        index = {self.add(requests[i], text=stream_callback is not None): i for i in order}
        results: list[GenerationResult | None] = [None] * len(requests)
        rows_per_step = min(len(requests), self.max_batch_size)
        layout = _input_major_weights(self.model) if rows_per_step <= _INPUT_MAJOR_MAX_ROWS else nullcontext()
        with layout, _eval_mode(self.model):
            while self.has_work:
                for o in self.step():
                    if stream_callback is not None:
                        stream_callback(index[o.seq_id], o.token, o.delta)
                    if o.result is not None:
                        results[index[o.seq_id]] = o.result
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ internals

    def _ensure_cache(self, n_slots: int, max_len: int) -> None:
        """(Re)allocate the KV slots when idle and the current ones are too few or too short."""
        c = self.cache
        if c is not None and c.n_slots >= n_slots and c.max_len >= max_len:
            return
        if self.running:
            return
        if c is not None:
            n_slots, max_len = max(n_slots, c.n_slots), max(max_len, c.max_len)
        self.cache = None  # free the old slots before allocating the new ones
        self.cache = SlotKVCache(self.cfg, n_slots, max_len, device=self.device, dtype=self.dtype)

    def _admit(self) -> None:
        """Move waiting requests (first come, first served) into free KV slots."""
        if not self.waiting:
            return
        if self.cache is None or (not self.running and self.waiting[0].need > self.cache.max_len):
            self._ensure_cache(self.max_batch_size, max(self.max_len or self.cfg.max_seq_len, self.waiting[0].need))
        used = {s.slot for s in self.running.values()}
        free = [i for i in range(self.cache.n_slots) if i not in used]
        while self.waiting and free and len(self.running) < self.max_batch_size:
            if self.waiting[0].need > self.cache.max_len:
                break  # waits until the batch drains and the slots can grow
            seq = self.waiting.popleft()
            seq.slot = free.pop(0)
            self.cache.reset(seq.slot)
            self.running[seq.id] = seq

    def _prefill(self, chunks: list[tuple[_Seq, list[int]]]) -> list[StepOutput]:
        """One forward over prompt chunks (left-padded to a common length); sequences whose prompt
        is now complete sample their first token."""
        t = max(len(c) for _, c in chunks)
        ids = torch.full((len(chunks), t), self.cfg.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(chunks), t), dtype=torch.long)
        for j, (_, c) in enumerate(chunks):
            ids[j, t - len(c) :] = torch.tensor(c, dtype=torch.long)
            mask[j, t - len(c) :] = 1
        padded = any(len(c) < t for _, c in chunks)
        self.cache.use([s.slot for s, _ in chunks])
        logits = self.model(ids.to(self.device), attention_mask=mask.to(self.device) if padded else None,
                            cache=self.cache, logits_to_keep=1)[:, -1]
        self.steps += 1
        done = []
        for j, (s, c) in enumerate(chunks):
            s.prefilled += len(c)
            if s.prefilled == len(s.req.prompt):
                done.append(j)
        if not done:
            return []
        return self._sample([chunks[j][0] for j in done], logits[done])

    def _sample(self, seqs: list[_Seq], logits: torch.Tensor) -> list[StepOutput]:
        """Each sequence's next token from its own logits row, settings and uniform stream."""
        want_lp = any(s.req.logprobs for s in seqs)  # (top_logprobs > 0 implies logprobs)
        if not want_lp and all(s.uniforms is None for s in seqs):  # all greedy: skip the sampler's setup
            return [self._advance(s, t, None) for s, t in zip(seqs, logits.argmax(-1).tolist())]
        uniforms = torch.zeros(len(seqs), 1)
        for j, s in enumerate(seqs):
            if s.uniforms is not None:
                uniforms[j, 0] = s.uniforms[len(s.tokens)]
        sampler = BatchSampler([s.req.temperature for s in seqs], [s.req.top_k for s in seqs],
                               [s.req.top_p for s in seqs], uniforms, self.device)
        n_top = max(s.req.top_logprobs for s in seqs)
        tokens, lps, alternatives = sampler.sample(logits.float(), 0, want_lp, top=n_top)
        tok_list = tokens.tolist()
        lp_list = lps.tolist() if lps is not None else [None] * len(seqs)
        tops: list[list[tuple[int, float]] | None] = [None] * len(seqs)
        if alternatives is not None:
            values, ids = alternatives[0].tolist(), alternatives[1].tolist()
            tops = [list(zip(ids[j], values[j]))[: s.req.top_logprobs] or None for j, s in enumerate(seqs)]
        return [self._advance(s, t, lp, top) for s, t, lp, top in zip(seqs, tok_list, lp_list, tops)]

    def _advance(self, seq: _Seq, token: int, logprob: float | None,
                 top: list[tuple[int, float]] | None = None) -> StepOutput:
        """Record one generated token; finish the sequence on a stop or at its length limit."""
        req = seq.req
        seq.tokens.append(token)
        if req.logprobs:
            seq.logprobs.append(logprob)
        if req.top_logprobs:
            seq.top.append(top)
        finish: FinishReason | None = None
        stop: int | str | None = None
        delta = ""
        if token in seq.stop_ids:
            finish, stop = "stop", token
        elif seq.stream is not None:
            delta = seq.stream.add(token)
            if seq.stream.stopped_by is not None:
                finish, stop = "stop", seq.stream.stopped_by
        if finish is None and len(seq.tokens) >= req.max_new_tokens:
            finish = "length"
        if finish is not None:
            if seq.stream is not None:
                delta += seq.stream.finish()
            seq.result = self._result(seq, finish, stop)
        return StepOutput(seq.id, token, delta, logprob, seq.result, top)

    def _result(self, seq: _Seq, finish: FinishReason, stop: int | str | None) -> GenerationResult:
        text = None
        if seq.stream is not None:
            text = seq.stream.text
        elif self.decode is not None:
            text = self.decode(seq.tokens[:-1] if finish == "stop" else seq.tokens)
        return GenerationResult(
            token_ids=list(seq.tokens),
            finish_reason=finish,
            n_prompt_tokens=len(seq.req.prompt),
            text=text,
            logprobs=list(seq.logprobs) if seq.req.logprobs else None,
            stop=stop,
            top_logprobs=list(seq.top) if seq.req.top_logprobs else None,
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
