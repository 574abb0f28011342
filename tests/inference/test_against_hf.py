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
