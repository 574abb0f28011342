"""Load, bounded and on localhost: 32 concurrent streaming clients against one server."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from olmoflow.inference import Engine, GenerationRequest

openai = pytest.importorskip("openai", reason="the official openai client is not installed")
httpx = pytest.importorskip("httpx")

CLIENTS, ROUNDS, MAX_TOKENS = 32, 3, 24


def prompt_of(client: int, rnd: int) -> list[dict]:
    return [{"role": "user", "content": f"Hello world! Open data {client} and code {rnd}."}]


def test_32_streaming_clients_no_errors_no_lost_tokens_health_answers(open_server, model_dir, tok):
    from olmoflow.model import load

    # expected greedy outputs, from the same weights in this process
    keys = [(c, r) for c in range(CLIENTS) for r in range(ROUNDS)]
    reqs = [GenerationRequest(prompt=tok.encode_chat(prompt_of(c, r), add_generation_prompt=True),
                              max_new_tokens=MAX_TOKENS, stop_token_ids=tok.stop_ids) for c, r in keys]
    expected = dict(zip(keys, Engine(load(model_dir), tokenizer=tok).generate(reqs)))

    health: list[tuple[int, float]] = []
    stop = threading.Event()

    def poll_health() -> None:
        with httpx.Client(timeout=10) as h:
            while not stop.is_set():
                t0 = time.perf_counter()
                code = h.get(open_server.url + "/health").status_code
                health.append((code, time.perf_counter() - t0))
                stop.wait(0.05)

    api = openai.AsyncOpenAI(base_url=open_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)

    async def one_client(c: int) -> list[tuple]:
        got = []
        for r in range(ROUNDS):
            text, lp_tokens, usage, finish = "", [], None, None
            stream = await api.chat.completions.create(model="tiny", messages=prompt_of(c, r), temperature=0,
                                                       max_tokens=MAX_TOKENS, stream=True, logprobs=True,
                                                       stream_options={"include_usage": True})
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for ch in chunk.choices:
                    text += ch.delta.content or ""
                    if ch.logprobs is not None and ch.logprobs.content:
                        lp_tokens += [x.token for x in ch.logprobs.content]
                    finish = ch.finish_reason or finish
            got.append(((c, r), text, lp_tokens, usage, finish))
        return got

    async def main():
        return await asyncio.gather(*(one_client(c) for c in range(CLIENTS)))

    rss_before = open_server.rss_mb()
    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        results = [x for per_client in asyncio.run(main()) for x in per_client]
    finally:
        stop.set()
        poller.join()
    rss_after = open_server.rss_mb()

    assert len(results) == CLIENTS * ROUNDS
    for key, text, lp_tokens, usage, finish in results:
        ref = expected[key]
        n_text_tokens = len(ref.token_ids) - (ref.finish_reason == "stop")
        assert text == ref.text, key
        # one logprob entry per generated token, in order: none lost or duplicated
        assert lp_tokens == [tok.decode([t]) for t in ref.token_ids[:n_text_tokens]], key
        assert usage.completion_tokens == len(ref.token_ids) and finish == ref.finish_reason
    assert len(health) >= 3 and all(code == 200 for code, _ in health)
    assert rss_after - rss_before < 300, f"server RSS grew {rss_before:.0f} -> {rss_after:.0f} MB"
    h = httpx.get(open_server.url + "/health").json()
    assert h["running"] == 0 and h["waiting"] == 0
