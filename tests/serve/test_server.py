"""The OpenAI-compatible server, tested over HTTP on 127.0.0.1 with the official ``openai`` client."""

from __future__ import annotations

import json
import math
import threading

import pytest

from olmoflow.inference import Engine, GenerationRequest

openai = pytest.importorskip("openai", reason="the official openai client is not installed")
httpx = pytest.importorskip("httpx")

API_KEY = "sk-olmoflow-test"  # the key conftest's server requires

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world! Open data?"}]


@pytest.fixture(scope="module")
def local(model_dir, tok):
    """The same weights in this process: what the server's engine should produce."""
    from olmoflow.model import load

    return Engine(load(model_dir), tokenizer=tok)


def local_greedy(local, tok, prompt_ids, n, stop_ids=None, stop=()):
    [res] = local.generate([GenerationRequest(prompt=prompt_ids, max_new_tokens=n, stop_token_ids=stop_ids or [],
                                              stop_strings=list(stop))])
    return res


def test_models(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_chat_matches_the_engine_and_counts_tokens_like_the_tokenizer(client, local, tok):
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=12)
    prompt = tok.encode_chat(MESSAGES, add_generation_prompt=True)
    ref = local_greedy(local, tok, prompt, 12, tok.stop_ids)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == ref.text
    assert r.choices[0].finish_reason == ref.finish_reason
    assert r.usage.prompt_tokens == len(prompt)
    assert r.usage.completion_tokens == len(ref.token_ids)
    assert r.usage.total_tokens == len(prompt) + len(ref.token_ids)


def test_chat_streaming_equals_non_streaming_with_usage_last(client):
    kw = dict(model="tiny", messages=MESSAGES, temperature=0, max_tokens=20)
    full = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == full.usage.model_dump()


def test_completions_text_and_token_prompts_stream_and_not(client, local, tok):
    prompt = "The quick brown fox"
    ids = tok.encode(prompt)
    ref = local_greedy(local, tok, ids, 10, [tok.eos_id])
    a = client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=10)
    b = client.completions.create(model="tiny", prompt=ids, temperature=0, max_tokens=10)
    s = client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=10, stream=True)
    assert a.choices[0].text == b.choices[0].text == ref.text
    assert "".join(c.choices[0].text for c in s if c.choices) == ref.text
    assert a.usage.prompt_tokens == len(ids) and a.usage.completion_tokens == len(ref.token_ids)
    e = client.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=10, echo=True)
    assert e.choices[0].text == prompt + ref.text


def test_stop_strings_cut_the_text(client):
    base = client.completions.create(model="tiny", prompt="Hello world!", temperature=0, max_tokens=30)
    text = base.choices[0].text
    stop = text[6:9]
    assert len(stop) == 3
    r = client.completions.create(model="tiny", prompt="Hello world!", temperature=0, max_tokens=30, stop=[stop])
    assert r.choices[0].text == text[: text.find(stop)]
    assert r.choices[0].finish_reason == "stop"
    c = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=30, stop=stop)
    assert stop not in (c.choices[0].message.content or "")


def test_n_choices_and_seed_reproducibility(client):
    kw = dict(model="tiny", messages=MESSAGES, temperature=1.0, max_tokens=16, n=3)
    a = client.chat.completions.create(**kw, seed=7)
    b = client.chat.completions.create(**kw, seed=7)
    c = client.chat.completions.create(**kw, seed=8)
    texts = lambda r: [ch.message.content for ch in sorted(r.choices, key=lambda ch: ch.index)]  # noqa: E731
    assert [ch.index for ch in a.choices] == [0, 1, 2]
    assert texts(a) == texts(b)
    assert len(set(texts(a))) > 1  # choices are sampled independently
    assert texts(a) != texts(c)
    assert 3 <= a.usage.completion_tokens <= 48
    s = client.chat.completions.create(**kw, seed=7, stream=True)
    streamed = ["", "", ""]
    for ch in s:
        for choice in ch.choices:
            streamed[choice.index] += choice.delta.content or ""
    assert streamed == texts(a)


def test_logprobs_one_per_generated_token(client):
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=8, logprobs=True)
    lps = r.choices[0].logprobs.content
    assert len(lps) == r.usage.completion_tokens == 8 and all(x.logprob <= 0 for x in lps)
    assert "".join(x.token for x in lps) == r.choices[0].message.content
    c = client.completions.create(model="tiny", prompt="Hello", temperature=0, max_tokens=5, logprobs=1)
    assert len(c.choices[0].logprobs.token_logprobs) == 5


