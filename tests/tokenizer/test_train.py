"""Training: exact round-trips, special tokens, cl100k-style splitting, determinism, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, pre_tokenizers

from olmoflow.cli import main as olmoflow_main
from olmoflow.errors import OlmoflowError
from olmoflow.tokenizer import (
    MIN_VOCAB_SIZE,
    SPECIAL_TOKENS,
    SPLIT_PATTERN,
    Tok,
    load_tokenizer,
    train_tokenizer,
)

NASTY = [
    "",
    " ",
    "  leading and trailing  ",
    "\r\n",
    "line1\r\nline2\n\n\nline3\r",
    "\x00",
    "a\x00b\x01\x02\x7f\x1b[31m",
    "\t\ttabs\t",
    "😀🚀👩‍💻👍🏽🇫🇷",
    "日本語のテキスト、中文文本，한국어 텍스트",
    "e\u0301 n\u0303 a\u0308\u0308\u0308",  # combining marks (must not be NFC-normalised)
    "\u200b\u200d\ufeff\u2028\u2029",
    "\U0010ffff\ue000\uffff",
    "ﬁ ﬀ Ⅻ ① ²",  # compatibility chars (must not be NFKC-normalised)
    "مرحبا بالعالم",
    "123456789 3.14159 1,000,000 0x1F",
    "<|endoftext|><|pad|><|im_start|>user\nhi<|im_end|>",
    "<think>reasoning</think><functions></functions><function_calls>f(x=1)</function_calls>",
    "<|fim_prefix|>def f(<|fim_suffix|>)<|fim_middle|>x",
    "<|endoftext",  # half a special token is plain text
    "\\u0000 \\n not escapes",
    "x" * 5000,
]


@pytest.fixture(scope="module")
def tok(tok_dir) -> Tok:
    return Tok.from_dir(tok_dir)


@pytest.mark.parametrize("text", NASTY)
def test_nasty_strings_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_any_unicode_round_trips(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(SPECIAL_TOKENS + ["a", " ", "\n", "<", "|", ">", "é", "1"]), max_size=30))
def test_special_tokens_are_atomic_in_any_context(tok, parts):
    text = "".join(parts)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    expected = [SPECIAL_TOKENS.index(p) for p in parts if p in SPECIAL_TOKENS]
    assert [i for i in ids if i < len(SPECIAL_TOKENS)] == expected


def test_special_tokens_fixed_low_ids(tok):
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_id(t) == i
        assert tok.encode(t) == [i]
        assert tok.decode([i]) == t
    assert (tok.eos_id, tok.pad_id) == (0, 1)
    assert tok.stop_ids == [tok.token_id("<|im_end|>"), 0]
    # the 256 byte symbols follow the special tokens: every byte is one token
    assert len({tok.encode(chr(b))[0] for b in range(128)}) == 128


def test_no_bos_or_eos_added(tok):
    ids = tok.encode("hello world")
    assert tok.eos_id not in ids and ids and tok.decode(ids) == "hello world"


def test_vocab_size_reached_and_merges_learned(tok, docs_maker):
    assert tok.vocab_size == 1024
    text = docs_maker(20, seed=99)[0]
    assert len(tok.encode(text)) < 0.5 * len(text.encode("utf-8"))  # compresses


SPLIT = pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")
# Characters assigned in Python 3.11's Unicode 14: newer ones (e.g. U+323B0) are letters to `regex`
# (Unicode 17) but not yet to the Oniguruma inside `tokenizers`.
ASSIGNED = st.characters(exclude_categories=("Cn", "Cs"))


@settings(max_examples=150, deadline=None)
@given(st.text(st.sampled_from(list("ab1234567890 \n\r\t'sS.,!?é日😀-")), max_size=60) | st.text(ASSIGNED, max_size=60))
def test_pre_tokenizer_matches_cl100k_regex(text):
    """Peer check: our split equals Python `regex` running the cl100k_base pattern."""
    regex = pytest.importorskip("regex")
    ours = [piece for piece, _ in SPLIT.pre_tokenize_str(text)]
    assert ours == regex.findall(SPLIT_PATTERN, text)


def test_digits_split_in_groups_of_at_most_three(tok):
    for piece in (tok.decode([i]) for i in tok.encode("1234567 99999 2024")):
        assert sum(c.isdigit() for c in piece) <= 3


def test_training_is_deterministic(corpus_dir, tok_dir, tmp_path):
    again = train_tokenizer([corpus_dir], tmp_path / "again", vocab_size=1024, quiet=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "train_info.json"):
        assert (again / name).read_bytes() == (tok_dir / name).read_bytes(), name


def test_max_docs_sampling_is_seeded(corpus_dir, tmp_path):
    def run(name, seed):
        out = train_tokenizer([corpus_dir], tmp_path / name, vocab_size=600, max_docs=200, seed=seed, quiet=True)
        return (out / "tokenizer.json").read_bytes(), json.loads((out / "train_info.json").read_text())

    a, info = run("a", 1)
    b, _ = run("b", 1)
    c, _ = run("c", 2)
    assert a == b and a != c
    assert info["docs_trained"] == 200 and info["docs_read"] > 200


def test_reads_zst_text_and_directories_and_quarantines_bad_lines(tmp_path, docs_maker):
    docs = docs_maker(300, seed=3)
    data = "".join(json.dumps({"text": t}) + "\n" for t in docs)
    data += "{not json\n" + json.dumps({"id": "x"}) + "\n" + json.dumps({"text": 5}) + "\n"
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data.encode()))
    (d / "b.txt").write_text("para one\n\npara two\n")
    (d / "ignored.bin").write_bytes(b"\xff\xfe")
    (d / "manifest.json").write_text('{\n  "metadata": "not documents"\n}\n')
    (d / ".hidden.jsonl").write_text("garbage\n")
    out = train_tokenizer([d], tmp_path / "tok", vocab_size=500, quiet=True)
    info = json.loads((out / "train_info.json").read_text())
    assert info["inputs"] == [str(d / "b.txt"), str(d / "sub" / "a.jsonl.zst")]
    assert info["docs_read"] == 300 + 2 and info["quarantined"] == 3
    bad = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert [(b["line"], b["reason"].split()[0]) for b in bad] == [
        (301, "malformed_json"), (302, "missing_text"), (303, "text_not_string")
    ]


def test_cut_or_empty_compressed_files_keep_texts_before_the_damage_and_are_named(tmp_path, docs_maker, capsys):
    """A .jsonl.zst cut mid-stream and an empty .jsonl.gz do not stop training: the texts before
    the damage are used, each file gets a truncated_file / corrupt_file record and a warning."""
    docs = docs_maker(1500, seed=7)  # several 128 KB zstd blocks, so a cut leaves whole ones
    data = "".join(json.dumps({"text": t}) + "\n" for t in docs).encode()
    d = tmp_path / "in"
    d.mkdir()
    blob = zstandard.ZstdCompressor().compress(data)
    (d / "a.jsonl.zst").write_bytes(blob[: len(blob) // 2])
    k = b"".join(zstandard.ZstdDecompressor().read_to_iter(blob[: len(blob) // 2])).count(b"\n")
    (d / "b.jsonl.gz").write_bytes(b"")  # empty: not even a gzip header
    out = train_tokenizer([d], tmp_path / "tok", vocab_size=500, quiet=False)
    info = json.loads((out / "train_info.json").read_text())
    assert 0 < k < len(docs) and info["docs_read"] == k and info["quarantined"] == 2
    bad = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert [(b["file"], b["line"], b["reason"].split()[0]) for b in bad] == [
        (str(d / "a.jsonl.zst"), k + 1, "truncated_file"), (str(d / "b.jsonl.gz"), 1, "truncated_file")]
    err = capsys.readouterr().err
    for name in ("a.jsonl.zst", "b.jsonl.gz"):
        assert f"warning: damaged input file {d / name}: truncated_file" in err


def test_curate_output_dir_means_its_documents(tmp_path, corpus_dir, tok_dir):
    curated = tmp_path / "curate"
    (curated / "removed").mkdir(parents=True)
    (curated / "removed" / "r.jsonl").write_text('{"text": "removed junk"}\n')
    (curated / "stats.json").write_text("{}")
    (curated / "documents").symlink_to(corpus_dir, target_is_directory=True)
    out = train_tokenizer([curated], tmp_path / "tok", vocab_size=1024, quiet=True)
    assert (out / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()


def test_same_training_from_plain_jsonl_and_gz(tmp_path, docs_maker, jsonl_gz_writer):
    docs = docs_maker(200, seed=5)
    plain = tmp_path / "a.jsonl"
    plain.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    gz = jsonl_gz_writer(tmp_path / "b.jsonl.gz", docs)
    a = train_tokenizer([plain], tmp_path / "ta", vocab_size=500, quiet=True)
    b = train_tokenizer([gz], tmp_path / "tb", vocab_size=500, quiet=True)
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


@pytest.mark.parametrize(
    "setup, kwargs, message",
    [
        ("missing", {}, "input not found"),
        ("empty_dir", {}, "no input files"),
        ("empty_jsonl", {}, "empty corpus"),
        ("ok", {"vocab_size": MIN_VOCAB_SIZE - 1}, "too small"),
        ("latin1", {}, "not UTF-8"),
    ],
)
def test_bad_input_one_line_error(tmp_path, setup, kwargs, message):
    path = tmp_path / "input"
    if setup == "empty_dir":
        path.mkdir()
    elif setup == "empty_jsonl":
        path = tmp_path / "empty.jsonl"
        path.write_text('\n{"text": ""}\n')
    elif setup == "ok":
        path = tmp_path / "ok.txt"
        path.write_text("hello\n")
    elif setup == "latin1":
        path = tmp_path / "latin.txt"
        path.write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(OlmoflowError) as err:
        train_tokenizer([path], tmp_path / "out", **{"vocab_size": 512, "quiet": True, **kwargs})
    msg = str(err.value)
    assert message in msg and "\n" not in msg
    if setup == "latin1":
        assert f"{path}:2" in msg


def test_cli_train_and_one_line_errors(corpus_dir, tok_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = olmoflow_main(["tokenizer", "train", "--input", str(corpus_dir), "--out", str(out),
                        "--vocab-size", "1024", "--quiet"])
    assert rc == 0
    assert (out / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()
    capsys.readouterr()
    rc = olmoflow_main(["tokenizer", "train", "--input", str(tmp_path / "nope"), "--out", str(out),
                        "--vocab-size", "1024"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "input not found" in err and "nope" in err
    rc = olmoflow_main(["tokenizer", "train", "--input", str(corpus_dir), "--out", str(out), "--vocab-size", "100"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and f"at least {MIN_VOCAB_SIZE}" in err


def test_cli_encode_and_chat(tok_dir, tmp_path, capsys):
    assert olmoflow_main(["tokenizer", "encode", "--tokenizer", str(tok_dir), "<|im_end|>hi"]) == 0
    ids = [int(x) for x in capsys.readouterr().out.split()]
    assert ids[0] == 3 and Tok.from_dir(tok_dir).decode(ids) == "<|im_end|>hi"
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps([{"role": "user", "content": "hi"}]))
    assert olmoflow_main(["tokenizer", "chat", str(conv), "--generation-prompt"]) == 0
    assert capsys.readouterr().out == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(OlmoflowError, match="tokenizer not found"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(OlmoflowError, match="not a valid tokenizer.json"):
        Tok.from_dir(tmp_path)


def test_markup_tokens_survive_skip_special_tokens(tok):
    ids = tok.encode("<|im_start|>assistant\n<think>x</think><function_calls>f()</function_calls><|im_end|>")
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>x</think><function_calls>f()</function_calls>"


def test_tokenizer_json_is_self_contained(tok_dir):
    data = json.loads(Path(tok_dir, "tokenizer.json").read_text())
    assert data["normalizer"] is None and data["post_processor"] is None
    assert [t["content"] for t in data["added_tokens"]] == SPECIAL_TOKENS


def test_split_digits_makes_every_digit_a_token(tmp_path):
    import json as _json

    from olmoflow.tokenizer import Tok, train_tokenizer

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(_json.dumps({"text": f"number {i * 137} and {i}"}) + "\n" for i in range(300)))
    split = Tok.from_dir(train_tokenizer([corpus], tmp_path / "split", vocab_size=400, quiet=True, split_digits=True))
    grouped = Tok.from_dir(train_tokenizer([corpus], tmp_path / "grouped", vocab_size=400, quiet=True))
    assert [split.decode([i]) for i in split.encode("x 12345 y")] == ["x", " ", "1", "2", "3", "4", "5", " ", "y"]
    assert any(len(grouped.decode([i])) > 1 and grouped.decode([i]).isdigit() for i in grouped.encode("x 12345 y"))
