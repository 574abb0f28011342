"""Tracing a response: every OlmoTrace rule (self-contained spans that do not cross a delimiter, word
boundaries, minimum length, count <= 10, maximality, the 0.05·L cap by unigram probability, merging of
overlaps), documents with located snippets ranked by BM25, and the JSON schema the server uses."""

from __future__ import annotations

import json
import math
import re

from conftest import OVERLAP_A, OVERLAP_B
from traceutil import brute_count, brute_longest

from olmoflow.trace import render_markdown, render_terminal, trace_text
from olmoflow.trace.tracer import _encode, trace_tokens

ALL = {"fraction": 1.0}


def sentences(text: str) -> list[str]:
    return [s if s.endswith(".") else s + "." for s in text.split(". ")]


def test_spans_stop_at_sentence_delimiters(corpus):
    s1, s2 = sentences(corpus["docs"]["d050"])[:2]
    res = trace_text(corpus["index"], s1 + " " + s2, **ALL)
    assert [s["text"] for s in res["spans"]] == [s1, s2]  # never one span across ". "
    assert [d["doc_id"] for d in res["spans"][0]["documents"]] == ["d050"]
    nl = trace_text(corpus["index"], s1[:-1] + "\n" + s2, **ALL)  # a newline is a delimiter too
    assert all("\n" not in s["text"] for s in nl["spans"])


def test_spans_start_and_end_on_word_boundaries(corpus):
    s1 = sentences(corpus["docs"]["d060"])[0]
    glued = trace_text(corpus["index"], "zq" + s1, **ALL)  # first word now starts mid-word
    assert glued["spans"][0]["text"] == s1.split(" ", 1)[1]
    cut = s1[:-1] + "zz"  # last word continues past the training text
    res = trace_text(corpus["index"], cut, **ALL)
    assert res["spans"][0]["text"] == s1.rsplit(" ", 1)[0]
    for r in (glued, res):
        for s in r["spans"]:
            t = r["response"]
            assert s["start"] == 0 or not (t[s["start"] - 1].isalnum() and t[s["start"]].isalnum())
            assert s["end"] == len(t) or not (t[s["end"] - 1].isalnum() and t[s["end"]].isalnum())


def test_spans_occurring_more_than_10_times_dropped(corpus):
    # (the planted sentences follow a space in their documents: so do they here, tokenized alike)
    assert trace_text(corpus["index"], "So " + corpus["s11"], **ALL)["spans"] == []
    [span] = trace_text(corpus["index"], "So " + corpus["s10"], **ALL)["spans"]
    assert span["text"] == corpus["s10"] and span["count"] == 10 and len(span["documents"]) == 10
    assert {d["doc_id"] for d in span["documents"]} == {f"d{30 + k:03d}" for k in range(10)}
    assert trace_text(corpus["index"], "So " + corpus["s10"], max_count=9, **ALL)["spans"] == []


def test_minimum_span_length(corpus):
    ix, text = corpus["index"], sentences(corpus["docs"]["d070"])[0]
    ids, offs = _encode(ix, text, "response")
    spans = trace_tokens(ix, ids, offs, text, min_tokens=1, fraction=1.0)
    assert all(s["j"] - s["i"] >= 1 for s in spans)
    longest = max(s["j"] - s["i"] for s in spans)
    assert trace_tokens(ix, ids, offs, text, min_tokens=longest + 1, fraction=1.0) == []


def test_overlapping_spans_merged_with_both_documents(corpus):
    text = "Then " + OVERLAP_A.lower() + " " + OVERLAP_B.split(" ", 2)[2] + " vize."
    ix = corpus["index"]
    ids, offs = _encode(ix, text, "response")
    raw = trace_tokens(ix, ids, offs, text, fraction=1.0)
    assert len(raw) == 2 and raw[1]["start"] < raw[0]["end"]  # two maximal spans that overlap
    [span] = trace_text(ix, text, **ALL)["spans"]
    assert span["start"] == raw[0]["start"] and span["end"] == raw[1]["end"]
    assert {d["doc_id"] for d in span["documents"]} == {"ovl-a", "ovl-b"}
    for d in span["documents"]:  # each document shows where its own part matched
        a, b = d["match"]
        assert d["snippet"][a:b] in span["text"] and b - a > 10


