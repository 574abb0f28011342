"""Dedup steps against peer implementations: datasketch MinHash-LSH and a brute-force repeat finder."""

from __future__ import annotations

import random

import numpy as np
import pytest
from datautil import sentence_text, vocab

from olmoflow.data.stats import Stats
from olmoflow.data.steps.base import Context
from olmoflow.data.steps.dedup_minhash import MinHashConfig, MinHashDedup
from olmoflow.data.steps.dedup_substring import cut_spans, repeated_spans
from olmoflow.data.text import jaccard, shingles


def _mutate(r: random.Random, words: list[str], n_changes: int) -> list[str]:
    out = list(words)
    for pos in r.sample(range(len(out)), n_changes):
        out[pos] = "mut" + str(r.randint(0, 10**6))
    return out


@pytest.fixture(scope="module")
def fuzzy_corpus():
    r = random.Random(7)
    vb = vocab(900)
    docs = []
    for _ in range(60):
        docs.append(sentence_text(r, vb, 120).split(" "))
    for k in range(20):  # near copies at varied similarity
        docs.append(_mutate(r, docs[k], r.choice([1, 2, 3, 12, 25])))
    return [{"id": f"d{i:03d}", "text": " ".join(w), "source": "web"} for i, w in enumerate(docs)]


def _run_minhash(docs, shards=2, **cfg):
    step = MinHashDedup(MinHashConfig(step="minhash_dedup", **cfg))
    parts = [docs[i::shards] for i in range(shards)]
    stats = Stats()
    ctx = Context(stats)
    summaries = [step.collect(iter(p), ctx) for p in parts]
    decisions = step.decide(summaries, ctx)
    kept = [d["id"] for p, dec in zip(parts, decisions) for d in step.apply(iter(p), dec, ctx)]
    return set(kept), stats


def test_minhash_matches_datasketch_lsh_with_verification(fuzzy_corpus):
    datasketch = pytest.importorskip("datasketch")
    sets = [shingles(d["text"], 5) for d in fuzzy_corpus]
    lsh = datasketch.MinHashLSH(num_perm=286, params=(26, 11))
    mhs = []
    for i, s in enumerate(sets):
        m = datasketch.MinHash(num_perm=286, seed=1)
        m.update_batch([int(x).to_bytes(8, "little") for x in s])
        lsh.insert(str(i), m)
        mhs.append(m)
    parent = list(range(len(sets)))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for i, m in enumerate(mhs):
        for j in map(int, lsh.query(m)):
            if j != i and jaccard(sets[i], sets[j]) >= 0.8:
                a, b = sorted((find(i), find(j)))
                parent[b] = a
    peer_kept = {fuzzy_corpus[i]["id"] for i in range(len(sets)) if find(i) == i}
    ours, stats = _run_minhash(fuzzy_corpus)
    assert ours == peer_kept
    # and the result is what true Jaccard says: copies >= 0.8 gone, dissimilar ones kept
    for k in range(20):
        j = jaccard(sets[k], sets[60 + k])
        assert (fuzzy_corpus[60 + k]["id"] in ours) == (j < 0.8), (k, j)
    assert stats.data["histograms"]["minhash_cluster_sizes"]["2"] == 20 - len(ours & {f"d{60 + k:03d}" for k in range(20)})


def test_minhash_result_independent_of_sharding(fuzzy_corpus):
    a, _ = _run_minhash(fuzzy_corpus, shards=1)
    b, _ = _run_minhash(fuzzy_corpus, shards=3)
    assert a == b


def test_lsh_candidate_probability_matches_theory():
    """26x11 bands: pairs at J=0.8 collide ~90% of the time, at J=0.6 ~10% (REFERENCE.md)."""
    from olmoflow.data.steps.dedup_minhash import candidate_pairs, signatures

    r = np.random.default_rng(0)
    hits = {0.8: 0, 0.6: 0}
    trials = 150
    for j in hits:
        pairs_sets = []
        for _ in range(trials):
            n_common = 400
            n_each = int(round(n_common * (1 / j - 1) / 2))
            base = r.integers(0, 2**63, size=n_common + 2 * n_each, dtype=np.uint64)
            a = np.unique(base[: n_common + n_each])
            b = np.unique(np.concatenate([base[:n_common], base[n_common + n_each :]]))
            pairs_sets += [a, b]
        sig = signatures(pairs_sets, 286, seed=int(j * 10))
        for t in range(trials):
            if candidate_pairs(sig[2 * t : 2 * t + 2], 26, 11):
                hits[j] += 1
    p8, p6 = hits[0.8] / trials, hits[0.6] / trials
    theory = {jj: 1 - (1 - jj**11) ** 26 for jj in (0.8, 0.6)}
    assert abs(p8 - theory[0.8]) < 0.08 and abs(p6 - theory[0.6]) < 0.08, (p8, p6, theory)


def _brute_force_marks(data: bytes, starts, ends, n: int) -> np.ndarray:
    """Byte i is marked iff some window [s, s+n) covering i, inside one doc, occurred earlier."""
    mark = np.zeros(len(data), dtype=bool)
    first: dict[bytes, int] = {}
    for s0, e0 in zip(starts, ends):
        for s in range(s0, e0 - n + 1):
            w = data[s : s + n]
            if w in first and first[w] < s:
                mark[s : s + n] = True
            else:
                first.setdefault(w, s)
    return mark


def test_repeated_spans_match_brute_force():
    r = random.Random(3)
    for trial in range(20):
        docs = []
        pieces = ["".join(r.choice("abc") for _ in range(r.randint(3, 12))) for _ in range(4)]
        for _ in range(r.randint(2, 6)):
            docs.append("".join(r.choice(pieces + ["x", "yz"]) for _ in range(r.randint(2, 8))).encode())
        starts, ends, pos = [], [], 0
        for d in docs:
            starts.append(pos)
            ends.append(pos + len(d))
            pos += len(d) + 1
        data = b"\x00".join(docs) + b"\x00"
        n = r.randint(8, 14)
        ours = repeated_spans(data, np.array(starts), np.array(ends), n)
        ref = _brute_force_marks(data, starts, ends, n)
        assert (ours == ref).all(), (trial, docs, n)


def test_cut_spans_keeps_valid_utf8():
    text = "héllo wörld ünïcode"
    data = text.encode()
    out = cut_spans(text, [(1, 4), (8, 9)])
    out.encode("utf-8")
    assert out.startswith("h") and len(out.encode()) <= len(data) - 4