def test_top_logprobs_chat_and_completions(client):
    """OpenAI's top_logprobs: k alternatives per token, most likely first; under greedy decoding the
    chosen token is the first alternative; the legacy completions form maps token text to log-prob."""
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=6, logprobs=True,
                                       top_logprobs=3)
    for entry in r.choices[0].logprobs.content:
        alts = entry.top_logprobs
        assert len(alts) == 3 and [a.logprob for a in alts] == sorted((a.logprob for a in alts), reverse=True)
        assert alts[0].token == entry.token and abs(alts[0].logprob - entry.logprob) < 1e-6
        assert sum(math.exp(a.logprob) for a in alts) <= 1 + 1e-6
    streamed = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=6,
                                              logprobs=True, top_logprobs=3, stream=True)
    entries = [e for ch in streamed if ch.choices and ch.choices[0].logprobs for e in ch.choices[0].logprobs.content]
    assert [(e.token, [a.token for a in e.top_logprobs]) for e in entries] == \
        [(e.token, [a.token for a in e.top_logprobs]) for e in r.choices[0].logprobs.content]
    c = client.completions.create(model="tiny", prompt="Hello", temperature=0, max_tokens=4, logprobs=2)
    lp = c.choices[0].logprobs
    assert len(lp.top_logprobs) == 4 and all(1 <= len(m) <= 2 for m in lp.top_logprobs)
    assert all(max(m.values()) >= v - 1e-6 for m, v in zip(lp.top_logprobs, lp.token_logprobs))
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2, top_logprobs=2)


def test_tokenize_detokenize(server, tok):
    ids = httpx.post(server.url + "/tokenize", json={"prompt": "Hello world!"}, headers=AUTH).json()
    assert ids["tokens"] == tok.encode("Hello world!") and ids["count"] == len(ids["tokens"])
    chat = httpx.post(server.url + "/tokenize", json={"messages": MESSAGES}, headers=AUTH).json()
    assert chat["tokens"] == tok.encode_chat(MESSAGES, add_generation_prompt=True)
    back = httpx.post(server.url + "/detokenize", json={"tokens": ids["tokens"]}, headers=AUTH).json()
    assert back["prompt"] == "Hello world!"


def test_api_key_required(server, client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        r = httpx.post(server.url + "/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES},
                       headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.url + "/v1/models").status_code == 401
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert httpx.get(server.url + "/health").status_code == 200  # health stays open


BAD_CHAT = [
    # (body changes, expected status, param)
    ({"model": "gpt-4"}, 404, "model"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ({"messages": [{"role": "user", "content": "open data " * 400}]}, 400, "messages"),
    ({"max_tokens": -5}, 400, "max_tokens"),
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": 10**9}, 400, "max_tokens"),
    ({"max_completion_tokens": 10**6}, 400, "max_tokens"),
    ({"n": 100}, 400, "n"),
    ({"temperature": 7}, 400, "temperature"),
    ({"top_p": 0}, 400, "top_p"),
    ({"messages": []}, 400, "messages"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"messages": None}, 400, "messages"),
]


@pytest.mark.parametrize(("change", "status", "param"), BAD_CHAT)
def test_bad_chat_input_is_4xx_naming_the_field(server, change, status, param):
    body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 4, **change}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, headers=AUTH)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and param.split(".")[0] in err["message"] and err["type"]


