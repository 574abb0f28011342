"""Stop tokens and stop strings end generation ("stop"), max_new_tokens gives "length", streaming
text adds up to the final text, and ``olmoflow generate`` prints a continuation."""

from __future__ import annotations

import pytest

from olmoflow.inference import Engine, GenerationRequest
from olmoflow.model import save
from olmoflow.tokenizer import Tok


@pytest.fixture(scope="module")
def tok(tiny_tok_dir):
    return Tok.from_dir(tiny_tok_dir)


@pytest.fixture(scope="module")
def lm(tok, model_maker):
    return model_maker("olmo3_gqa", seed=11, vocab_size=tok.vocab_size)


def _run(lm, tok, prompt, callback=None, **kw):
    kw.setdefault("max_new_tokens", 40)
    return Engine(lm, tokenizer=tok).generate([GenerationRequest(prompt=tok.encode(prompt), **kw)], callback)[0]


def test_length_and_text(lm, tok):
    res = _run(lm, tok, "The quick brown")
    assert res.finish_reason == "length" and len(res.token_ids) == 40
    assert res.text == tok.decode(res.token_ids)
    assert res.stop is None


def test_stop_token(lm, tok):
    full = _run(lm, tok, "The quick brown")
    stop_id = full.token_ids[12]
    first = full.token_ids.index(stop_id)
    res = _run(lm, tok, "The quick brown", stop_token_ids=[stop_id])
    assert res.finish_reason == "stop" and res.stop == stop_id
    assert res.token_ids == full.token_ids[: first + 1]  # the stop token is kept in the ids...
    assert res.text == tok.decode(full.token_ids[:first])  # ...but not in the text


def test_stop_string_truncates_text_and_stream_matches(lm, tok):
    full = _run(lm, tok, "Hello world!")
    text = full.text
    stop = next(text[i : i + 3] for i in range(8, len(text) - 3) if text[i : i + 3].strip() == text[i : i + 3])
    streamed: list[tuple[int, int, str]] = []
    res = _run(lm, tok, "Hello world!", callback=lambda *a: streamed.append(a), stop_strings=["@@never@@", stop])
    assert res.finish_reason == "stop" and res.stop == stop
    assert res.text == text[: text.index(stop)]
    assert stop not in res.text
    assert len(res.token_ids) < 40 and res.token_ids == full.token_ids[: len(res.token_ids)]
    assert [t for _, t, _ in streamed] == res.token_ids  # one callback per token
    assert "".join(d for _, _, d in streamed) == res.text  # stream never leaks the stop string


def test_stream_concatenation_equals_text_without_stops(lm, tok):
    chunks: list[str] = []
    res = _run(lm, tok, "Open language", callback=lambda i, t, d: chunks.append(d), max_new_tokens=30)
    assert "".join(chunks) == res.text == tok.decode(res.token_ids)


def test_stop_strings_need_a_tokenizer(lm):
    from olmoflow.errors import OlmoflowError

    with pytest.raises(OlmoflowError, match="tokenizer"):
        Engine(lm).generate([GenerationRequest(prompt=[5, 6], stop_strings=["x"])])


def test_cli_generate_streams_text(lm, tok, tiny_tok_dir, tmp_path, capsys):
    """``olmoflow generate`` (through the command table) prints exactly the engine's continuation."""
    from olmoflow.cli import main

    model_dir = save(lm, tmp_path / "model")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (model_dir / f).write_bytes((tiny_tok_dir / f).read_bytes())
    rc = main(["generate", "--model", str(model_dir), "--prompt", "The quick brown", "--max-new-tokens", "12"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    expected = _run(lm, tok, "The quick brown", max_new_tokens=12, stop_token_ids=[tok.eos_id]).text
    assert len(expected) > 5
    assert out.out == expected + "\n"
    assert "tokens" in out.err


def test_cli_chat_and_errors(lm, tok, tiny_tok_dir, tmp_path, capsys):
    from olmoflow.cli import main

    model_dir = save(lm, tmp_path / "model")
    rc = main(["generate", "--model", str(model_dir), "--tokenizer", str(tiny_tok_dir), "--prompt", "hi", "--chat",
               "--max-new-tokens", "5", "--temperature", "0.8", "--top-p", "0.9", "--seed", "3", "--quiet"])
    assert rc == 0
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nope" in err
    assert main(["generate", "--model", str(model_dir), "--prompt", "x"]) == 1
    assert "--tokenizer" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [dict(top_p=0.0), dict(temperature=-1.0), dict(top_k=-2), dict(max_new_tokens=0),
                                 dict(prompt=[]), dict(prompt=[10**6])])
def test_bad_requests_are_one_line_errors(bad, lm):
    from olmoflow.errors import OlmoflowError

    req = GenerationRequest(**{"prompt": [5, 6], **bad})
    with pytest.raises(OlmoflowError):
        Engine(lm).generate([req])


def test_tensor_prompts_accepted(lm):
    import torch

    a = Engine(lm).generate([GenerationRequest(prompt=torch.tensor([5, 6, 7]), max_new_tokens=4)])[0]
    b = Engine(lm).generate([GenerationRequest(prompt=[5, 6, 7], max_new_tokens=4)])[0]
    assert a.token_ids == b.token_ids
