"""Token datasets: validation errors, fixed-length windows, packing with doc masks, mixtures."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from train_testlib import EOS, PAD, random_docs, write_token_dataset

from olmoflow.errors import OlmoflowError
from olmoflow.train.data import (
    IGNORE_INDEX,
    DataPosition,
    FixedLengthSource,
    MixtureSampler,
    PackedSource,
    build_sources,
    open_token_dataset,
    pack_best_fit,
)


def test_fixed_length_windows_cover_the_stream_with_shifted_labels(tmp_path):
    docs = random_docs(40, seed=3)
    ds = open_token_dataset(write_token_dataset(tmp_path / "d", {"web": docs}, shards_per_source=3))
    stream = np.concatenate([np.asarray(d + [EOS]) for d in docs])
    src = FixedLengthSource("web", ds.shards, seq_len=16)
    assert len(src) == (len(stream) - 1) // 16
    for i in range(len(src)):  # windows span shard boundaries too (3 shards)
        item = src[i]
        np.testing.assert_array_equal(item["input_ids"], stream[i * 16 : i * 16 + 16])
        np.testing.assert_array_equal(item["labels"], stream[i * 16 + 1 : i * 16 + 17])


def test_packed_sequences_hold_whole_documents_and_never_predict_across_them(tmp_path):
    docs = random_docs(60, seed=4, max_len=50) + [list(range(2, 90))]  # one doc longer than seq_len
    ds = open_token_dataset(write_token_dataset(tmp_path / "d", {"web": docs}, shards_per_source=2))
    T = 64
    src = PackedSource("web", ds.shards, seq_len=T, pad_token_id=PAD)
    seen = Counter()
    for i in range(len(src)):
        item = src[i]
        ids, labels, doc = item["input_ids"], item["labels"], item["doc_ids"]
        assert ids.shape == labels.shape == doc.shape == (T,)
        for t in range(T - 1):
            if labels[t] != IGNORE_INDEX:
                assert doc[t] == doc[t + 1] and labels[t] == ids[t + 1]
            elif doc[t] == doc[t + 1] and ids[t + 1] != PAD:
                pytest.fail("a within-document next token was masked")
        for d in np.unique(doc):
            seg = ids[doc == d]
            if not (seg == PAD).all():
                seen[tuple(seg.tolist())] += 1
    # every document (split into seq_len pieces when longer) appears exactly once
    expected = Counter()
    for d in docs:
        full = d + [EOS]
        for s in range(0, len(full), T):
            expected[tuple(full[s : s + T])] += 1
    assert seen == expected
    # best fit packs more densely than filling sequences in document order
    lengths = [len(k) for k in expected.elements()]
    naive, room = 0, 0
    for n in lengths:
        if n > room:
            naive, room = naive + 1, T
        room -= n
    assert len(src) < naive


def test_best_fit_decreasing_packing():
    bins = pack_best_fit(np.array([5, 7, 3, 2, 6, 1]), capacity=8)
    assert sorted(sorted(b) for b in bins) == [[0, 2], [1, 5], [3, 4]]
    with pytest.raises(ValueError):
        pack_best_fit(np.array([9]), capacity=8)


def test_mixture_hits_target_ratios_deterministically(tmp_path):
    path = write_token_dataset(tmp_path / "d", {"web": random_docs(200, 0), "code": random_docs(40, 1)})
    sources = build_sources([open_token_dataset(path)], "fixed", 16, PAD)
    sizes = {s.name: len(s) for s in sources}
    m = MixtureSampler(sources, {"web": 0.5, "code": 0.5}, seed=7)
    n = m.epoch_size
    assert n == sum(sizes.values())
    names = Counter(m.source_of(0, i) for i in range(n))
    assert abs(names["code"] - n / 2) <= 1  # code is upsampled ~3.7x
    again = MixtureSampler(sources, {"web": 0.5, "code": 0.5}, seed=7)
    first = [m.get(0, i)["input_ids"].tolist() for i in range(10)]
    assert first == [again.get(0, i)["input_ids"].tolist() for i in range(10)]
    assert first != [m.get(1, i)["input_ids"].tolist() for i in range(10)]  # reshuffled per epoch
    other_seed = MixtureSampler(sources, {"web": 0.5, "code": 0.5}, seed=8)
    assert first != [other_seed.get(0, i)["input_ids"].tolist() for i in range(10)]
    # natural proportions without a mixture; every instance exactly once per epoch
    nat = MixtureSampler(sources, seed=0)
    assert Counter(nat.source_of(0, i) for i in range(n)) == Counter(sizes)
    with pytest.raises(OlmoflowError, match="unknown source"):
        MixtureSampler(sources, {"books": 1.0})


def test_data_position_rolls_into_next_epoch(tmp_path):
    path = write_token_dataset(tmp_path / "d", {"web": random_docs(20, 0)})
    m = MixtureSampler(build_sources([open_token_dataset(path)], "fixed", 16, PAD), seed=0)
    slots, nxt = m.positions(DataPosition(0, m.epoch_size - 2), 5)
    assert slots == [(0, m.epoch_size - 2), (0, m.epoch_size - 1), (1, 0), (1, 1), (1, 2)]
    assert nxt == DataPosition(1, 3)


def test_missing_shard_is_a_one_line_error_naming_the_file(tmp_path):
    path = write_token_dataset(tmp_path / "d", {"web": random_docs(5, 0)})
    (path / "web-00000.bin").unlink()
    with pytest.raises(OlmoflowError, match=r"web-00000\.bin.*not found") as e:
        open_token_dataset(path)
    assert "\n" not in str(e.value)
    with pytest.raises(OlmoflowError, match="meta.json"):
        open_token_dataset(tmp_path / "nowhere")


def test_dtype_must_fit_vocab_and_match_file_size(tmp_path):
    path = write_token_dataset(tmp_path / "d", {"web": random_docs(5, 0)}, vocab_size=100352)
    with pytest.raises(OlmoflowError, match=r"meta\.json.*uint16 cannot hold vocab_size 100352"):
        open_token_dataset(path)
    # shard written as uint32 while meta says uint16: sizes disagree with n_tokens
    path = write_token_dataset(tmp_path / "e", {"web": random_docs(5, 0)}, dtype="uint32")
    meta = json.loads((path / "meta.json").read_text())
    meta["dtype"] = "uint16"
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(OlmoflowError, match=r"web-00000\.bin.*dtype mismatch"):
        open_token_dataset(path)
    # dataset vocabulary larger than the model's
    path = write_token_dataset(tmp_path / "f", {"web": random_docs(5, 0)}, vocab_size=4096)
    with pytest.raises(OlmoflowError, match="exceeds the model's vocab_size 512"):
        open_token_dataset(path, vocab_size=512)
