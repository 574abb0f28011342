"""Suffix-array queries agree with a brute-force scan: count, find, and the longest match at every
position (with the counts of its prefixes), on random corpora split over several shards."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traceutil import brute_count, brute_longest, token_dataset, wordlevel_tokenizer

from olmoflow.trace import TraceIndex, build_index

N_WORDS = 6  # a tiny alphabet: many repeats, long matches


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return wordlevel_tokenizer(tmp_path_factory.mktemp("tok"), N_WORDS)


def _index(tmp, tok_dir, docs, shard_tokens):
    data = token_dataset(tmp / "data", docs, tok_dir, eos=N_WORDS, shard_docs=3)
    build_index([data], tmp / "idx", quiet=True, shard_tokens=shard_tokens)
    return TraceIndex.open(tmp / "idx")


corpora = st.lists(st.lists(st.integers(0, N_WORDS - 1), min_size=1, max_size=30), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(docs=corpora, shard_tokens=st.integers(1, 80), seed=st.integers(0, 10**6))
def test_count_find_longest_match_agree_with_brute_force(tmp_path_factory, tok_dir, docs, shard_tokens, seed):
    tmp = tmp_path_factory.mktemp("q")
    ix = _index(tmp, tok_dir, docs, shard_tokens)
    r = random.Random(seed)
    queries = [[r.randrange(N_WORDS) for _ in range(r.randint(1, 5))] for _ in range(20)]
    d = r.choice(docs)
    a = r.randrange(len(d))
    queries.append(d[a : a + r.randint(1, 8)])  # present
    queries.append([N_WORDS - 1] * 40)  # (almost surely) absent: longer than any document
    # straddling shard boundaries: the end of one shard's last document + the next shard's first
    for k in range(len(ix.shards) - 1):
        end = ix.doc_tokens(k, ix.shards[k].docs[-2], ix.shards[k].docs[-1] - 1).tolist()
        start = ix.doc_tokens(k + 1, 0, ix.shards[k + 1].docs[1] - 1).tolist()
        queries.append(end[-2:] + start[:2])
    for q in queries:
        want = brute_count(docs, q)
        assert ix.count(q) == want, q
        found = ix.find(q)
        assert len(found) == want
        for shard, pos in found:  # every position really holds the n-gram, inside one document
            _, d0, d1 = ix.document_of(shard, pos)
            assert ix.doc_tokens(shard, pos, pos + len(q)).tolist() == q and pos + len(q) < d1
    q = [r.randrange(N_WORDS) for _ in range(25)] + (d[a : a + 6] if d else [])
    m = ix.longest_matches(q)
    for i in range(len(q)):
        assert m.lengths[i] == brute_longest(docs, q, i), i
        for n in range(1, int(m.lengths[i]) + 1):
            assert m.count(i, n) == brute_count(docs, q[i : i + n])


def test_repeated_documents_indexed_once_with_repeat_count(tmp_path, tok_dir):
    """A mix repeats documents (and upsampling writes ID#repN copies): each is indexed once, its count of
    training occurrences kept, and counts are over distinct documents."""
    docs = [[0, 1, 2], [0, 1, 2], [3, 4], [3, 4], [5]]
    ids = ["a", "a", "b", "b#rep1", "c"]
    data = token_dataset(tmp_path / "mix", docs, tok_dir, eos=N_WORDS, ids=ids, repeats=[2, 2, 1, 1, 1])
    meta = build_index([data], tmp_path / "idx", quiet=True)
    ix = TraceIndex.open(tmp_path / "idx")
    assert meta["n_docs"] == 3 and meta["n_docs_seen"] == 5
    assert ix.count([0, 1, 2]) == 1 and ix.count([3, 4]) == 1
    recs = {ix.record(i)["id"]: ix.record(i) for i in range(ix.n_docs)}
    assert {k: v["repeats"] for k, v in recs.items()} == {"a": 2, "b": 2, "c": 1}
    assert ix.n_tokens == 3 + 1 + 2 + 1 + 1 + 1
    assert int(ix.unigram[0]) == 1 and int(ix.unigram[N_WORDS]) == 3  # unigram counts of indexed tokens


def test_eos_never_part_of_a_match(tmp_path, tok_dir):
    ix = _index(tmp_path, tok_dir, [[0, 1], [2, 3]], 1000)
    assert ix.count([1, N_WORDS, 2]) == 0  # across a document end
    assert ix.longest_matches([0, 1, N_WORDS, 2]).lengths.tolist() == [2, 1, 0, 1]


def test_uint32_tokens_and_int32_suffix_array(tmp_path):
    """A vocabulary over 65536 ids is stored as uint32 (queries work the same)."""
    tok = wordlevel_tokenizer(tmp_path / "tok", 70000, unk=False)
    rng = np.random.default_rng(0)
    docs = [rng.integers(65530, 70000, size=50).tolist() for _ in range(20)]
    data = token_dataset(tmp_path / "d", docs, tok, eos=70000)
    meta = build_index([data], tmp_path / "idx", quiet=True)
    ix = TraceIndex.open(tmp_path / "idx")
    assert meta["dtype"] == "uint32" and meta["shards"][0]["sa_dtype"] == "int32"
    q = docs[3][10:17]
    assert ix.count(q) == brute_count(docs, q) >= 1
