"""Bad input to the tokenizer commands: invalid Unicode, malformed chat input, pathological text files,
an output path blocked by a file."""

from __future__ import annotations

import io
import json
import time

import pytest

from olmoflow.cli import main as olmoflow_main
from olmoflow.errors import OlmoflowError
from olmoflow.tokenizer import Tok, apply_chat_template, train_tokenizer
from olmoflow.tokenizer.corpus import CorpusStats, iter_texts


@pytest.fixture(scope="module")
def tok(tok_dir) -> Tok:
    return Tok.from_dir(tok_dir)


def test_jsonl_lone_surrogate_escape_is_quarantined_not_fatal(tmp_path):
    """Valid JSON can escape a lone surrogate ("\\ud800"); that line is quarantined, training goes on."""
    path = tmp_path / "docs.jsonl"
    good = "".join(json.dumps({"text": f"hello world number {i}"}) + "\n" for i in range(50))
    path.write_text(good + '{"text": "broken \\ud800 surrogate"}\n' + json.dumps({"text": "last doc"}) + "\n")
    out = train_tokenizer([path], tmp_path / "tok", vocab_size=300, quiet=True)
    info = json.loads((out / "train_info.json").read_text())
    assert info["docs_read"] == 51 and info["quarantined"] == 1
    (bad,) = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert bad["file"] == str(path) and bad["line"] == 51 and bad["reason"].startswith("invalid_unicode")


def test_all_lines_bad_says_so_in_the_empty_corpus_error(tmp_path):
    """A corpus whose every record is bad names what was wrong instead of a bare 'empty corpus'."""
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"content": f"doc {i}"}) + "\n" for i in range(5)))
    with pytest.raises(OlmoflowError) as err:
        train_tokenizer([path], tmp_path / "tok", vocab_size=300, quiet=True)
    msg = str(err.value)
    assert "empty corpus" in msg and "5 bad record" in msg and f"{path}:1: missing_text" in msg
    assert "\n" not in msg


def test_long_blank_line_runs_in_text_files_are_linear(tmp_path):
    """Paragraph splitting used to rescan every buffered line per blank line (quadratic)."""
    path = tmp_path / "blank.txt"
    text = "hello\n\n" + "\n" * 30000 + "  \n" * 10000 + "world\n"
    path.write_text(text)
    start = time.perf_counter()
    stats = CorpusStats()
    pieces = list(iter_texts([path], stats))
    assert time.perf_counter() - start < 2.0
    assert "".join(pieces) == text and pieces[0] == "hello\n\n" and stats.n_docs == 2


def test_encode_lone_surrogate_is_one_line_error(tok):
    for call in (lambda: tok.encode("ok \ud800 x"), lambda: tok.encode_batch(["fine", "a\udcffb"])):
        with pytest.raises(OlmoflowError, match="lone surrogate") as err:
            call()
        assert "\n" not in str(err.value)
    with pytest.raises(TypeError):  # not a string at all: still a programming error
        tok.encode(5)  # type: ignore[arg-type]


def test_cli_encode_non_utf8_argument_is_one_line_error(tok_dir, capsys):
    arg = b"a\xffb".decode("utf-8", "surrogateescape")  # how Python hands over a non-UTF-8 argv
    rc = olmoflow_main(["tokenizer", "encode", "--tokenizer", str(tok_dir), arg])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "lone surrogate" in err


@pytest.mark.parametrize(
    "data, message",
    [
        ({"messages": 5}, "expected a list of messages"),
        ({"messages": "hi"}, "expected a list of messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "tools": [5]}, "chat tool 0"),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tools": {"name": "f"}},
            "expected a list of tools",
        ),
        ({"messages": [{"role": "assistant", "tool_calls": ["f()"]}]}, "chat message 0: tool call 0"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"function": "f"}]}]},
            "chat message 0: tool call 0",
        ),
    ],
)
def test_cli_chat_malformed_input_is_one_line_error(tmp_path, capsys, data, message):
    conv = tmp_path / "conv.json"
    conv.write_text(json.dumps(data))
    rc = olmoflow_main(["tokenizer", "chat", str(conv)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and message in err


def test_well_formed_chat_still_renders():
    messages = [{"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]}]
    tools = ({"name": "f"},)  # any sequence of mappings
    assert "<function_calls>f(a=1)</function_calls>" in apply_chat_template(messages, tools=tools)


def test_cli_encode_non_utf8_stdin_is_one_line_error(tok_dir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"ok\na\xffb"), encoding="utf-8"))
    rc = olmoflow_main(["tokenizer", "encode", "--tokenizer", str(tok_dir)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "stdin" in err and "UTF-8" in err


@pytest.mark.parametrize("sub", ["", "sub/dir"])
def test_out_dir_blocked_by_a_file_fails_before_training(tmp_path, sub, monkeypatch):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("hello world\n\nsecond paragraph\n")
    blocker = tmp_path / "out"
    blocker.write_text("a file, not a directory")
    monkeypatch.setattr("olmoflow.tokenizer.train.iter_texts", lambda *a: pytest.fail("trained anyway"))
    with pytest.raises(OlmoflowError, match="not a directory") as err:
        train_tokenizer([corpus], blocker / sub if sub else blocker, vocab_size=300, quiet=True)
    assert str(blocker) in str(err.value) and "\n" not in str(err.value)
