"""Our engine's greedy tokens == transformers' ``generate(do_sample=False)`` on the HF export."""

from __future__ import annotations

import pytest
import torch

from olmoflow.inference import generate
from olmoflow.model.hf import export_hf

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("name", ["olmo3_gqa", "olmo2"])
def test_greedy_matches_transformers_generate(name, model_maker, tmp_path):
    model = model_maker(name, seed=4)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        export_hf(model, tmp_path / "hf"), attn_implementation="sdpa"
    ).eval()
    prompt = [17, 3, 99, 42, 250, 8, 64, 11, 5]
    n = 40  # past the sliding window (8)
    eos = model.cfg.eos_token_id
    with torch.no_grad():
        out = hf.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False, max_new_tokens=n, eos_token_id=eos, pad_token_id=model.cfg.pad_token_id,
        )
    theirs = out[0, len(prompt) :].tolist()
    [ours] = generate(model, [prompt], max_new_tokens=n, stop_token_ids=[eos])
    assert ours.token_ids == theirs
    assert len(set(theirs)) > 3  # a non-degenerate continuation


def test_export_stops_transformers_generate_at_end_of_turn(model_maker, tiny_tok_dir, tmp_path):
    """With a tokenizer, the export's generation_config stops at <|im_end|> as well as <|endoftext|>."""
    from olmoflow.tokenizer.tok import Tok

    model = model_maker("olmo3_gqa", seed=4)
    tok = Tok.from_dir(tiny_tok_dir)
    im_end, eot = tok.token_id("<|im_end|>"), tok.token_id("<|endoftext|>")
    out = export_hf(model, tmp_path / "hf", tokenizer_dir=tiny_tok_dir)
    gen = transformers.GenerationConfig.from_pretrained(out)
    expected = [model.cfg.eos_token_id] + [i for i in (im_end, eot) if i != model.cfg.eos_token_id]
    assert gen.eos_token_id == expected and im_end in expected
    assert export_hf(model, tmp_path / "bare").joinpath("generation_config.json").read_text().count("eos") == 1
    assert transformers.GenerationConfig.from_pretrained(tmp_path / "bare").eos_token_id == model.cfg.eos_token_id