def test_cap_keeps_the_rarest_spans(corpus):
    docs = corpus["docs"]
    text = " ".join(sentences(docs[f"d{100 + k:03d}"])[1] for k in range(8))
    ix = corpus["index"]
    ids, offs = _encode(ix, text, "response")
    every = trace_tokens(ix, ids, offs, text, fraction=1.0)
    assert len(every) >= 8
    for f in (0.05, 0.02, 0.01):
        k = math.ceil(f * len(ids))
        kept = trace_tokens(ix, ids, offs, text, fraction=f)
        assert len(kept) == min(k, len(every))
        rarest = sorted(every, key=lambda s: s["unigram_logprob"])[: len(kept)]
        assert {s["i"] for s in kept} == {s["i"] for s in rarest}
    assert len(trace_text(ix, text)["spans"]) <= math.ceil(0.05 * len(ids))


def test_spans_agree_with_brute_force_longest_match(corpus):
    """Each kept span is a prefix of the brute-force longest match at its start, its count is the
    brute-force count, and every maximal-match start agrees with a scan of the documents."""
    ix = corpus["index"]
    tok = ix.tokenizer
    doc_ids = [tok.encode(t, add_special_tokens=False).ids for t in corpus["docs"].values()]
    text = sentences(corpus["docs"]["d080"])[2] + " Kato zemvu. " + sentences(corpus["docs"]["d081"])[0]
    ids, offs = _encode(ix, text, "response")
    m = ix.longest_matches(ids)
    for i in range(len(ids)):
        assert m.lengths[i] == brute_longest(doc_ids, ids, i)
    for s in trace_tokens(ix, ids, offs, text, min_tokens=1, fraction=1.0, max_count=10**6):
        assert s["j"] - s["i"] <= brute_longest(doc_ids, ids, s["i"])
        assert s["count"] == brute_count(doc_ids, ids[s["i"] : s["j"]])


def test_result_schema_documents_and_views(corpus):
    s1 = sentences(corpus["docs"]["d090"])[3]
    res = trace_text(corpus["index"], "Well. " + s1, prompt="Tell me about " + s1.split(" ")[1])
    json.dumps(res)  # JSON-serialisable
    assert set(res) == {"response", "prompt", "index", "spans", "elapsed_s"}
    assert set(res["index"]) == {"path", "tokens", "documents", "tokenizer"}
    [span] = res["spans"]
    assert res["response"][span["start"] : span["end"]] == span["text"] == s1
    assert {"start", "end", "text", "count", "unigram_logprob", "documents"} <= set(span)
    [doc] = span["documents"]
    assert {"doc_id", "source", "score", "snippet", "match", "curation"} <= set(doc)
    assert doc["doc_id"] == "d090" and doc["source"] == "web" and doc["curation"] is None
    a, b = doc["match"]
    assert doc["snippet"][a:b] == s1 and doc["score"] > 0
    md = "\n".join(render_markdown(res))
    assert f"**{s1}**" in md and "`d090`" in md
    assert "d090" in render_terminal(res, color=False)


def test_documents_ranked_by_bm25(corpus):
    res = trace_text(corpus["index"], "So " + corpus["s10"], prompt=corpus["docs"]["d035"][:200], **ALL)
    docs = res["spans"][0]["documents"]
    scores = [d["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert docs[0]["doc_id"] == "d035"  # the prompt quotes that document: it ranks first


def test_untraceable_text_has_no_spans(corpus):
    res = trace_text(corpus["index"], "Xyzzy plugh qwertz wibble frobnicate.")
    assert res["spans"] == [] and re.search(r"no span", "\n".join(render_markdown(res)))
