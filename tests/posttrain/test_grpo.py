"""GRPO (posttrain/grpo.py): the math against hand computations, active sampling and retiring on real
rollouts of a tiny model, exact resume after SIGKILL, bad input, RL-Zero and the random-reward control."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # dpoutil.py (tests run with --import-mode=importlib)
from dpoutil import make_model, make_tokenizer, write_jsonl  # noqa: E402

from olmoflow.cli import main as olmoflow_main  # noqa: E402
from olmoflow.config import validate  # noqa: E402
from olmoflow.errors import OlmoflowError  # noqa: E402
from olmoflow.model import load  # noqa: E402
from olmoflow.model.io import read_config  # noqa: E402
from olmoflow.posttrain.grpo import (  # noqa: E402
    PLAIN_STOP,
    GRPOConfig,
    GRPOObjective,
    group_advantages,
    grpo_token_loss,
    rl,
)
from olmoflow.posttrain.rollout import EngineBackend  # noqa: E402
from olmoflow.posttrain.verifiers import register  # noqa: E402
from olmoflow.train.metrics import read_metrics  # noqa: E402
from olmoflow.train.objective import RunContext  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")
G = 4


# ---------------------------------------------------------------------------- test verifiers


@register("test_grpo_has_char", requires="test_char")
def _has_char(record, response):
    """1 when the response contains the record's character: the random tiny model sometimes does."""
    return (1.0, "has it") if record["test_char"] in response else (0.0, "lacks it")


@register("test_grpo_always")
def _always(record, response):
    return 1.0, "always solved"


@register("test_grpo_out_of_range")
def _too_much(record, response):
    return 1.5, "more than full marks"


# ---------------------------------------------------------------------------- setup


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A tokenizer and a tiny random model (shared by the module's runs)."""
    r = tmp_path_factory.mktemp("grpo")
    make_tokenizer(r)
    make_model(r / "base", seed=1)
    return r


def _records(n: int, **fields: Any) -> list[dict[str, Any]]:
    rng = random.Random(0)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 4), rng.randint(1, 4)
        out.append({"id": f"p{i}", "prompt": f"what is {a} plus {b}", "answer": str(a + b), **fields})
    return out


def _config(root: Path, run: str, records: list[dict[str, Any]], **kw: Any) -> GRPOConfig:
    prompts = write_jsonl(root / f"{run}.jsonl", records)
    base = dict(run_dir=str(root / run), init_from=str(root / "base"), tokenizer=str(root / "tok"),
                data={"paths": [str(prompts)]}, seq_len=64, rollout={"group_size": G, "max_new_tokens": 6},
                prompts_per_step=3, micro_batch=8, steps=2, optimizer={"lr": 1e-3}, checkpoint={"every": 0},
                measure_kl=False, seed=0)
    return validate(GRPOConfig, {**base, **kw})


def _objective(cfg: GRPOConfig) -> GRPOObjective:
    obj = GRPOObjective(cfg)
    obj.setup(RunContext(read_config(cfg.init_from), torch.device("cpu"), 0, 1, cfg.seed, contextlib.nullcontext))
    return obj


# ---------------------------------------------------------------------------- the math by hand


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    assert group_advantages(rewards).tolist() == [[0.5, -0.5, -0.5, 0.5], [0.25, 0.25, 0.25, -0.75]]
    std0 = math.sqrt((4 * 0.25) / 3)  # unbiased std of [1, 0, 0, 1]
    std1 = math.sqrt((3 * 0.0625 + 0.5625) / 3)
    expect = [[0.5 / std0, -0.5 / std0, -0.5 / std0, 0.5 / std0], [0.25 / std1] * 3 + [-0.75 / std1]]
    assert torch.allclose(group_advantages(rewards, std_normalize=True), torch.tensor(expect), atol=1e-5)
    # a group whose rewards all agree has no advantage (with or without std normalisation)
    assert group_advantages(torch.ones(1, 4), std_normalize=True).abs().max() == 0


