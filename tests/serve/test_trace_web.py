"""OlmoTrace through the server: ``POST /v1/trace`` and the web page's highlights and document panel.

The model is rigged (see conftest.rig_chain) to answer with a short ``<think>`` section and then a
phrase planted in two training documents, so the trace is known: the phrase is a span found in the
index, listing those documents; the page shows the thought collapsed and traces the answer only."""

from __future__ import annotations

import json
import random

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("olmoflow.trace", reason="olmoflow.trace is not available")
pytest.importorskip("pydivsufsort", reason="the trace index needs pydivsufsort")

WORDS = ("open data models code weights careful curation needs every token today people share science "
         "language learn from the web and books we train small large").split()
PHRASES = ["careful curation needs every token", "people share science today", "small models learn from books"]
THOUGHTS = ["web", "language", "science", "books"]
ASK = [{"role": "user", "content": "Why open data?"}]


@pytest.fixture(scope="module")
def traced(helpers, tmp_path_factory):
    """Corpus -> tokenizer -> tokens -> trace index, and a server whose model answers with a phrase
    that occurs in documents planted-0 and planted-1 only."""
    from olmoflow.data.tokenize import tokenize
    from olmoflow.io import write_jsonl
    from olmoflow.tokenizer import Tok, train_tokenizer
    from olmoflow.tokenizer.special import IM_END, THINK_END, THINK_START
    from olmoflow.trace import build_index

    root = tmp_path_factory.mktemp("trace_corpus")
    r = random.Random(0)
    docs = [{"id": f"web-{i:03d}", "source": "web", "text": " ".join(r.choice(WORDS) for _ in range(60)) + "."}
            for i in range(60)]
    tok_dir = None
    for phrase in PHRASES:
        planted = [{"id": f"planted-{k}", "source": "books", "text": f"We say that {phrase} in the end."}
                   for k in range(2)]
        (root / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs + planted))
        tok_dir = train_tokenizer([root / "docs.jsonl"], root / "tok", vocab_size=500, quiet=True)
        tok = Tok.from_dir(tok_dir)
        last = tok.encode_chat(ASK, add_generation_prompt=True)[-1]
        for thought in THOUGHTS:  # the answer opens with a short <think> section
            chain = [last, tok.token_id(THINK_START), *tok.encode(thought), tok.token_id(THINK_END),
                     *tok.encode(" " + phrase), tok.token_id(IM_END)]
            if len(set(chain[:-1])) == len(chain) - 1:
                break
        else:
            continue
        break
    else:
        pytest.fail("no candidate phrase tokenizes into distinct tokens")
    tokenize(root / "docs.jsonl", tok_dir, root / "tokens", workers=1, quiet=True)
    # curation records as curate writes them (data.pipeline.curation_record), for the planted documents
    write_jsonl(root / "curate" / "curation" / "part-00000.jsonl.gz",
                [{"id": f"planted-{k}", "raw": {"file": "raw/books.jsonl", "line": k + 1},
                  "steps": ["exact_dedup", "minhash_dedup", "quality"], "quality": {"score": 0.97, "bucket": 19},
                  "dedup": {"minhash": 2}, "upsample": 3} for k in range(2)])
    build_index([root / "tokens"], root / "idx", curation=[root / "curate"], quiet=True)
    model = helpers.tiny_model(tok.vocab_size, seed=2)
    helpers.rig_chain(model, chain)
    model_dir = helpers.save_model_dir(model, tok_dir, root / "model")
    server = helpers.Server(model_dir, "--trace-index", str(root / "idx"),
                            log=tmp_path_factory.mktemp("logs") / "trace_server.log")
    yield {"server": server, "phrase": phrase, "thought": thought, "idx": root / "idx"}
    server.close()


def test_trace_endpoint_returns_the_trace_of_the_answer(traced):
    from olmoflow.trace import TraceIndex, trace_text

    url = traced["server"].url
    answer = httpx.post(url + "/v1/chat/completions", timeout=60, json={
        "model": "tiny", "messages": ASK, "temperature": 0, "max_tokens": 40}).json()["choices"][0]["message"]
    assert answer["content"] == f"<think>{traced['thought']}</think> {traced['phrase']}"
    reply = answer["content"].split("</think>")[1]
    r = httpx.post(url + "/v1/trace", json={"response": reply, "prompt": ASK[0]["content"]}, timeout=60)
    assert r.status_code == 200, r.text
    got = r.json()
    ref = trace_text(TraceIndex.open(traced["idx"]), reply, prompt=ASK[0]["content"])
    got.pop("elapsed_s"), ref.pop("elapsed_s")
    assert got == json.loads(json.dumps(ref))
    assert got["spans"] and {d["doc_id"] for s in got["spans"] for d in s["documents"]} == {"planted-0", "planted-1"}
    assert {d["curation"]["raw"]["file"] for s in got["spans"] for d in s["documents"]} == {"raw/books.jsonl"}
    for body in ({"prompt": "x"}, {"response": "   "}):
        bad = httpx.post(url + "/v1/trace", json=body)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "response", bad.text


def test_web_page_highlights_traced_spans_and_lists_documents(traced, browser, helpers, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(traced["server"].url + "/")
    WebDriverWait(browser, 30).until(lambda d: "OlmoTrace" in d.find_element(By.ID, "trace-status").text)
    browser.find_element(By.ID, "input").send_keys(ASK[0]["content"])
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.assistant[data-traced]"))
    reply = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant")[-1]
    think = reply.find_element(By.CSS_SELECTOR, "details.think")  # collapsed <think> section
    assert think.get_attribute("open") is None and traced["thought"] in think.get_attribute("textContent")
    assert reply.find_element(By.CSS_SELECTOR, ".answer-text").text == traced["phrase"]
    marks = browser.find_elements(By.CSS_SELECTOR, ".msg.assistant mark.trace-span")
    assert marks and traced["phrase"].split()[-1] in " ".join(m.text for m in marks)
    marks[0].click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#trace-panel.open .trace-doc"))
    docs = browser.find_elements(By.CSS_SELECTOR, "#trace-panel .trace-doc")
    assert {d.find_element(By.TAG_NAME, "strong").text for d in docs} == {"planted-0", "planted-1"}
    assert docs[0].find_element(By.CSS_SELECTOR, ".snippet b").text.strip()
    for d in docs:  # each document's curation record: raw file and line, steps, quality, dedup, upsampling
        record = json.loads(d.find_element(By.CSS_SELECTOR, "pre.curation").get_attribute("textContent"))
        assert record["raw"]["file"] == "raw/books.jsonl" and record["quality"]["bucket"] == 19
    shot = helpers.screenshot_dir(tmp_path) / "web_chat_trace.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    print(f"screenshot: {shot}")
