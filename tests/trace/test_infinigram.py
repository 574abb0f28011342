"""infini-gram (its own prebuilt indexer, run offline on files we write) counts the same as our index."""

from __future__ import annotations

import random

import pytest
from traceutil import brute_count, token_dataset, wordlevel_tokenizer

from olmoflow.trace import TraceIndex, build_index


def _build_peer(ix, out):
    pytest.importorskip("infini_gram", reason="infini-gram is not installed (pip install infini-gram)")
    from olmoflow.errors import OlmoflowError
    from olmoflow.trace import infinigram

    try:
        infinigram.build(ix, out, mem_gib=1)
    except OlmoflowError as e:  # e.g. a platform its prebuilt binary does not run on
        pytest.skip(f"infini-gram's indexer does not build here: {e}")
    return infinigram.engine(ix, out)


@pytest.mark.parametrize("n_words", [8, 70000])  # uint16 and uint32 token ids
def test_counts_equal_infinigram(tmp_path, n_words):
    r = random.Random(n_words)
    tok = wordlevel_tokenizer(tmp_path / "tok", n_words, unk=False)
    alphabet = list(range(min(n_words, 8))) if n_words < 100 else list(range(65530, 65545))  # ids around 2^16
    docs = [[r.choice(alphabet) for _ in range(r.randint(1, 60))] for _ in range(300)]
    build_index([token_dataset(tmp_path / "d", docs, tok, eos=n_words, shard_docs=100)], tmp_path / "idx",
                quiet=True, shard_tokens=4000)
    ix = TraceIndex.open(tmp_path / "idx")
    assert len(ix.shards) > 1
    peer = _build_peer(ix, tmp_path / "ig")
    queries = [[r.choice(alphabet) for _ in range(r.randint(1, 6))] for _ in range(150)]
    queries += [d[a : a + k] for d in docs[:40] for a, k in [(r.randrange(len(d)), r.randint(1, 12))]]
    for q in queries:
        ours = ix.count(q)
        assert ours == peer.count(q)["count"] == brute_count(docs, q), q


def test_spans_agree_with_infinigram_attribute(tmp_path):
    """Our maximal, self-contained, rare spans are infini-gram's ``attribute()`` spans (AI2's OlmoTrace
    primitive: maximal spans, no delimiter inside but one may end a span, min length, max count)."""
    from olmoflow.trace.tracer import _encode, trace_tokens

    r = random.Random(1)
    tok = wordlevel_tokenizer(tmp_path / "tok", 30, unk=False, dot=True)
    dot = 31

    def no_double_dots(t):  # (a run of delimiters: ours may end a span with all of it, infini-gram with one)
        return [x for k, x in enumerate(t) if not (x == dot and k and t[k - 1] == dot)]

    def sentence_doc():
        return no_double_dots([r.choice(range(30)) if r.random() > 0.12 else dot for _ in range(r.randint(20, 80))])

    docs = [sentence_doc() for _ in range(400)]
    build_index([token_dataset(tmp_path / "d", docs, tok, eos=30)], tmp_path / "idx", quiet=True)
    ix = TraceIndex.open(tmp_path / "idx")
    peer = _build_peer(ix, tmp_path / "ig")
    for _ in range(5):
        q: list[int] = []
        while len(q) < 150:  # copied runs and fresh words
            d = r.choice(docs)
            a = r.randrange(len(d))
            q += d[a : a + r.randint(5, 20)] + [r.randrange(30) for _ in range(r.randint(1, 5))]
        q = no_double_dots(q)
        text = " ".join(ix.tokenizer.id_to_token(t) for t in q)
        ids, offs = _encode(ix, text, "response")
        ours = {(s["i"], s["j"]) for s in trace_tokens(ix, ids, offs, text, min_tokens=3, max_count=10, fraction=1.0)}
        theirs = peer.attribute(input_ids=q, delim_ids=[dot], min_len=3, max_cnt=10, enforce_bow=False)["spans"]
        got = {(s["l"], s["r"]) for s in theirs}
        assert ours == got, [(a, b, q[max(a - 2, 0) : b + 2], ix.count(q[a:b])) for a, b in sorted(ours ^ got)][:6]
        for s in theirs:
            assert ix.count(q[s["l"] : s["r"]]) == s["count"]
