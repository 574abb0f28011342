"""KV-cached, left-padded batched greedy decoding == recomputing the full forward for each prompt alone."""

from __future__ import annotations

import pytest
import torch

from olmoflow.inference import Engine, GenerationRequest, generate

PROMPTS = [
    [5, 6, 7, 8, 9, 10, 11],
    [20, 21, 22],
    list(range(30, 49)),  # longer than the sliding window (8) already in the prompt
    [200],
]


def no_cache_greedy(model, prompt: list[int], n: int) -> list[int]:
    """Reference: full forward over the whole sequence at every step, no padding, no cache."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt) :]


@pytest.mark.parametrize("name", ["olmo3_gqa", "olmo2"])
def test_cached_batched_greedy_equals_full_recompute(name, model_maker):
    model = model_maker(name)
    n = 48  # far past the sliding window of 8
    results = generate(model, PROMPTS, max_new_tokens=n)
    for prompt, res in zip(PROMPTS, results):
        assert res.token_ids == no_cache_greedy(model, prompt, n)
        assert res.finish_reason == "length"
        assert res.n_prompt_tokens == len(prompt)
    assert len({tuple(r.token_ids) for r in results}) == len(PROMPTS)  # not degenerate


def test_rows_finishing_early_do_not_disturb_others(model_maker):
    """Requests of different lengths in one batch: each equals its own no-cache reference."""
    model = model_maker("olmo3_gqa", seed=1)
    lengths = [3, 45, 17, 30]
    reqs = [GenerationRequest(prompt=p, max_new_tokens=n) for p, n in zip(PROMPTS, lengths)]
    results = Engine(model).generate(reqs)
    for prompt, n, res in zip(PROMPTS, lengths, results):
        assert res.token_ids == no_cache_greedy(model, prompt, n)


def test_chunked_prefill_and_small_waves_match(model_maker):
    """Prefill in chunks and waves smaller than the request list give the same tokens."""
    model = model_maker("olmo3_gqa", seed=2)
    reqs = [GenerationRequest(prompt=p, max_new_tokens=20) for p in PROMPTS]
    base = [r.token_ids for r in Engine(model).generate(reqs)]
    other = [r.token_ids for r in Engine(model, max_batch_size=3, prefill_chunk=4).generate(reqs)]
    assert base == other
    assert base[2] == no_cache_greedy(model, PROMPTS[2], 20)


def test_generate_leaves_the_model_as_it_found_it(model_maker):
    """The engine's temporary input-major weight layout is undone: same values, contiguous,
    ordinary (non-inference) tensors that train, so RLVR can generate and then step the optimizer."""
    model = model_maker("olmo3_gqa", seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []  # the layout during generation (one row per step: the engine switches layouts)
    reqs = [GenerationRequest(prompt=p, max_new_tokens=5) for p in PROMPTS]
    Engine(model, max_batch_size=1).generate(reqs, lambda *_: seen.append(model.lm_head.weight.is_contiguous()))
    assert seen and not any(seen)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.is_contiguous() and not p.is_inference() for p in model.parameters())
    model.train()
    model(torch.tensor([PROMPTS[0]])).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