def test_malformed_json_and_bad_completion_prompts(server, client):
    r = httpx.post(server.url + "/v1/chat/completions", content=b'{"model": "tiny", "messages": [',
                   headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    for prompt, param in (([99999], "prompt"), ("", "prompt"), ([], "prompt")):
        r = httpx.post(server.url + "/v1/completions", json={"model": "tiny", "prompt": prompt}, headers=AUTH)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    r = httpx.post(server.url + "/v1/completions", json={"model": "tiny"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=-1)
    with pytest.raises(openai.NotFoundError, match="model"):
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert httpx.get(server.url + "/v1/nothing-here", headers=AUTH).json()["error"]["type"]


def test_full_waiting_queue_answers_429(server):
    """4 slots + 4 waiting places: 16 simultaneous long requests, the surplus gets 429 at once."""
    statuses: list[int] = []

    def one() -> None:
        r = httpx.post(server.url + "/v1/completions", json={"model": "tiny", "prompt": "Hello", "max_tokens": 400,
                                                              "temperature": 0}, headers=AUTH, timeout=120)
        statuses.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["error"]["type"] == "rate_limit_error"

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert len(statuses) == 16 and set(statuses) <= {200, 429}
    assert statuses.count(429) >= 1 and statuses.count(200) >= 4


def metric(server, name: str, **labels: str) -> float:
    """Sum of a metric's samples (those with the given label values) from GET /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server.url + "/metrics").text
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def eventually(check, tries: int = 300) -> bool:
    """``check()`` becomes true within ``tries`` polls 10 ms apart (a bounded wait, not a timing claim)."""
    for _ in range(tries):
        if check():
            return True
        threading.Event().wait(0.01)
    return False


def idle(server) -> bool:
    h = httpx.get(server.url + "/health").json()
    return h["running"] == 0 and h["waiting"] == 0


def test_disconnect_mid_stream_frees_the_slot(server):
    before = metric(server, "olmoflow:generation_tokens_total")
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 500, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, headers=AUTH, timeout=60) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
    assert any(line.startswith("data: {") for line in got)
    assert eventually(lambda: idle(server))  # the slot is free long before 500 tokens are generated
    generated = metric(server, "olmoflow:generation_tokens_total") - before
    assert 0 < generated < 500


def test_metrics_prometheus_format(server, client):
    client.completions.create(model="tiny", prompt="Hello", temperature=0, max_tokens=5)
    for name in ("olmoflow:num_requests_running", "olmoflow:num_requests_waiting"):
        assert metric(server, name) == 0
    assert metric(server, "olmoflow:prompt_tokens_total") > 0
    assert metric(server, "olmoflow:generation_tokens_total") >= 5
    for h in ("time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds"):
        assert metric(server, f"olmoflow:{h}_count") > 0


def test_trace_without_index_is_404(server):
    r = httpx.post(server.url + "/v1/trace", json={"response": "open data"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "trace_not_configured"


def test_web_page_is_served(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and "olmoflow chat" in r.text and r.headers["content-type"].startswith("text/html")
    assert json.loads(httpx.get(server.url + "/health").text)["status"] == "ok"


def test_serves_an_hf_export_like_a_release_bundle(helpers, model_dir, tok_dir, tok, local, tmp_path):
    """``olmoflow serve --model <release>/model``: the bundle's model/ is an HF export with its tokenizer."""
    from olmoflow.model import load
    from olmoflow.model.hf import export_hf

    hf_dir = export_hf(load(model_dir), tmp_path / "release" / "model", tokenizer_dir=tok_dir)
    s = helpers.Server(hf_dir, log=tmp_path / "hf_server.log")
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        r = c.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0, max_tokens=12)
    finally:
        s.close()
    ref = local_greedy(local, tok, tok.encode_chat(MESSAGES, add_generation_prompt=True), 12, tok.stop_ids)
    assert r.choices[0].message.content == ref.text


def test_disconnect_while_waiting_for_a_non_streamed_answer_aborts_it(server):
    before = metric(server, "olmoflow:generation_tokens_total")
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 500, "n": 4, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/completions", json=body, headers=AUTH, timeout=httpx.Timeout(5, read=0.3))
    assert eventually(lambda: idle(server))  # the server notices within its 0.1 s disconnect poll
    generated = metric(server, "olmoflow:generation_tokens_total") - before
    assert 0 < generated < 4 * 500
    # and the handler itself ended (answering nobody with 499), not left waiting
    assert eventually(lambda: metric(server, "olmoflow:http_errors_total", status="499") >= 1)


def test_without_the_serve_extra_the_command_says_what_to_install(model_dir):
    import subprocess
    import sys

    code = ("import sys; sys.modules['fastapi'] = None; from olmoflow.cli import main; "
            f"sys.exit(main(['serve', '--model', {str(model_dir)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "pip install 'olmoflow[serve]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_serves_bf16_weights_like_the_bf16_engine(helpers, model_dir, tok, tmp_path):
    """``--dtype bfloat16`` (the fast setting for many streams on AMX CPUs): the server answers what the
    engine gives on the same weights cast to bf16, through the openai client — log-probs included,
    which differ from the fp32 engine's, so the cast really happened."""
    import torch

    from olmoflow.inference.engine import Engine, GenerationRequest
    from olmoflow.model import load

    prompt = "Open language models"
    s = helpers.Server(model_dir, "--dtype", "bfloat16", log=tmp_path / "bf16_server.log")
    try:
        c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
        r = c.completions.create(model="tiny", prompt=prompt, temperature=0, max_tokens=10, logprobs=1)
    finally:
        s.close()

    def engine(dtype):
        model = load(model_dir).to(dtype).eval()
        req = GenerationRequest(prompt=tok.encode(prompt), max_new_tokens=10, stop_token_ids=tok.stop_ids, logprobs=True)
        return Engine(model, tokenizer=tok).generate([req])[0]

    bf16, fp32 = engine(torch.bfloat16), engine(torch.float32)
    assert r.choices[0].text == bf16.text and r.usage.completion_tokens == len(bf16.token_ids)
    served = torch.tensor(r.choices[0].logprobs.token_logprobs)

    def median_gap(ref):  # (the KV-slot layout moves a rare bf16 log-prob by ~1e-2: compare medians)
        return (served - torch.tensor(ref.logprobs[: len(served)])).abs().median().item()

    assert len(served) > 0 and median_gap(bf16) < 1e-3 < median_gap(fp32)
