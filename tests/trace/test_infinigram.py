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
