"""Tokenize into the documented token format and mix to target ratios."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
from datautil import sentence_text, vocab, write_jsonl
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from olmoflow.data.mix import mix
from olmoflow.data.tokenize import tokenize
from olmoflow.data.tokens import FORMAT, open_token_dataset
from olmoflow.errors import OlmoflowError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    r = random.Random(0)
    words = vocab(300)
    docs = {
        "code": [{"id": f"c{i}", "text": f"def f{i}(x):\n    return x * {i} + {r.randint(0, 99)}\n", "source": "code"}
                 for i in range(120)],
        "prose": [{"id": f"p{i}", "text": sentence_text(r, words, r.randint(20, 80)), "source": "prose"}
                  for i in range(150)],
    }
    files = [write_jsonl(root / f"{k}.jsonl", v) for k, v in docs.items()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([d["text"] for v in docs.values() for d in v], trainer)
    tok_dir = root / "tokenizer"
    tok_dir.mkdir()
    tok.save(str(tok_dir / "tokenizer.json"))
    return {"root": root, "files": files, "docs": docs, "tok": tok, "tok_dir": tok_dir}


def test_tokenize_format_and_roundtrip(corpus, tmp_path):
    meta = tokenize(corpus["files"], corpus["tok_dir"], tmp_path / "t", workers=2, quiet=True)
    eos = corpus["tok"].token_to_id("<|endoftext|>")
    on_disk = json.loads((tmp_path / "t" / "meta.json").read_text())
    assert on_disk == meta
    assert meta["format"] == FORMAT and meta["dtype"] == "uint16" and meta["eos_token_id"] == eos
    assert meta["n_docs"] == 270 and set(meta["sources"]) == {"code", "prose"}
    assert meta["n_tokens"] == sum(meta["sources"].values()) == sum(s["n_tokens"] for s in meta["shards"])
    for sh in meta["shards"]:
        raw = np.fromfile(tmp_path / "t" / sh["path"], dtype="<u2")
        idx = np.load(tmp_path / "t" / sh["path"].replace(".bin", ".idx.npy"))
        assert idx.dtype == np.int64 and idx[0] == 0 and idx[-1] == len(raw) == sh["n_tokens"]
        assert len(idx) == sh["n_docs"] + 1
        assert (raw[idx[1:] - 1] == eos).all()
    prose = list(open_token_dataset(tmp_path / "t").documents("prose"))
    assert [corpus["tok"].decode(d.tokens[:-1].tolist()) for d in prose] == [d["text"] for d in corpus["docs"]["prose"]]
    assert [(d.id, d.source) for d in prose] == [(d["id"], "prose") for d in corpus["docs"]["prose"]]


def test_tokenize_is_deterministic_across_worker_counts(corpus, tmp_path):
    tokenize(corpus["files"], corpus["tok_dir"], tmp_path / "a", workers=1, quiet=True)
    tokenize(corpus["files"], corpus["tok_dir"], tmp_path / "b", workers=2, quiet=True)
    for f in sorted((tmp_path / "a").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name


def test_mix_hits_ratios_with_up_and_downsampling(corpus, tmp_path):
    t = tmp_path / "t"
    meta = tokenize(corpus["files"], corpus["tok_dir"], t, workers=1, quiet=True)
    total = 3 * meta["sources"]["code"]  # forces prose downsampling or code upsampling depending on ratio
    info = mix({"code": t, "prose": t}, tmp_path / "m", ratios={"code": 0.7, "prose": 0.3}, total_tokens=total,
               seed=3, quiet=True)
    assert info["sources"]["code"]["repetition"] > 1.0  # upsampled
    m = open_token_dataset(tmp_path / "m")
    assert m.meta["n_tokens"] == info["total_tokens"]
    assert abs(info["achieved_ratios"]["code"] - 0.7) < 0.02
    for src, v in info["sources"].items():  # targets met, overshooting by less than one document
        longest = max(len(d.tokens) for d in open_token_dataset(t).documents(src))
        assert 0 <= v["tokens"] - v["target_tokens"] < longest
    # every mixed document is a whole document of its source, under its id, with its repeat count
    code_docs = {d.id: d.tokens.tolist() for d in open_token_dataset(t).documents("code")}
    mixed = list(m.documents("code"))
    assert all(d.tokens.tolist() == code_docs[d.id] and d.source == "code" for d in mixed)
    copies = Counter(d.id for d in mixed)
    assert max(copies.values()) > 1 and set(copies) == set(code_docs)  # upsampled: every doc, some twice
    (shard,) = [s for s in m.shards if s.source == "code"]
    assert [r["repeats"] for r in shard.records()] == [copies[d.id] for d in mixed]
    again = mix({"code": t, "prose": t}, tmp_path / "m2", ratios={"code": 0.7, "prose": 0.3}, total_tokens=total,
                seed=3, quiet=True)
    assert again == info
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert "code-00000.docs.jsonl" in files
    assert all((tmp_path / "m" / f).read_bytes() == (tmp_path / "m2" / f).read_bytes() for f in files)


def test_cli_tokenize_and_mix(corpus, tmp_path, capsys):
    from olmoflow.cli import main

    assert main(["tokenize", "--input", *map(str, corpus["files"]), "--tokenizer", str(corpus["tok_dir"]),
                 "--output", str(tmp_path / "t"), "--workers", "1", "--quiet"]) == 0
    assert main(["mix", "--input", f"code={tmp_path / 't'}", f"prose={tmp_path / 't'}", "--output",
                 str(tmp_path / "m"), "--tokens", "code=500,prose=1000", "--seed", "1", "--quiet"]) == 0
    info = json.loads((tmp_path / "m" / "mix.json").read_text())
    assert 500 <= info["sources"]["code"]["tokens"] < 600 and 1000 <= info["sources"]["prose"]["tokens"] < 1200
    assert main(["mix", "--input", f"code={tmp_path / 't'}", "--output", str(tmp_path / "x"),
                 "--ratios", "code=1,web=2", "--total-tokens", "10", "--quiet"]) == 1
    assert "no input for source(s) ['web']" in capsys.readouterr().err


def test_tokenize_quarantines_and_counts_bad_records(corpus, tmp_path, capsys):
    """A lone surrogate escape ("\\ud800") or a malformed line is skipped with a reason and counted."""
    from olmoflow.cli import main

    src = tmp_path / "bad.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        f.write(json.dumps({"id": "a", "text": "def f(x):\n    return x\n", "source": "code"}) + "\n")
        f.write('{"id": "b", "text": "lone \\ud800 surrogate", "source": "code"}\n')
        f.write('{"id": "c", "text": "no closing brace"\n')
        f.write(json.dumps({"id": "d", "title": "no text"}) + "\n")
        f.write(json.dumps({"id": "e", "text": "def g(y):\n    return y\n", "source": "code"}) + "\n")
    assert main(["tokenize", "--input", str(src), "--tokenizer", str(corpus["tok_dir"]),
                 "--output", str(tmp_path / "t"), "--workers", "1", "--quiet"]) == 0
    assert "skipped 3 bad input records" in capsys.readouterr().err
    meta = json.loads((tmp_path / "t" / "meta.json").read_text())
    assert meta["n_docs"] == 2 and meta["quarantined"] == 3
    assert meta["quarantined_by_reason"] == {"invalid_unicode": 1, "malformed_json": 1, "missing_text": 1}
    recs = [json.loads(x) for x in (tmp_path / "t" / "quarantine.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(" ")[0]) for r in recs] == [
        (2, "invalid_unicode"), (3, "malformed_json"), (4, "missing_text")]
    assert all(r["file"] == str(src) for r in recs)


def test_tokenize_keeps_a_cut_zst_files_complete_documents_and_names_the_file(corpus, tmp_path, capsys):
    """A .zst input cut mid-stream (a broken download) is reported as truncated_file, with a warning
    naming it; the documents before the cut are tokenized, the cut-off last line is not."""
    import zstandard

    r, words = random.Random(1), vocab(300)
    docs = [{"id": f"z{i}", "text": sentence_text(r, words, 60), "source": "prose"} for i in range(600)]  # 3 blocks
    blob = zstandard.ZstdCompressor(level=3).compress("".join(json.dumps(d) + "\n" for d in docs).encode())
    src = tmp_path / "prose.jsonl.zst"
    src.write_bytes(blob[: len(blob) * 2 // 3])
    k = b"".join(zstandard.ZstdDecompressor().read_to_iter(src.read_bytes())).count(b"\n")
    meta = tokenize([corpus["files"][0], src], corpus["tok_dir"], tmp_path / "t", workers=2, quiet=True)
    assert 0 < k < len(docs)
    assert meta["n_docs"] == len(corpus["docs"]["code"]) + k and meta["sources"]["prose"] > 0
    assert meta["quarantined_by_reason"] == {"truncated_file": 1}
    (rec,) = [json.loads(x) for x in (tmp_path / "t" / "quarantine.jsonl").read_text().splitlines()]
    assert rec["file"] == str(src) and rec["line"] == k + 1
    assert f"warning: damaged input file {src}: truncated_file" in capsys.readouterr().err


def test_mix_shows_a_token_progress_bar_on_stderr_and_quiet_silences_it(corpus, tmp_path, capsys):
    t = tmp_path / "t"
    tokenize(corpus["files"], corpus["tok_dir"], t, workers=1, quiet=True)
    mix({"code": t, "prose": t}, tmp_path / "m", tokens={"code": 300, "prose": 600}, quiet=False)
    out, err = capsys.readouterr()
    assert "mix code" in err and "tokens" in err and "ETA" in err  # the bar, with its unit
    assert out.startswith("mix code: ") and "━" not in out  # stdout keeps the per-source summary
    mix({"code": t, "prose": t}, tmp_path / "q", tokens={"code": 300, "prose": 600}, quiet=True)
    assert capsys.readouterr() == ("", "")


def test_every_training_token_traces_back_to_its_document_id_through_tokenize_and_mix(corpus, tmp_path):
    """tokenize -> mix -> the trainer's dataset: a token's document id names the Dolma document it came from,
    and the mix says how often each (upsampled) document repeats."""
    from olmoflow.train.data import FixedLengthSource

    t = tmp_path / "t"
    meta = tokenize(corpus["files"], corpus["tok_dir"], t, workers=1, quiet=True)
    mix({"code": t, "prose": t}, tmp_path / "m", tokens={"code": 2 * meta["sources"]["code"] + 7, "prose": 900},
        seed=0, quiet=True)
    tok, eos = corpus["tok"], meta["eos_token_id"]
    text = {d["id"]: d["text"] for docs in corpus["docs"].values() for d in docs}
    ds = open_token_dataset(tmp_path / "m", vocab_size=400)  # as the trainer opens it
    rng = np.random.default_rng(0)
    for shard in ds.shards:
        window = FixedLengthSource(shard.source, [shard], seq_len=16)[3]["input_ids"]  # what training reads
        np.testing.assert_array_equal(window, shard.tokens[48:64])
        for pos in [48, *rng.integers(0, shard.n_tokens, size=20).tolist()]:
            k = shard.doc_at(pos)
            rec = shard.record(k)
            assert rec["source"] == shard.source
            assert shard.document(k).tolist() == tok.encode(text[rec["id"]], add_special_tokens=False).ids + [eos]
        ids = [r["id"] for r in shard.records()]
        assert all(r["repeats"] == ids.count(r["id"]) for r in shard.records())
    code = next(s for s in ds.shards if s.source == "code")
    assert min(r["repeats"] for r in code.records()) >= 2  # upsampled past two whole passes


def test_a_directory_of_documents_is_expanded_by_one_rule(tmp_path):
    """tokenize, curate and tokenizer training see the same files of a directory, in the same order."""
    from olmoflow.data.documents import expand_dir, expand_inputs, list_doc_files
    from olmoflow.tokenizer.corpus import SUPPORTED

    root = tmp_path / "in"
    docs = ["a/z.jsonl.gz", "a-b.ndjson.zst", "b.jsonl", "c.parquet", "cur/documents/k.jsonl", "d.json.gz",
            "sub/deeper/x.jsonl.zst"]  # in order: each directory's entries sorted by name
    other = ["notes.txt", "sub/blob.bin"]
    skipped = [".hidden.jsonl", ".git/x.jsonl", "manifest.json", "stats.json", "quarantine.jsonl",
               "quarantine/q.jsonl.gz", "__pycache__/m.jsonl", "cur/stats.json", "cur/removed/r.jsonl.gz",
               "cur/quarantine/q.jsonl.gz"]
    for f in docs + other + skipped:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("{}\n")
    expected = [root / f for f in docs]
    assert expand_dir(root) == list_doc_files(root) == expected
    assert [p.name for p in list_doc_files(root, SUPPORTED)] == ["z.jsonl.gz", "a-b.ndjson.zst", "b.jsonl", "k.jsonl",
                                                                "d.json.gz", "notes.txt", "x.jsonl.zst"]
    shards = expand_inputs(root)
    assert [s.path for s in shards if s.kind == "docs"] == [str(p) for p in expected]
    assert [f for s in shards if s.kind == "text" for f in s.files] == other
    assert list_doc_files([root / "b.jsonl", root / "manifest.json"])[-1] == root / "manifest.json"  # named: kept
    (root / "empty").mkdir()
    with pytest.raises(OlmoflowError, match=r"empty: no input files"):
        list_doc_files(root / "empty")
