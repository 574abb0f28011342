"""The saved directory loads in transformers' AutoTokenizer and tokenizes exactly like olmoflow."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from olmoflow.tokenizer import SPECIAL_TOKENS, Tok, save_for_hf

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_tok(tok_dir):
    return transformers.AutoTokenizer.from_pretrained(str(tok_dir))


@pytest.fixture(scope="module")
def tok(tok_dir):
    return Tok.from_dir(tok_dir)


def test_special_tokens_in_transformers(hf_tok):
    assert hf_tok.bos_token is None and hf_tok.bos_token_id is None
    assert hf_tok.eos_token == "<|endoftext|>" and hf_tok.eos_token_id == 0
    assert hf_tok.pad_token == "<|pad|>" and hf_tok.pad_token_id == 1
    assert [hf_tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert len(hf_tok) == 1024


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=100) | st.lists(st.sampled_from(SPECIAL_TOKENS + ["x", " ", "\n"])).map("".join))
def test_transformers_encodes_like_olmoflow_without_bos(hf_tok, tok, text):
    ids = hf_tok(text)["input_ids"]  # add_special_tokens=True by default: still nothing added
    assert ids == tok.encode(text)
    assert hf_tok.decode(ids) == text


def test_padding_uses_pad_token(hf_tok):
    batch = hf_tok(["a", "a much longer text"], padding=True)
    assert batch["input_ids"][0][-1] == 1 and batch["attention_mask"][0][-1] == 0


def test_save_for_hf_into_export_dir(tok_dir, tmp_path, tok):
    export = tmp_path / "export"
    export.mkdir()
    (export / "config.json").write_text("{}")  # a model export already there is left alone
    written = save_for_hf(tok_dir, export)
    assert all(p.is_file() for p in written) and (export / "config.json").read_text() == "{}"
    assert (export / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()
    assert (export / "tokenizer_config.json").read_bytes() == (tok_dir / "tokenizer_config.json").read_bytes()
    hf = transformers.AutoTokenizer.from_pretrained(str(export))
    assert hf.eos_token_id == tok.eos_id and hf("héllo <|im_end|>")["input_ids"] == tok.encode("héllo <|im_end|>")
    assert hf.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == "<|im_start|>user\nx<|im_end|>\n"


def test_reference_file_layout_matches_transformers_save(tok_dir, tmp_path, hf_tok):
    """Re-saving with transformers keeps the same tokenizer.json model and special token ids."""
    hf_tok.save_pretrained(str(tmp_path / "resaved"))
    again = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "resaved"))
    assert again.chat_template == hf_tok.chat_template
    assert again("a <think> b")["input_ids"] == hf_tok("a <think> b")["input_ids"]
    assert again.eos_token_id == 0 and again.pad_token_id == 1 and again.bos_token is None
