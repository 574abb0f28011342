"""The token dataset format: what is written reads back (tokens, offsets, sources, ids), and every
broken or foreign dataset is a one-line error naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from olmoflow.data.tokens import FORMAT, ShardWriter, dtype_for, open_token_dataset, write_meta
from olmoflow.errors import OlmoflowError

EOS = 0


def _docs(vocab: int, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.append(rng.integers(1, vocab, size=int(rng.integers(1, 40))), EOS) for _ in range(n)]


def _write(out, vocab: int = 500, seed: int = 0):
    """Two shards: 'web' (documents from two original sources, non-ASCII ids) and 'code'."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    shards = []
    for shard, n in (("web", 30), ("code", 12)):
        docs = _docs(vocab, n, seed + n)
        ids = [f"{shard}/é-{i}" for i in range(n)]
        srcs = [shard if shard == "code" or i % 3 else "forum" for i in range(n)]
        with ShardWriter(out, f"{shard}-00000", shard, dtype_for(vocab)) as w:
            for d, i, s in zip(docs, ids, srcs):
                w.add(d, i, s)
        shards.append(w.entry)
        written[shard] = (docs, ids, srcs)
    write_meta(out, shards, vocab, EOS, "test")
    return written


def _one_line_error(path, match: str, **kw) -> str:
    with pytest.raises(OlmoflowError, match=match) as e:
        open_token_dataset(path, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("vocab, dtype", [(500, "<u2"), (100_000, "<u4")])
def test_round_trip_keeps_tokens_offsets_sources_and_ids(tmp_path, vocab, dtype):
    written = _write(tmp_path / "d", vocab)
    ds = open_token_dataset(tmp_path / "d", vocab_size=vocab)
    assert ds.meta["format"] == FORMAT and ds.dtype == np.dtype(dtype).name and ds.vocab_size == vocab
    assert [s.source for s in ds.shards] == ["web", "code"]
    for shard in ds.shards:
        docs, ids, srcs = written[shard.source]
        assert isinstance(shard.tokens, np.memmap)  # memory-mapped, not loaded
        raw = np.fromfile(shard.path, dtype=dtype)  # headerless little-endian ids
        np.testing.assert_array_equal(raw, np.concatenate(docs))
        np.testing.assert_array_equal(shard.idx, np.cumsum([0] + [len(d) for d in docs]))
        assert [(r["id"], r["source"]) for r in shard.records()] == list(zip(ids, srcs))
        for i in (0, len(docs) // 2, len(docs) - 1):
            np.testing.assert_array_equal(shard.document(i), docs[i])
            assert shard.record(i) == {"id": ids[i], "source": srcs[i]}
        # the document (and id) of every token
        owner = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
        assert [shard.doc_at(t) for t in range(shard.n_tokens)] == owner.tolist()
    if vocab > 65536:
        assert max(int(d.max()) for d in written["web"][0]) > 65535  # ids above uint16 survive
    got = [(d.id, d.source, d.tokens.tolist()) for d in ds.documents("web")]
    docs, ids, srcs = written["web"]
    assert got == [(i, s, d.tolist()) for d, i, s in zip(docs, ids, srcs)]
    assert ds.n_docs == ds.meta["n_docs"] == 42 and ds.n_tokens == ds.meta["n_tokens"]


def test_same_documents_give_byte_identical_datasets(tmp_path):
    _write(tmp_path / "a")
    _write(tmp_path / "b")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["code-00000.bin", "code-00000.docs.jsonl", "code-00000.idx.npy", "meta.json",
                     "web-00000.bin", "web-00000.docs.jsonl", "web-00000.idx.npy"]  # no temporary files left
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_a_failed_write_leaves_no_shard(tmp_path):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, "web-00000", "web", "uint16") as w:
        w.add(np.array([5, EOS]), "a")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_old_or_foreign_format_is_a_one_line_error(tmp_path):
    _write(tmp_path / "d")
    meta_path = tmp_path / "d" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": "olmoflow-tokens-v1"}))
    msg = _one_line_error(tmp_path / "d", "meta.json")
    assert "'olmoflow-tokens-v1'" in msg and repr(FORMAT) in msg and str(meta_path) in msg
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "format"}))
    assert "None" in _one_line_error(tmp_path / "d", "format")


def test_index_is_validated_on_open(tmp_path):
    _write(tmp_path / "d")
    idx_path = tmp_path / "d" / "web-00000.idx.npy"
    good = np.load(idx_path)
    bad = good.copy()
    bad[3], bad[4] = bad[4], bad[3]  # not monotone
    np.save(idx_path, bad)
    _one_line_error(tmp_path / "d", r"web-00000\.idx\.npy: document offsets must rise")
    np.save(idx_path, good[:-1])  # last offset short of the file's tokens
    _one_line_error(tmp_path / "d", r"web-00000\.idx\.npy: document offsets must run from 0 to the shard's \d+ tokens")
    np.save(idx_path, good)
    with open(tmp_path / "d" / "code-00000.bin", "ab") as f:
        f.write(b"\0\0")  # one token more than meta.json says
    _one_line_error(tmp_path / "d", r"code-00000\.bin: holds \d+ uint16 tokens but meta\.json says n_tokens")


def test_dtype_must_fit_the_vocabulary(tmp_path):
    _write(tmp_path / "d", vocab=500)
    meta_path = tmp_path / "d" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "vocab_size": 70_000}))
    _one_line_error(tmp_path / "d", r"meta\.json: dtype uint16 cannot hold vocab_size 70000")
    meta_path.write_text(json.dumps(meta))
    _one_line_error(tmp_path / "d", "exceeds the model's vocab_size 256", vocab_size=256)


def test_document_records_must_exist_and_match_the_documents(tmp_path):
    _write(tmp_path / "d")
    docs_path = tmp_path / "d" / "web-00000.docs.jsonl"
    lines = docs_path.read_text(encoding="utf-8").splitlines(keepends=True)
    docs_path.write_text("".join(lines[:-1]), encoding="utf-8")  # one record lost
    shard = open_token_dataset(tmp_path / "d").shards[0]
    with pytest.raises(OlmoflowError, match=r"web-00000\.docs\.jsonl: holds 29 document records but web-00000\.bin "
                                            r"has 30 documents"):
        shard.record(0)
    docs_path.unlink()
    _one_line_error(tmp_path / "d", r"web-00000\.docs\.jsonl: document ids of web-00000\.bin not found")
