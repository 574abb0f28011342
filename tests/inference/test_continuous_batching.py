"""Continuous batching: the engine's add / step / abort scheduler over per-sequence KV slots."""

from __future__ import annotations

import pytest
import torch

from olmoflow.errors import OlmoflowError
from olmoflow.inference import Engine, GenerationRequest, QueueFullError

LONG_PROMPT = list(range(30, 49))  # longer than the sliding window (8)


def run_alone(model, req: GenerationRequest) -> list[int]:
    [res] = Engine(model, max_batch_size=1).generate([req])
    return res.token_ids


def drain(engine: Engine) -> dict[int, list]:
    """Step until idle; every produced token per sequence id, plus the step of each finish."""
    toks: dict[int, list] = {}
    while engine.has_work:
        for o in engine.step():
            toks.setdefault(o.seq_id, []).append(o.token)
    return toks


@pytest.mark.parametrize("name", ["olmo3_gqa", "olmo2"])
def test_greedy_joining_mid_generation_equals_alone(name, model_maker):
    """A request admitted while others are decoding (at different lengths, sliding windows already
    wrapped) produces exactly the greedy tokens it produces alone; so do the ones already running."""
    model = model_maker(name, seed=4)
    a = GenerationRequest(prompt=LONG_PROMPT, max_new_tokens=40)
    b = GenerationRequest(prompt=[5, 6, 7], max_new_tokens=30)
    c = GenerationRequest(prompt=[100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110], max_new_tokens=25)
    engine = Engine(model, max_batch_size=4, max_len=128)
    ids = {engine.add(a): a}
    got: dict[int, list[int]] = {}
    for step in range(60):
        if step == 7:
            ids[engine.add(b)] = b
        if step == 19:
            ids[engine.add(c)] = c
        for o in engine.step():
            got.setdefault(o.seq_id, []).append(o.token)
        if not engine.has_work:
            break
    assert not engine.has_work
    for sid, req in ids.items():
        assert got[sid] == run_alone(model, req), f"request {sid}"


def test_sampled_same_seed_same_tokens_whatever_runs_beside(model_maker):
    model = model_maker("olmo3_gqa", seed=5)

    def req(seed):
        return GenerationRequest(prompt=[9, 8, 7, 6], max_new_tokens=24, temperature=1.0, top_p=0.9, seed=seed)

    alone = run_alone(model, req(11))
    engine = Engine(model, max_batch_size=3, max_len=64)
    engine.add(req(1))
    for _ in range(5):
        engine.step()
    sid = engine.add(req(11))
    engine.add(GenerationRequest(prompt=[3, 4], max_new_tokens=10, temperature=0.7, seed=2))
    assert drain(engine)[sid] == alone


def test_short_request_finishes_long_before_the_long_one(model_maker):
    """Submitted while a long request runs, a short one is admitted at once and finishes after
    about its own number of steps, not after the long one (counted in engine steps)."""
    model = model_maker("olmo3_gqa", seed=6)
    engine = Engine(model, max_batch_size=4, max_len=256)
    long_id = engine.add(GenerationRequest(prompt=[5, 6, 7], max_new_tokens=150))
    for _ in range(10):
        engine.step()
    short_id = engine.add(GenerationRequest(prompt=[20, 21, 22], max_new_tokens=5))
    submitted = engine.steps
    finished: dict[int, int] = {}
    long_tokens = 0
    while engine.has_work:
        for o in engine.step():
            long_tokens += o.seq_id == long_id
            if o.result is not None:
                finished[o.seq_id] = engine.steps
    # short: one prefill step (first token) + 4 decode steps, each step also decodes the long one
    assert finished[short_id] - submitted <= 2 * 5
    assert finished[long_id] - finished[short_id] >= 100
    assert long_tokens == 150 - 10


def test_abort_frees_the_slot_at_once(model_maker):
    model = model_maker("olmo2", seed=7)
    engine = Engine(model, max_batch_size=1, max_len=64)
    first = engine.add(GenerationRequest(prompt=[5, 6], max_new_tokens=50))
    engine.step()
    second = engine.add(GenerationRequest(prompt=[7, 8], max_new_tokens=3))
    engine.step()
    assert engine.num_running == 1 and engine.num_waiting == 1  # one slot, taken by the first
    assert engine.abort(first)
    assert engine.num_running == 0
    toks = drain(engine)
    assert first not in toks and len(toks[second]) == 3
    assert not engine.abort(first)


def test_queue_bound_and_request_limits(model_maker):
    model = model_maker("olmo2", seed=8)
    engine = Engine(model, max_batch_size=1, max_len=16, max_waiting=2)
    for _ in range(2):
        engine.add(GenerationRequest(prompt=[5], max_new_tokens=2))
    with pytest.raises(QueueFullError, match="full"):
        engine.add(GenerationRequest(prompt=[5], max_new_tokens=2))
    with pytest.raises(OlmoflowError, match="max_len 16"):
        Engine(model, max_len=16).add(GenerationRequest(prompt=[5] * 10, max_new_tokens=10))


def test_prefill_budget_interleaves_long_prompts_with_decoding(model_maker):
    """A prompt longer than the step budget is prefilled over several steps while the running
    sequence keeps decoding one token per step; both give their solo tokens."""
    model = model_maker("olmo3_gqa", seed=9)
    engine = Engine(model, max_batch_size=2, max_len=128, prefill_chunk=8, max_batched_tokens=9)
    a = GenerationRequest(prompt=[5, 6, 7], max_new_tokens=30)
    b = GenerationRequest(prompt=list(range(40, 80)), max_new_tokens=10)
    ida = engine.add(a)
    engine.step()
    idb = engine.add(b)
    per_step = [engine.step() for _ in range(5)]  # 40 prompt tokens in chunks of 8: five steps
    assert [[o.seq_id for o in outs] for outs in per_step] == [[ida]] * 4 + [[ida, idb]]
    toks = drain(engine)
    assert [per_step[-1][1].token] + toks[idb] == run_alone(model, b)
    assert len(toks[ida]) == 30 - 1 - 5


def test_generate_restores_train_mode(model_maker):
    model = model_maker("olmo2", seed=10).train()
    Engine(model).generate([GenerationRequest(prompt=[5, 6], max_new_tokens=3)])
    assert model.training
    model.eval()
    Engine(model).generate([GenerationRequest(prompt=[5, 6], max_new_tokens=3)])
    assert not model.training


def test_slot_cache_bf16_autocast_keys_are_stored(model_maker):
    """Keys computed under autocast (bf16) are cast to the cache dtype when stored."""
    model = model_maker("olmo3_gqa", seed=11)
    req = GenerationRequest(prompt=LONG_PROMPT, max_new_tokens=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        [res] = Engine(model).generate([req])
    assert len(res.token_ids) == 6
