"""The OpenAI-compatible FastAPI app: completions, chat (tools, streaming), tokenize, metrics, trace, web chat.

    app = create_app(model, tok, "olmo")          # then uvicorn.run(app, host="127.0.0.1", port=8000)

Every generation goes through one continuous-batching :class:`~olmoflow.inference.Engine` stepped by
an :class:`~olmoflow.serve.runner.AsyncEngine` thread. Chat messages are rendered with the one chat
template (``olmoflow.tokenizer.chat``), tool specs included; the model's ``<function_calls>`` are
parsed back into OpenAI ``tool_calls`` with the same module's parser. Errors are OpenAI-style bodies
naming the offending field. See docs/serve.md.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from olmoflow.errors import OlmoflowError
from olmoflow.inference.engine import Engine, GenerationRequest, QueueFullError, StepOutput, derive_seed
from olmoflow.serve.metrics import CONTENT_TYPE, Metrics
from olmoflow.serve.protocol import (
    APIError,
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    TraceRequest,
)
from olmoflow.serve.runner import AsyncEngine, Handle
from olmoflow.tokenizer.chat import apply_chat_template, parse_function_calls
from olmoflow.tokenizer.special import CALLS_START

STATIC = Path(__file__).parent / "static"


class ServerState:
    """What the handlers share: model facts, tokenizer, engine loop, metrics, options."""

    def __init__(self, model, tok, model_name: str, api_key: str | None, trace_index: str | Path | None,
                 max_batch_size: int, max_waiting: int, default_max_tokens: int):
        self.tok, self.model_name, self.api_key = tok, model_name, api_key
        self.context = model.cfg.max_seq_len
        self.vocab = model.cfg.vocab_size
        self.default_max_tokens = default_max_tokens
        self.metrics = Metrics(model_name)
        engine = Engine(model.eval(), tokenizer=tok, max_batch_size=max_batch_size, max_len=self.context)
        self.engine = AsyncEngine(engine, self.metrics, max_waiting=max_waiting)
        self.trace_dir = trace_index
        self._trace = None
        self.created = int(time.time())

    def trace_index(self):
        """The trace index, opened on first use (``olmoflow.trace`` is imported only then)."""
        if self.trace_dir is None:
            raise APIError(404, "this server has no trace index; start it with --trace-index DIR",
                           code="trace_not_configured")
        if self._trace is None:
            from olmoflow.trace import TraceIndex

            self._trace = TraceIndex.open(self.trace_dir)
        return self._trace


def create_app(model, tok, model_name: str = "olmo", api_key: str | None = None,
               trace_index: str | Path | None = None, max_batch_size: int = 32, max_waiting: int = 64,
               default_max_tokens: int = 256) -> FastAPI:
    """The server app for a loaded ``Olmo`` and its ``Tok``.

    ``api_key``: required as ``Authorization: Bearer KEY`` on every ``/v1`` route and on
    ``/tokenize`` / ``/detokenize`` (``/``, ``/health`` and ``/metrics`` stay open).
    ``max_batch_size``: sequences decoded together (KV slots); ``max_waiting``: bound on requests
    waiting for a slot (beyond it: 429); ``default_max_tokens``: when a request sets none.
    """
    state = ServerState(model, tok, model_name, api_key, trace_index, max_batch_size, max_waiting, default_max_tokens)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        state.engine.shutdown()

    app = FastAPI(title="olmoflow", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.olmoflow = state

    # ------------------------------------------------------------------ errors

    def error(e: APIError) -> JSONResponse:
        state.metrics.errors.labels(state.model_name, str(e.status)).inc()
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    @app.exception_handler(APIError)
    async def _api_error(_request: Request, e: APIError) -> JSONResponse:
        return error(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request", "type": ""}
        if first.get("type") == "json_invalid":
            return error(APIError(400, f"malformed JSON body: {first.get('msg')}", code="invalid_json"))
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        # pydantic names the union member it tried (e.g. prompt.str); the field is what the user wrote
        loc = [x for x in loc if x not in ("str", "int", "list[str]", "list[int]", "list[dict[str,any]]")]
        param = ".".join(loc) or None
        msg = first.get("msg", "invalid value")
        if first.get("type") == "missing":
            msg = "required field is missing"
        return error(APIError(400, f"{param}: {msg}" if param else msg, param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, e: StarletteHTTPException) -> JSONResponse:
        return error(APIError(e.status_code, str(e.detail)))

    @app.exception_handler(Exception)
    async def _crash(_request: Request, e: Exception) -> JSONResponse:
        return error(APIError(500, f"internal error: {type(e).__name__}: {e}"))

    def check_auth(request: Request) -> None:
        if state.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip(), state.api_key):
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", code="invalid_api_key")

    def check_model(name: str | None) -> None:
        if name is not None and name != state.model_name:
            raise APIError(404, f"model: '{name}' does not exist; this server serves '{state.model_name}'", "model",
                           "model_not_found")

    # ------------------------------------------------------------------ small routes

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": state.model_name, "running": state.engine.num_running,
                "waiting": state.engine.num_waiting, "trace": state.trace_dir is not None}

    @app.get("/metrics")
    async def metrics() -> Response:
        m = state.metrics
        m.running.labels(m.name).set(state.engine.num_running)
        m.waiting.labels(m.name).set(state.engine.num_waiting)
        return Response(m.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_auth(request)
        return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": state.created,
                                            "owned_by": "olmoflow", "max_model_len": state.context}]}

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
        check_auth(request)
        check_model(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise APIError(400, "tokenize: give exactly one of 'prompt' or 'messages'", "prompt")
        if body.messages is not None:
            text = render_chat([m.model_dump(exclude_none=True) for m in body.messages], None, body.add_generation_prompt)
        else:
            text = body.prompt
        ids = state.tok.encode(text)
        return {"tokens": ids, "count": len(ids), "max_model_len": state.context}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
        check_auth(request)
        check_model(body.model)
        check_ids(body.tokens, "tokens")
        return {"prompt": state.tok.decode(body.tokens)}

    @app.post("/v1/trace")
    async def trace(body: TraceRequest, request: Request) -> dict[str, Any]:
        check_auth(request)
        try:
            index = state.trace_index()
        except OlmoflowError as e:  # a bad or corrupt index: the server's configuration, not the request
            raise APIError(500, f"trace index: {e}", code="trace_index_error") from None
        from olmoflow.trace import trace_text

        def run() -> dict[str, Any]:
            try:
                return trace_text(index, body.response, prompt=body.prompt)
            except OlmoflowError as e:
                raise APIError(400, f"response: {e}", "response") from None

        return await asyncio.get_running_loop().run_in_executor(None, run)

    # ------------------------------------------------------------------ generation helpers

    def render_chat(messages: list[dict], tools: list[dict] | None, add_generation_prompt: bool = True) -> str:
        try:
            return apply_chat_template(messages, tools, add_generation_prompt=add_generation_prompt)
        except Exception as e:  # noqa: BLE001 - a message the template cannot render is the client's
            raise APIError(400, f"messages: {e}", "messages") from None

    def check_ids(ids: list[int], field: str) -> None:
        bad = [t for t in ids if not 0 <= t < min(state.vocab, state.tok.vocab_size)]
        if bad:
            raise APIError(400, f"{field}: token id {bad[0]} is outside the vocabulary", field)

    def requests_for(prompt: list[int], body, max_tokens: int | None, field: str, stop_ids: list[int],
                     logprobs: bool, top: int = 0) -> list[GenerationRequest]:
        if not prompt:
            raise APIError(400, f"{field}: the prompt is empty", field)
        if len(prompt) >= state.context:
            raise APIError(400, f"{field}: the prompt is {len(prompt)} tokens; the model's context is "
                           f"{state.context}", field)
        room = state.context - len(prompt)
        if max_tokens is None:
            max_tokens = min(state.default_max_tokens, room)
        elif max_tokens > room:
            raise APIError(400, f"max_tokens: {max_tokens} new tokens + the prompt's {len(prompt)} exceed the "
                           f"model's context ({state.context})", "max_tokens")
        stops = body.stop_list()
        return [GenerationRequest(prompt=prompt, max_new_tokens=max_tokens, temperature=body.temperature,
                                  top_p=body.top_p, top_k=body.top_k, stop_token_ids=stop_ids, stop_strings=stops,
                                  seed=derive_seed(body.seed, k) if body.seed is not None else None,
                                  logprobs=logprobs, top_logprobs=top)
                for k in range(body.n)]

    def submit(reqs: list[GenerationRequest]) -> tuple[list[Handle], asyncio.Queue]:
        queue: asyncio.Queue = asyncio.Queue()
        try:
            return state.engine.submit(reqs, queue), queue
        except QueueFullError as e:
            raise APIError(429, str(e), code="server_busy") from None

    async def batches(handles: list[Handle], queue: asyncio.Queue) -> AsyncIterator[list[tuple[int, StepOutput]]]:
        """Lists of (choice index, step output): everything queued when the handler wakes up (one
        chunk per choice per wake-up when streaming), until every sequence finished. Errors become
        APIError 500."""
        left = len(handles)
        while left:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            out = []
            for index, item in items:
                if item is None:
                    left -= 1
                elif isinstance(item, ConnectionAbortedError):  # nobody reads the answer: status 499 as nginx
                    raise APIError(499, str(item), code="client_closed_request")
                elif isinstance(item, Exception):
                    raise APIError(500, str(item), code="generation_failed")
                else:
                    out.append((index, item))
            if out:
                yield out

    async def events(handles: list[Handle], queue: asyncio.Queue) -> AsyncIterator[tuple[int, StepOutput]]:
        async for batch in batches(handles, queue):
            for item in batch:
                yield item

    async def collect(handles: list[Handle], queue: asyncio.Queue, request: Request) -> list[StepOutput]:
        """Final outputs of all choices; aborts them if the client disconnects first."""
        finals: list[StepOutput | None] = [None] * len(handles)

        async def watch() -> None:
            while not await request.is_disconnected():
                await asyncio.sleep(0.1)
            state.engine.abort(handles)
            queue.put_nowait((0, ConnectionAbortedError("client disconnected")))  # ends this handler too

        watcher = asyncio.create_task(watch())
        try:
            async for index, out in events(handles, queue):
                if out.result is not None:
                    finals[index] = out
        finally:
            watcher.cancel()
        return finals  # type: ignore[return-value]

    def token_text(t: int) -> str:
        return state.tok.decode([t])

    def usage(n_prompt: int, n_completion: int) -> dict[str, int]:
        return {"prompt_tokens": n_prompt, "completion_tokens": n_completion, "total_tokens": n_prompt + n_completion}

    def streaming(gen: AsyncIterator[dict], handles: list[Handle]) -> StreamingResponse:
        async def sse() -> AsyncIterator[bytes]:
            try:
                async for chunk in gen:
                    yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()
            except APIError as e:
                yield f"data: {json.dumps(e.body())}\n\n".encode()
            finally:  # client gone (cancelled) or done: free the slots now
                state.engine.abort(handles)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ------------------------------------------------------------------ chat completions

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, request: Request):
        check_auth(request)
        check_model(body.model)
        use_tools = bool(body.tools) and body.tool_choice != "none"
        tools = body.tools if use_tools else None
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        prompt = state.tok.encode(render_chat(messages, tools))
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        if body.top_logprobs and not body.logprobs:
            raise APIError(400, "top_logprobs: needs logprobs set to true", "top_logprobs")
        reqs = requests_for(prompt, body, max_tokens, "messages", state.tok.stop_ids, body.logprobs,
                            body.top_logprobs or 0)
        handles, queue = submit(reqs)
        rid, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())

        def lp_entry(t: int, lp: float, top: list[tuple[int, float]] | None = None) -> dict[str, Any]:
            text = token_text(t)
            alternatives = [{"token": (a := token_text(i)), "logprob": v, "bytes": list(a.encode())}
                            for i, v in top or []]
            return {"token": text, "logprob": lp, "bytes": list(text.encode()), "top_logprobs": alternatives}

        def message_of(out: StepOutput) -> tuple[dict[str, Any], str]:
            res = out.result
            content, calls = parse_function_calls(res.text or "") if use_tools else (res.text or "", [])
            msg: dict[str, Any] = {"role": "assistant", "content": content}
            finish = res.finish_reason
            if calls:
                msg["tool_calls"] = [{"id": f"call_{secrets.token_hex(8)}", **c} for c in calls]
                msg["content"] = content or None
                finish = "tool_calls"
            return msg, finish

        def logprobs_of(res) -> dict | None:
            if not body.logprobs:
                return None
            ids = res.token_ids[:-1] if isinstance(res.stop, int) else res.token_ids
            tops = res.top_logprobs or [None] * len(ids)
            return {"content": [lp_entry(t, lp, top) for t, lp, top in zip(ids, res.logprobs, tops)]}

        if not body.stream:
            finals = await collect(handles, queue, request)
            choices = []
            for i, out in enumerate(finals):
                msg, finish = message_of(out)
                choices.append({"index": i, "message": msg, "finish_reason": finish, "logprobs": logprobs_of(out.result)})
            return {"id": rid, "object": "chat.completion", "created": created, "model": state.model_name,
                    "choices": choices, "usage": usage(len(prompt), sum(len(o.result.token_ids) for o in finals))}

        def chunk(choices: list[dict], **extra) -> dict[str, Any]:
            return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": state.model_name,
                    "choices": choices, **extra}

        async def gen() -> AsyncIterator[dict]:
            for i in range(len(handles)):
                yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                              "finish_reason": None}])
            held = [""] * len(handles)  # with tools: text from a possible <function_calls> on is held back
            n_completion = 0
            async for batch in batches(handles, queue):
                for i, outs in _by_choice(batch):
                    n_completion += len(outs)
                    delta = "".join(o.delta for o in outs)
                    if use_tools:
                        delta, held[i] = _hold_calls(held[i] + delta)
                    lps = [lp_entry(o.token, o.logprob, o.top_logprobs) for o in outs if body.logprobs and o.logprob is not None
                           and not (o.result is not None and isinstance(o.result.stop, int))]
                    if delta or lps:
                        yield chunk([{"index": i, "delta": {"content": delta},
                                      "logprobs": {"content": lps} if lps else None, "finish_reason": None}])
                    out = outs[-1]
                    if out.result is None:
                        continue
                    msg, finish = message_of(out)
                    final: dict[str, Any] = {}
                    rest = parse_function_calls(held[i])[0] if msg.get("tool_calls") else held[i]
                    if rest:
                        final["content"] = rest
                    if msg.get("tool_calls"):
                        final["tool_calls"] = [{"index": k, **c} for k, c in enumerate(msg["tool_calls"])]
                    yield chunk([{"index": i, "delta": final, "logprobs": None, "finish_reason": finish}])
            if body.stream_options is not None and body.stream_options.include_usage:
                yield chunk([], usage=usage(len(prompt), n_completion))

        return streaming(gen(), handles)

    # ------------------------------------------------------------------ completions

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        check_auth(request)
        check_model(body.model)
        if isinstance(body.prompt, list) and body.prompt and isinstance(body.prompt[0], int):
            check_ids(body.prompt, "prompt")
            prompts = [list(body.prompt)]
        elif isinstance(body.prompt, list):
            if not body.prompt:
                raise APIError(400, "prompt: the prompt is empty", "prompt")
            prompts = [state.tok.encode(p) for p in body.prompt]
        else:
            prompts = [state.tok.encode(body.prompt)]
        want_lp = body.logprobs is not None
        reqs = [r for p in prompts for r in requests_for(p, body, body.max_tokens, "prompt", [state.tok.eos_id],
                                                         want_lp, body.logprobs or 0)]
        if body.stream and len(prompts) > 1:
            raise APIError(400, "stream: streaming takes a single prompt", "stream")
        handles, queue = submit(reqs)
        rid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())
        echo = [state.tok.decode(p) if body.echo else "" for p in prompts]

        def logprobs_of(res) -> dict | None:
            if not want_lp:
                return None
            ids = res.token_ids[:-1] if isinstance(res.stop, int) else res.token_ids
            toks = [token_text(t) for t in ids]
            offsets, pos = [], 0
            for t in toks:
                offsets.append(pos)
                pos += len(t)
            # OpenAI's legacy form: per position a {token text: log-prob} map of the alternatives
            top = [{token_text(i): v for i, v in alts} for alts in res.top_logprobs[: len(ids)]] \
                if res.top_logprobs else None
            return {"tokens": toks, "token_logprobs": list(res.logprobs[: len(ids)]), "top_logprobs": top,
                    "text_offset": offsets}

        n_prompt = sum(len(p) for p in prompts)
        if not body.stream:
            finals = await collect(handles, queue, request)
            choices = [{"index": i, "text": echo[i // body.n] + (o.result.text or ""), "logprobs": logprobs_of(o.result),
                        "finish_reason": o.result.finish_reason} for i, o in enumerate(finals)]
            n_completion = sum(len(o.result.token_ids) for o in finals)
            return {"id": rid, "object": "text_completion", "created": created, "model": state.model_name,
                    "choices": choices, "usage": usage(n_prompt, n_completion)}

        def chunk(choices: list[dict], **extra) -> dict[str, Any]:
            return {"id": rid, "object": "text_completion", "created": created, "model": state.model_name,
                    "choices": choices, **extra}

        async def gen() -> AsyncIterator[dict]:
            n_completion = 0
            if body.echo:
                for i in range(len(handles)):
                    yield chunk([{"index": i, "text": echo[0], "logprobs": None, "finish_reason": None}])
            async for batch in batches(handles, queue):
                for i, outs in _by_choice(batch):
                    n_completion += len(outs)
                    delta = "".join(o.delta for o in outs)
                    finish = outs[-1].result.finish_reason if outs[-1].result is not None else None
                    if delta or finish:
                        yield chunk([{"index": i, "text": delta, "logprobs": None, "finish_reason": finish}])
            if body.stream_options is not None and body.stream_options.include_usage:
                yield chunk([], usage=usage(n_prompt, n_completion))

        return streaming(gen(), handles)

    return app


def _by_choice(batch: list[tuple[int, StepOutput]]) -> list[tuple[int, list[StepOutput]]]:
    """Group a batch of outputs by choice, keeping each choice's token order."""
    groups: dict[int, list[StepOutput]] = {}
    for i, out in batch:
        groups.setdefault(i, []).append(out)
    return sorted(groups.items())


def _hold_calls(text: str) -> tuple[str, str]:
    """Split streamed text into (what may be sent now, what is held back): everything from a
    ``<function_calls>`` tag (or a tail that may become one) is held until the sequence ends."""
    i = text.find(CALLS_START)
    if i >= 0:
        return text[:i], text[i:]
    keep = next((k for k in range(min(len(CALLS_START) - 1, len(text)), 0, -1) if CALLS_START.startswith(text[-k:])), 0)
    return text[: len(text) - keep], text[len(text) - keep:]
