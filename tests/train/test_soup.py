"""``olmoflow soup``: the weights' (weighted) mean, an ordinary model dir with lineage, and one-line
refusals for ingredients of another architecture or tokenizer."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from olmoflow.cli import main as olmoflow_main
from olmoflow.model import ModelConfig, Olmo, load, save
from olmoflow.train.soup import SoupError, soup

CFG = dict(vocab_size=300, eos_token_id=0, pad_token_id=1, d_model=32, n_layers=2, n_heads=2, mlp_hidden=64,
           max_seq_len=64, sliding_window=8)


def _ckpt(path, seed, **over):
    m = Olmo(ModelConfig(**{**CFG, **over}), init=False)
    m.init_weights(torch.Generator().manual_seed(seed))
    return save(m, path)


def test_soup_of_two_checkpoints_is_the_hand_computed_mean(tmp_path):
    a, b = _ckpt(tmp_path / "a", 0), _ckpt(tmp_path / "b", 1)
    rec = soup([a, b], tmp_path / "s")
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    ts = load_file(str(tmp_path / "s" / "model.safetensors"))
    assert set(ts) == set(ta)
    for k in ts:
        assert torch.equal(ts[k], ((ta[k].double() + tb[k].double()) / 2).float()), k
        assert torch.allclose(ts[k], (ta[k] + tb[k]) / 2, atol=1e-7)
    load(tmp_path / "s")  # an ordinary model dir
    assert rec["method"] == "uniform" and [i["weight"] for i in rec["ingredients"]] == [0.5, 0.5]
    assert json.loads((tmp_path / "s" / "soup.json").read_text())["ingredients"][1]["path"] == str(b)


def test_weighted_soup_and_the_cli(tmp_path, capsys):
    a, b = _ckpt(tmp_path / "a", 0), _ckpt(tmp_path / "b", 1)
    assert olmoflow_main(["soup", str(a), str(b), "--out", str(tmp_path / "s"), "--weights", "3", "1"]) == 0
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    ts = load_file(str(tmp_path / "s" / "model.safetensors"))
    k = "blocks.0.mlp.down.weight"
    assert torch.equal(ts[k], (ta[k].double() * 0.75 + tb[k].double() * 0.25).float())
    assert "souped 2 checkpoints (weighted)" in capsys.readouterr().out


@pytest.mark.parametrize("over, match", [
    ({"d_model": 64}, r"different architecture .* model\.d_model = 64 vs 32"),
    ({"n_layers": 3}, r"different architecture .* model\.n_layers = 3 vs 2"),
    ({"vocab_size": 320}, r"different tokenizer .* model\.vocab_size = 320 vs 300"),
    ({"eos_token_id": 2}, r"different tokenizer .* model\.eos_token_id = 2 vs 0"),
])
def test_soup_of_different_models_is_a_one_line_error_naming_the_field(tmp_path, capsys, over, match):
    a, b = _ckpt(tmp_path / "a", 0), _ckpt(tmp_path / "b", 1, **over)
    with pytest.raises(SoupError, match=match):
        soup([a, b], tmp_path / "s")
    assert olmoflow_main(["soup", str(a), str(b), "--out", str(tmp_path / "s2")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "olmoflow soup: error:" in err
    assert not (tmp_path / "s").exists()


def test_soup_refuses_different_tokenizer_files_and_bad_weights(tmp_path):
    a, b = _ckpt(tmp_path / "a", 0), _ckpt(tmp_path / "b", 1)
    (a / "tokenizer.json").write_text('{"model": "one"}')
    (b / "tokenizer.json").write_text('{"model": "two"}')
    with pytest.raises(SoupError, match=r"tokenizer\.json differs"):
        soup([a, b], tmp_path / "s")
    (b / "tokenizer.json").write_text('{"model": "one"}')
    with pytest.raises(SoupError, match=r"key 'weights' has 1 entries for 2"):
        soup([a, b], tmp_path / "s", weights=[1.0])
    with pytest.raises(SoupError, match="at least 2"):
        soup([a], tmp_path / "s")
    soup([a, b], tmp_path / "s")
    assert (tmp_path / "s" / "tokenizer.json").read_text() == '{"model": "one"}'