def _ratios(r: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp, old_logp) with exp(logp - old_logp) = r; logp is a leaf that requires grad."""
    old = torch.tensor([[-1.0, -2.0, -1.5], [-0.5, -1.0, -3.0]])
    logp = (old + torch.log(torch.tensor(r))).requires_grad_(True)
    return logp, old


def test_clipped_loss_both_sides_by_hand():
    # response 0: A = +1; response 1: A = -1 with its last token masked out
    logp, old = _ratios([[1.5, 1.0, 0.5], [0.5, 1.5, 1.1]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss, sums = grpo_token_loss(logp, old, adv, mask, clip_low=0.2, clip_high=0.272)
    # -min(ρA, clip(ρ, 0.8, 1.272)A) per token:
    #   A>0: ρ=1.5 -> clipped to 1.272 (clip-high); ρ=1 -> 1; ρ=0.5 -> 0.5 (the low side does not clip A>0)
    #   A<0: ρ=0.5 -> 0.8 (clip-low: -min(-0.5, -0.8) = 0.8); ρ=1.5 -> 1.5 (the high side does not clip A<0)
    per_token = [[-1.272, -1.0, -0.5], [0.8, 1.5, 0.0]]
    assert abs(float(loss.detach()) - sum(map(sum, per_token))) < 1e-5
    assert float(sums["clip_low"]) == 1 and float(sums["clip_high"]) == 1  # one token each side
    assert float(sums["is_weight"]) == 5  # no importance weights: 1 per unmasked token
    # gradient wrt logp: 0 where the clipped branch is taken, -A·ρ elsewhere, 0 on masked tokens
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[0.0, -1.0, -0.5], [0.0, 1.5, 0.0]]), atol=1e-6)
    # the token mean the loop takes: Σ / (number of response tokens of the batch), not a mean of sequence means
    assert abs(float(loss.detach()) / 5 - (-0.472 / 5)) < 1e-6
    seq_means = (-2.772 / 3 + 2.3 / 2) / 2
    assert abs(float(loss.detach()) / 5 - seq_means) > 1e-2


def test_truncated_importance_weights_and_kl_by_hand():
    logp, old = _ratios([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])  # on-policy: ρ = 1
    adv = torch.tensor([0.5, -2.0])
    mask = torch.ones(2, 3, dtype=torch.long)
    # sampler log-probs such that π_old/π_sampler = [3, 0.5, 1.2] and [1, 2.5, 0.25]
    w = torch.tensor([[3.0, 0.5, 1.2], [1.0, 2.5, 0.25]])
    sampler = old - torch.log(w)
    loss, sums = grpo_token_loss(logp, old, adv, mask, 0.2, 0.272, sampler_logp=sampler, tis_cap=2.0)
    capped = [[2.0, 0.5, 1.2], [1.0, 2.0, 0.25]]  # min(w, 2)
    expect = sum(-0.5 * c for c in capped[0]) + sum(2.0 * c for c in capped[1])
    assert abs(float(loss.detach()) - expect) < 1e-5
    assert abs(float(sums["is_weight"]) - sum(map(sum, capped))) < 1e-5
    loss.backward()  # the weight is a constant: d/dlogp = -A·ρ·w
    assert torch.allclose(logp.grad, torch.tensor([[-1.0, -0.25, -0.6], [2.0, 4.0, 0.5]]), atol=1e-5)
    # tis_cap=0 switches the correction off
    off, _ = grpo_token_loss(logp.detach(), old, adv, mask, 0.2, 0.272, sampler_logp=sampler, tis_cap=0.0)
    assert abs(float(off) - (-0.5 * 3 + 2.0 * 3)) < 1e-5
    # k3 KL to the reference: exp(ref - logp) - (ref - logp) - 1, measured always, in the loss only with kl_coef
    ref = logp.detach() + torch.tensor([[0.1, -0.2, 0.0], [0.3, 0.0, -0.1]])
    k3 = sum(math.exp(d) - d - 1 for d in (0.1, -0.2, 0.0, 0.3, 0.0, -0.1))
    base, sums = grpo_token_loss(logp.detach(), old, adv, mask, 0.2, 0.272, ref_logp=ref)
    assert abs(float(sums["kl"]) - k3) < 1e-5 and abs(float(base) - (-0.5 * 3 + 2.0 * 3)) < 1e-5
    with_kl, _ = grpo_token_loss(logp.detach(), old, adv, mask, 0.2, 0.272, ref_logp=ref, kl_coef=0.1)
    assert abs(float(with_kl) - float(base) - 0.1 * k3) < 1e-5


# ---------------------------------------------------------------------------- active sampling on rollouts


def _groups(obj: GRPOObjective) -> list[list[dict[str, Any]]]:
    seqs = [s for update in obj.pending for s in update]
    assert len(seqs) == obj.stats["groups"] * G
    return [seqs[i : i + G] for i in range(0, len(seqs), G)]


def test_active_sampling_never_keeps_zero_std_groups(root):
    recs = _records(24, test_char="e", verifier="test_grpo_has_char")
    cfg = _config(root, "active", recs, prompts_per_step=4, max_rounds=6)
    obj = _objective(cfg)
    model = load(cfg.init_from)
    dropped = 0.0
    for _ in range(3):
        obj.pending = []
        obj.next_batch(model)
        groups = _groups(obj)
        assert groups, obj.stats
        for g in groups:
            assert len({tuple(s["prompt"]) for s in g}) == 1  # one prompt per group
            advs = [s["adv"] for s in g]
            assert max(advs) > min(advs), advs  # rewards differ within every kept group
            assert abs(sum(advs)) < 1e-9
        dropped += obj.stats["zero_std_dropped_frac"]
    assert dropped > 0  # some groups did agree, and were dropped
    # without active sampling the same rollouts keep groups with nothing to learn
    plain = _objective(_config(root, "passive", recs, prompts_per_step=4, active_sampling=False))
    flat = 0
    for _ in range(3):
        plain.pending = []
        plain.next_batch(model)
        flat += sum(max(s["adv"] for s in g) == min(s["adv"] for s in g) for g in _groups(plain))
    assert flat > 0


def test_solved_prompts_are_retired_and_empty_step_is_skipped(root):
    cfg = _config(root, "solved", _records(5, verifier="test_grpo_always"), prompts_per_step=2, steps=3)
    out = rl(cfg, quiet=True)
    assert out["step"] == 3 and out["skipped_total"] == 3
    recs = read_metrics(root / "solved" / "metrics.jsonl")
    assert [r["skipped"] for r in recs] == [1, 1, 1]
    assert [r["retired_prompts"] for r in recs] == [5, 5, 5]  # all solved: retired in the first rollout
    assert all(r["groups"] == 0 for r in recs)
    assert recs[0]["zero_std_dropped_frac"] == 1.0 and recs[1]["groups_sampled"] == 0  # none left to sample
    events = [json.loads(line) for line in (root / "solved" / "log.jsonl").read_text().splitlines()]
    assert sum(e.get("event") == "empty_batch" for e in events) == 3
    # nothing was learned: the final weights are the initial ones
    a, b = load(root / "solved" / "final").state_dict(), load(cfg.init_from).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- end to end


def test_heldout_pass1_scores_seeded_samples_at_the_rollout_temperature(root):
    """``eval_samples``: k samples per held-out prompt at the rollout temperature, scored by the
    verifier; the same seeds every evaluation, so an unchanged model gets the same number."""
    recs = _records(6, verifier="test_grpo_has_char", test_char="e")
    heldout = write_jsonl(root / "pass1_heldout.jsonl", recs)
    cfg = _config(root, "pass1", recs, data={"paths": [str(heldout)], "heldout_paths": [str(heldout)]},
                  eval_samples=3, rollout={"group_size": G, "max_new_tokens": 6, "temperature": 1.0})
    obj = _objective(cfg)
    model = load(cfg.init_from)
    first, again = obj.validate(model), obj.validate(model)
    assert first == again
    # by hand: the same seeded samples from the engine, scored by the record's verifier
    from olmoflow.posttrain.grpo import _seed

    seeds = [[_seed(cfg.seed, "heldout", i, j) for j in range(3)] for i in range(len(recs))]
    groups = obj.backend.generate(obj.heldout_ids, 3, 6, 1.0, 1.0, seeds)
    hits = [float("e" in s.text) for g in groups for s in g]
    assert first["heldout_pass1"] == pytest.approx(sum(hits) / len(hits))
    assert 0.0 < first["heldout_pass1"] < 1.0  # the random model sometimes writes an "e": not by construction
    assert "heldout_pass1" not in _objective(_config(root, "pass1_off", recs,
                                                     data={"paths": [str(heldout)],
                                                           "heldout_paths": [str(heldout)]})).validate(model)



def test_rl_zero_plain_format_and_random_reward_run(root):
    zero = _config(root, "zero", _records(8), prompt_format="plain", reward="verifier", active_sampling=False,
                   measure_kl=True)
    obj = _objective(zero)
    assert obj.tok.decode(obj.prompt_ids[0]).startswith("Question: what is")  # no chat template
    out = rl(zero, quiet=True)
    assert out["step"] == 2 and math.isfinite(out["loss"]) and "kl" in out
    ran = _config(root, "random", _records(8), reward="random")
    out = rl(ran, quiet=True)
    recs = read_metrics(root / "random" / "metrics.jsonl")
    assert out["step"] == 2 and all(r["skipped"] == 0 and r["groups"] == 3 for r in recs)
    assert all(0.0 < r["reward_mean"] < 1.0 and r["grad_norm"] > 0 for r in recs)
    assert load(root / "random" / "final").state_dict()["lm_head.weight"].ne(
        load(ran.init_from).state_dict()["lm_head.weight"]).any()


def test_plain_format_reads_questions_and_stops_at_the_end_of_the_answer(root):
    """RL-Zero: GSM8K-style ``question`` records are prompts; a plain-format response ends at the
    answer's paragraph (a base model would otherwise go on to its next made-up question, whose numbers
    the math verifier would read as the answer); the chat format has no stop strings by default."""
    recs = [{"id": f"q{i}", "question": f"what is {i} plus 1", "answer": str(i + 1)} for i in range(4)]
    cfg = _config(root, "plain_stop", recs, prompt_format="plain", active_sampling=False)
    obj = _objective(cfg)
    assert obj.tok.decode(obj.prompt_ids[0]).startswith("Question: what is 0 plus 1")
    assert obj.backend.stop_strings == PLAIN_STOP
    assert _objective(_config(root, "chat_stop", _records(4))).backend.stop_strings == []
    custom = _config(root, "custom_stop", recs, prompt_format="plain",
                     rollout={"group_size": G, "max_new_tokens": 6, "stop_strings": ["."]})
    assert _objective(custom).backend.stop_strings == ["."]
    # the engine backend cuts each sample where a stop string appears (a letter the random model often
    # emits: without the stop string, some of the same samples contain it)
    def samples(stop_strings):
        backend = EngineBackend(obj.tok, obj.tok.stop_ids, stop_strings=stop_strings)
        backend.sync(load(cfg.init_from))
        groups = backend.generate(obj.prompt_ids[:2], 4, 24, 1.0, 1.0, [[1, 2, 3, 4], [5, 6, 7, 8]])
        return [s for g in groups for s in g]

    assert any("e" in s.text for s in samples([]))
    cut = samples(["e"])
    assert all("e" not in s.text for s in cut)
    assert any(s.finish_reason == "stop" and s.tokens for s in cut)


def test_resume_after_sigkill_repeats_rollouts_and_losses(root, tmp_path):
    """Killed after a checkpoint in the middle of a rollout (updates_per_rollout=2), resumed with
    --resume: the same rewards, losses and weights as a run without interruption."""
    base = _config(root, "resume_src", _records(16), reward="random", steps=7, updates_per_rollout=2,
                   prompts_per_step=2, checkpoint={"every": 3}).model_dump(mode="json")
    base["run_dir"] = str(tmp_path / "killed")
    cfg_file = tmp_path / "rl.yaml"
    cfg_file.write_text(yaml.safe_dump(base))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-m", "olmoflow.cli", "rl", "--config", str(cfg_file), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = tmp_path / "killed" / "checkpoints" / "step-3" / "manifest.json"
    deadline = time.time() + 180
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "killed" / "checkpoints" / "step-7").exists()
    assert 3 <= len(read_metrics(tmp_path / "killed" / "metrics.jsonl")) < 7
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the subprocess
    try:
        assert olmoflow_main(["rl", "--config", str(cfg_file), "--quiet", "--resume"]) == 0
        rl(validate(GRPOConfig, {**base, "run_dir": str(tmp_path / "ref")}), quiet=True)
    finally:
        torch.set_num_threads(threads)

    def curve(run: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_metrics(tmp_path / run / "metrics.jsonl")]

    resumed, ref = curve("killed"), curve("ref")
    assert [r["step"] for r in resumed] == list(range(1, 8))
    assert resumed == ref
    assert {"loss", "reward_mean", "groups", "response_len", "clip_low", "is_weight"} <= ref[0].keys()
    assert len({r["loss"] for r in ref}) > 1
    a, b = load(tmp_path / "killed" / "final").state_dict(), load(tmp_path / "ref" / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", ["missing_field", "unknown_verifier", "group_size", "out_of_range"])
def test_bad_input_is_one_line_error(root, tmp_path, capsys, case):
    recs = _records(4)
    overrides: dict[str, Any] = {}
    if case == "missing_field":
        recs[2] = {"id": "p2", "prompt": "what is 1 plus 1", "verifier": "math"}
        expect = r"missing_field\.jsonl:3: verifier 'math' needs field 'answer'"
    elif case == "unknown_verifier":
        recs[1]["verifier"] = "nope"
        expect = r"unknown_verifier\.jsonl:2: unknown verifier 'nope'"
    elif case == "group_size":
        overrides = {"rollout": {"group_size": 1, "max_new_tokens": 6}}
        expect = r"rollout\.group_size"
    else:
        recs = [{**r, "verifier": "test_grpo_out_of_range"} for r in recs]
        expect = r"verifier 'test_grpo_out_of_range' returned score 1\.5 for record p\d; scores must be in \[0, 1\]"
    cfg = _config(root, case, recs).model_dump(mode="json")
    cfg.update(run_dir=str(tmp_path / "run"), **overrides)
    cfg_file = tmp_path / "rl.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    rc = olmoflow_main(["rl", "--config", str(cfg_file), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1, err
    assert re.search(expect, err), err
    assert not read_metrics(tmp_path / "run" / "metrics.jsonl")  # no step was logged


def test_prompt_without_answer_for_default_verifier(root):
    """A record no verifier applies to names its file and line."""
    recs = [*_records(2), {"id": "x", "prompt": "hello"}]
    with pytest.raises(OlmoflowError, match=r"no_verifier\.jsonl:3: no verifier applies to this prompt"):
        _objective(_config(root, "no_verifier", recs))
