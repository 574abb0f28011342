"""Tool calls round-trip through the server (a model rigged to emit an exact call), and one failing
request does not take the engine loop down."""

from __future__ import annotations

import asyncio
import json

import pytest

from olmoflow.inference import Engine, GenerationRequest
from olmoflow.tokenizer.special import CALLS_END, CALLS_START, IM_END

openai = pytest.importorskip("openai", reason="the official openai client is not installed")

TOOLS = [{"type": "function", "function": {"name": "day", "description": "The weekday of day number x",
                                           "parameters": {"type": "object",
                                                          "properties": {"x": {"type": "integer"}}}}}]
ASK = [{"role": "user", "content": "What time is it in Oslo?"}]
#: candidate calls; the rigged bigram model needs one whose tokens are all distinct
CALLS = ["day(x=1)", "day(x=2)", "day(x=7)"]


@pytest.fixture(scope="module")
def tool_server(helpers, tok, tok_dir, tmp_path_factory):
    """A server whose model, greedily, answers every chat turn with a call of ``day``."""
    conftest = helpers
    model = conftest.tiny_model(tok.vocab_size, seed=1)
    last = tok.encode_chat(ASK, TOOLS, add_generation_prompt=True)[-1]
    for call in CALLS:
        body = tok.encode(call)
        chain = [last, tok.token_id(CALLS_START), *body, tok.token_id(CALLS_END), tok.token_id(IM_END)]
        if len(set(chain[:-1])) == len(chain) - 1:
            break
    else:
        pytest.fail("no candidate call tokenizes into distinct tokens")
    conftest.rig_chain(model, chain)
    d = conftest.save_model_dir(model, tok_dir, tmp_path_factory.mktemp("tool_model"))
    server = conftest.Server(d, log=tmp_path_factory.mktemp("logs") / "tool_server.log")
    yield server, {"x": int(call[len("day(x="):-1])}
    server.close()


def test_tool_call_round_trip(tool_server, tok):
    server, args = tool_server
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, temperature=0, max_tokens=40)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "day" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == args

    # streamed: no markup leaks into content; the call arrives whole in the last chunk
    chunks = list(client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, temperature=0,
                                                 max_tokens=40, stream=True))
    assert CALLS_START not in "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1].choices[0]
    assert last.finish_reason == "tool_calls" and last.delta.tool_calls[0].function.name == "day"

    # the call and its result go back as assistant tool_calls + a role "tool" message
    history = ASK + [choice.message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "12:00"}]
    again = client.chat.completions.create(model="tiny", messages=history, tools=TOOLS, temperature=0, max_tokens=40)
    assert again.usage.prompt_tokens == len(tok.encode_chat(history, TOOLS, add_generation_prompt=True))
    assert again.choices[0].message.tool_calls  # the rigged model calls again

    # tool_choice "none": tools are not offered and the output is not parsed
    plain = client.chat.completions.create(model="tiny", messages=ASK, tools=TOOLS, tool_choice="none",
                                           temperature=0, max_tokens=40)
    assert plain.choices[0].message.tool_calls is None
    assert plain.usage.prompt_tokens == len(tok.encode_chat(ASK, add_generation_prompt=True))


def test_a_failing_step_fails_its_requests_and_the_loop_goes_on(model_dir, tok):
    """An exception inside the engine (here: injected into one step) answers the requests then in
    flight with an error; the next request is served normally."""
    from olmoflow.model import load
    from olmoflow.serve.runner import AsyncEngine

    engine = Engine(load(model_dir), tokenizer=tok, max_len=128)
    real_step, calls = engine.step, []

    def flaky_step():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected fault")
        return real_step()

    engine.step = flaky_step
    loop_engine = AsyncEngine(engine, max_waiting=4)

    async def run(prompt):
        queue: asyncio.Queue = asyncio.Queue()
        loop_engine.submit([GenerationRequest(prompt=prompt, max_new_tokens=5)], queue)
        items = []
        while True:
            _, item = await asyncio.wait_for(queue.get(), timeout=30)
            if item is None or isinstance(item, Exception):
                return items, item
            items.append(item)

    try:
        _, err = asyncio.run(run(tok.encode("Hello")))
        assert isinstance(err, RuntimeError) and "injected fault" in str(err)
        items, end = asyncio.run(run(tok.encode("Hello")))
        assert end is None and len(items) == 5 and items[-1].result.finish_reason == "length"
        assert engine.num_running == 0
    finally:
        loop_engine.shutdown()
