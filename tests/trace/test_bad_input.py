"""Bad input gets a one-line error, never a wrong answer: an index from another tokenizer, characters the
tokenizer maps to unknown ids, an empty response, a truncated or corrupted index file."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import pytest
from traceutil import token_dataset, wordlevel_tokenizer

from olmoflow.errors import OlmoflowError
from olmoflow.trace import TraceIndex, build_index, trace_text


@pytest.fixture(scope="module")
def word_index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("w")
    tok = wordlevel_tokenizer(tmp / "tok", 20)
    r = random.Random(0)
    docs = [[r.randrange(20) for _ in range(12)] for _ in range(30)]
    docs[0] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]  # "w3 ... w8" occurs once
    build_index([token_dataset(tmp / "data", docs, tok, eos=20)], tmp / "idx", quiet=True)
    return tmp


def _copy(src, tmp_path):
    dst = tmp_path / "idx"
    shutil.copytree(src / "idx", dst)
    return dst


def test_empty_response(word_index):
    ix = TraceIndex.open(word_index / "idx")
    for text in ("", "   \n "):
        with pytest.raises(OlmoflowError, match="empty response"):
            trace_text(ix, text)


def test_unknown_characters_refused(word_index):
    ix = TraceIndex.open(word_index / "idx")
    assert trace_text(ix, "w3 w4 w5 w6 w7")["spans"]
    with pytest.raises(OlmoflowError, match=r"'caf\xe9' at offset 6 map to the tokenizer's unknown token '\[UNK\]'"):
        trace_text(ix, "w3 w4 café w6")


def test_index_from_another_tokenizer_refused(word_index, corpus, tmp_path):
    with pytest.raises(OlmoflowError) as e:
        TraceIndex.open(corpus["idx"], tokenizer=word_index / "tok")
    msg = str(e.value)
    assert str(corpus["tok"]) in msg and str(word_index / "tok") in msg and "\n" not in msg
    TraceIndex.open(corpus["idx"], tokenizer=corpus["tok"])  # its own tokenizer: fine
    # building one index over data from two tokenizers is refused too, naming both
    other = wordlevel_tokenizer(tmp_path / "tok2", 20)
    (other / "tokenizer.json").write_text((other / "tokenizer.json").read_text().replace('"w19"', '"w19x"'))
    data2 = token_dataset(tmp_path / "d2", [[1, 2, 3]], other, eos=20)
    with pytest.raises(OlmoflowError, match=f"tokenized with {other}.*differs from tokenizer"):
        build_index([word_index / "data", data2], tmp_path / "idx2", quiet=True)


def test_truncated_index_file_refused(word_index, tmp_path):
    idx = _copy(word_index, tmp_path)
    sa = idx / "shard-00000.sa"
    sa.write_bytes(sa.read_bytes()[:-4])
    with pytest.raises(OlmoflowError, match=r"shard-00000.sa: \d+ bytes, trace.json says \d+ \(truncated"):
        TraceIndex.open(idx)


@pytest.mark.parametrize("name", ["shard-00000.tokens", "shard-00000.sa", "docs.jsonl", "unigram.npy"])
def test_corrupted_index_file_refused(word_index, tmp_path, name):
    idx = _copy(word_index, tmp_path)
    f = idx / name
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    f.write_bytes(bytes(data))
    with pytest.raises(OlmoflowError, match=f"{name}: checksum mismatch"):
        TraceIndex.open(idx)


def test_not_an_index(tmp_path, word_index):
    with pytest.raises(OlmoflowError, match="not a trace index"):
        TraceIndex.open(tmp_path)
    idx = _copy(word_index, tmp_path)
    (idx / "trace.json").write_text("{oops")
    with pytest.raises(OlmoflowError, match="trace.json: invalid JSON"):
        TraceIndex.open(idx)
    (idx / "trace.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(OlmoflowError, match="index format 'other'"):
        TraceIndex.open(idx)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "olmoflow.cli", "trace", *map(str, args)], capture_output=True,
                          text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_cli_index_trace_json_and_errors(word_index, tmp_path):
    r = _cli("index", "--data", word_index / "data", "--out", tmp_path / "idx", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "30 documents" in r.stdout and "bytes/token" in r.stdout
    r = _cli("--index", tmp_path / "idx", "--text", "w3 w4 w5 w6 w7 w8", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["spans"][0]["text"] == "w3 w4 w5 w6 w7 w8" and res["spans"][0]["count"] == 1
    r = _cli("--index", tmp_path / "idx", "--text", "w3 w4 w5 w6 w7 w8")
    assert r.returncode == 0 and "count=1" in r.stdout
    for args, want in ((("--text", " "), "empty response"), (("--text", "w1 zz"), "unknown token")):
        r = _cli("--index", tmp_path / "idx", *args)
        assert r.returncode == 1 and want in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    (tmp_path / "idx" / "shard-00000.tokens").write_bytes(b"\0\0")
    r = _cli("--index", tmp_path / "idx", "--text", "w1 w2 w3")
    assert r.returncode == 1 and "truncated" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_model_generation_traced_and_other_tokenizer_refused(corpus, word_index, tmp_path):
    """``--model``: generate then trace; a model whose tokenizer is not the index's is refused, naming both."""
    from olmoflow.flow.stages.pretrain import _tokenizer_ids
    from olmoflow.train import TrainConfig, pretrain

    cfg = {"run_dir": str(tmp_path / "run"), "model": "tiny-1m", "model_overrides": _tokenizer_ids(corpus["tok"]),
           "data": {"paths": [str(corpus["root"] / "tokens")]}, "seq_len": 32, "micro_batch": 2,
           "global_batch_tokens": 64, "steps": 2, "precision": "fp32"}
    pretrain(TrainConfig.model_validate(cfg), quiet=True)
    r = _cli("--index", corpus["idx"], "--model", tmp_path / "run", "--tokenizer", corpus["tok"], "--prompt", "Kato",
             "--max-new-tokens", "8", "--json")
    if r.returncode == 0:
        res = json.loads(r.stdout)
        assert res["prompt"] == "Kato" and isinstance(res["spans"], list)
    else:  # a 2-step model may say nothing: that is a one-line error too
        assert r.returncode == 1 and "generated only whitespace" in r.stderr, r.stderr
    r = _cli("--index", word_index / "idx", "--model", tmp_path / "run", "--tokenizer", corpus["tok"],
             "--prompt", "Kato")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and str(corpus["tok"]) in lines[0]
    assert str(word_index / "idx" / "tokenizer.json") in lines[0]
