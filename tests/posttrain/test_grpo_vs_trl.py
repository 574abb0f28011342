"""GRPO against the peer: TRL 1.16's ``GRPOTrainer._compute_loss`` (``loss_type="dapo"``: token mean over
the batch, ``scale_rewards="none"``, ``epsilon=0.2``, ``epsilon_high=0.272``, ``beta=0``) on our weights
exported to transformers gives the same loss, clip fractions and gradients as :class:`GRPOObjective`.

The completions are real rollouts of our engine (``GRPOObjective.backend``) for prompts read through
``GRPOObjective.setup``; rewards are fixed per response. TRL is given the inputs dict its
``_generate_and_score_completions`` would build (left-padded prompts, right-padded completions, masks,
advantages, ``old_per_token_logps``, ``num_items_in_batch``); our side collates the same sequences with
the objective's ``_collate`` into two micro batches and divides the summed loss by the token count, as
the loop does. Three cases: on-policy (π_old = π, ratio 1), off-policy with π_old perturbed so that
both clip sides are hit, and truncated importance sampling against perturbed sampler log-probs.

TRL applies the sampler correction only when it samples with vLLM (``use_vllm`` and
``vllm_importance_sampling_correction``); for the third case the flag is set on the built trainer and
``importance_sampling_ratio`` is computed as TRL's ``token_truncate`` mode does (``exp(old - sampler)``
on the completion mask, clamped to ``vllm_importance_sampling_clip_max``=2.0 = our ``tis_cap``).
"""

from __future__ import annotations

import contextlib
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # dpoutil.py (tests run with --import-mode=importlib)
from dpoutil import make_model, make_tokenizer, write_jsonl  # noqa: E402

trl = pytest.importorskip("trl", reason="TRL is not installed (pip install trl==1.16.0): no peer to compare GRPO with")
datasets = pytest.importorskip("datasets", reason="datasets (a TRL dependency) is not installed")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from olmoflow.config import validate  # noqa: E402
from olmoflow.model import load  # noqa: E402
from olmoflow.model.hf import export_hf, to_hf_state  # noqa: E402
from olmoflow.model.io import read_config  # noqa: E402
from olmoflow.posttrain.grpo import GRPOConfig, GRPOObjective, group_advantages  # noqa: E402
from olmoflow.train.data import IGNORE_INDEX  # noqa: E402
from olmoflow.train.objective import RunContext  # noqa: E402

G, PROMPTS, TIS_CAP = 4, 3, 2.0
REWARDS = [[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]]
GRAD_KEYS = ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.1.mlp.down_proj.weight", "lm_head.weight")


class Peers:
    """Our objective + policy, TRL's trainer on the same weights, and rollouts of the policy."""

    def __init__(self, root: Path):
        make_tokenizer(root)
        make_model(root / "policy", seed=1)
        rng = random.Random(0)
        recs = [{"id": f"p{i}", "prompt": f"what is {rng.randint(1, 9)} plus {rng.randint(10, 99)}", "answer": "1"}
                for i in range(PROMPTS)]
        prompts = write_jsonl(root / "prompts.jsonl", recs)
        self.cfg = validate(GRPOConfig, dict(
            run_dir=str(root / "run"), init_from=str(root / "policy"), tokenizer=str(root / "tok"),
            data={"paths": [str(prompts)]}, seq_len=64, rollout={"group_size": G, "max_new_tokens": 10},
            prompts_per_step=PROMPTS, micro_batch=4, clip_low=0.2, clip_high=0.272, tis_cap=TIS_CAP,
            kl_coef=0.0, std_normalize=False, measure_kl=False, steps=1))
        self.obj = GRPOObjective(self.cfg)
        self.obj.setup(RunContext(read_config(self.cfg.init_from), torch.device("cpu"), 0, 1, 0,
                                  contextlib.nullcontext))
        self.policy = load(self.cfg.init_from).train()
        # rollouts: G samples per prompt from the engine, with the sampler's log-probs
        self.obj.backend.sync(self.policy)
        seeds = [[1000 * i + k for k in range(G)] for i in range(PROMPTS)]
        samples = self.obj.backend.generate(self.obj.prompt_ids, G, 10, 1.0, 1.0, seeds)
        self.seqs = self.obj._sequences([(i, samples[i], REWARDS[i]) for i in range(PROMPTS)])
        assert len(self.seqs) == PROMPTS * G
        assert len({len(s["response"]) for s in self.seqs}) > 1  # ragged: padding and the token mean matter
        # TRL on the same weights, tokenizer and settings
        hf = AutoModelForCausalLM.from_pretrained(export_hf(self.policy, root / "hf_policy"))
        tokenizer = AutoTokenizer.from_pretrained(self.cfg.tokenizer)
        args = trl.GRPOConfig(
            output_dir=str(root / "trl"), loss_type="dapo", scale_rewards="none", epsilon=0.2, epsilon_high=0.272,
            beta=0.0, num_generations=G, per_device_train_batch_size=PROMPTS * G, max_completion_length=10,
            vllm_importance_sampling_mode="token_truncate", vllm_importance_sampling_clip_max=TIS_CAP,
            bf16=False, use_cpu=True, report_to="none")
        self.trainer = trl.GRPOTrainer(model=hf, reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                                       args=args, processing_class=tokenizer,
                                       train_dataset=datasets.Dataset.from_list([{"prompt": r["prompt"]} for r in recs]))
        self.trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop; one micro step per update
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def variant(self, case: str) -> list[dict[str, Any]]:
        """The rollout sequences for ``case``: on-policy, off-policy (π_old perturbed), tis."""
        seqs = [{k: v for k, v in s.items() if k != "sampler_logp"} for s in self.seqs]
        if case == "on_policy":
            return seqs
        gen = torch.Generator().manual_seed(0)
        self.obj._fill_logps(self.policy, seqs, "old_logp")
        for s in seqs:  # ratios spread over ~[0.6, 1.6]: both clip sides are hit
            s["old_logp"] = (torch.tensor(s["old_logp"]) + 0.25 * torch.randn(len(s["response"]), generator=gen)).tolist()
        if case == "tis":
            for s in seqs:  # importance weights π_old/π_sampler spread over ~[0.3, 3]: the cap 2.0 is hit
                noise = 0.6 * torch.randn(len(s["response"]), generator=gen)
                s["sampler_logp"] = (torch.tensor(s["old_logp"]) - noise).tolist()
        return seqs

    def ours(self, seqs: list[dict[str, Any]]) -> tuple[torch.Tensor, dict[str, float]]:
        """Mean loss over all response tokens (two micro batches, as the loop does) and mean metrics."""
        mbs = [self.obj._collate(seqs[i : i + 6]) for i in range(0, len(seqs), 6)]
        n = sum(self.obj.normalizer(mb) for mb in mbs)
        total, sums = torch.zeros(()), {}
        for mb in mbs:
            loss_sum, metrics = self.obj.loss(self.policy, mb)
            total = total + loss_sum / n
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return total, {k: v / n for k, v in sums.items()}

    def theirs(self, seqs: list[dict[str, Any]]) -> tuple[torch.Tensor, dict[str, float]]:
        """TRL's loss on the inputs its generation step would hand to ``_compute_loss``."""
        B, P, C = len(seqs), max(len(s["prompt"]) for s in seqs), max(len(s["response"]) for s in seqs)
        prompt_ids = torch.full((B, P), self.pad, dtype=torch.long)
        prompt_mask = torch.zeros((B, P), dtype=torch.long)
        completion_ids = torch.full((B, C), self.pad, dtype=torch.long)
        completion_mask = torch.zeros((B, C), dtype=torch.long)
        old = torch.zeros((B, C))
        sampler = torch.zeros((B, C))
        for j, s in enumerate(seqs):
            p, r = len(s["prompt"]), len(s["response"])
            prompt_ids[j, P - p :], prompt_mask[j, P - p :] = torch.tensor(s["prompt"]), 1  # left padding
            completion_ids[j, :r], completion_mask[j, :r] = torch.tensor(s["response"]), 1
            if "old_logp" in s:
                old[j, :r] = torch.tensor(s["old_logp"])
            if "sampler_logp" in s:
                sampler[j, :r] = torch.tensor(s["sampler_logp"])
        # advantages as TRL computes them with scale_rewards="none": reward − group mean
        rewards = torch.tensor(REWARDS).flatten()
        advantages = rewards - rewards.view(-1, G).mean(1).repeat_interleave(G)
        inputs = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
                  "completion_mask": completion_mask, "advantages": advantages,
                  "old_per_token_logps": old if "old_logp" in seqs[0] else None,
                  "num_items_in_batch": completion_mask.sum()}
        tis = "sampler_logp" in seqs[0]
        if tis:  # TRL's token_truncate importance ratio (grpo_trainer.py, _generate_and_score_completions)
            diff = torch.nan_to_num((old - sampler) * completion_mask, nan=0.0)
            inputs["importance_sampling_ratio"] = torch.clamp(torch.exp(diff), min=None, max=TIS_CAP)
        t = self.trainer
        flags = (t.use_vllm, t.vllm_importance_sampling_correction)
        t.use_vllm, t.vllm_importance_sampling_correction = tis, tis
        try:
            loss = t.compute_loss(t.model.train(), inputs)
        finally:
            t.use_vllm, t.vllm_importance_sampling_correction = flags
        return loss, {k: v[-1] for k, v in t._metrics["train"].items()}


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    return Peers(tmp_path_factory.mktemp("grpo_trl"))


def test_advantages_are_trls(peers):
    """Our per-response advantages (reward − group mean, no std) are the ones TRL is given."""
    ours = torch.tensor([s["adv"] for s in peers.seqs])
    expect = group_advantages(torch.tensor(REWARDS)).flatten()
    assert torch.allclose(ours, expect) and ours.abs().sum() > 0


@pytest.mark.parametrize("case", ["on_policy", "off_policy", "tis"])
def test_loss_clip_fractions_and_gradients_equal_trl(peers, case):
    seqs = peers.variant(case)
    peers.policy.zero_grad(set_to_none=True)
    peers.trainer.model.zero_grad(set_to_none=True)
    ours_loss, ours = peers.ours(seqs)
    theirs_loss, theirs = peers.theirs(seqs)
    assert abs(float(ours_loss.detach()) - float(theirs_loss.detach())) < 1e-5, (float(ours_loss), float(theirs_loss))
    assert abs(float(ours_loss.detach())) > 1e-3
    assert abs(ours["entropy"] - theirs["entropy"]) < 1e-4
    assert abs(ours["clip_low"] - theirs["clip_ratio/low_mean"]) < 1e-6
    assert abs(ours["clip_high"] - theirs["clip_ratio/high_mean"]) < 1e-6
    if case == "on_policy":
        assert ours["clip_low"] == ours["clip_high"] == 0
    else:
        assert ours["clip_low"] > 0 and ours["clip_high"] > 0  # both sides hit
    if case == "tis":
        assert 0.5 < ours["is_weight"] < TIS_CAP and ours["is_weight"] != 1.0
    ours_loss.backward()
    theirs_loss.backward()
    grads = to_hf_state({k: p.grad for k, p in peers.policy.named_parameters()}, peers.policy.cfg)
    named = dict(peers.trainer.model.named_parameters())
    # transformers builds the embedding with padding_idx=pad_token_id: that row never gets a gradient (the
    # random tiny policy does sample the pad id); ours does. Every other row must agree.
    pad_row = peers.trainer.model.model.embed_tokens.padding_idx
    assert pad_row == peers.policy.cfg.pad_token_id
    grads["model.embed_tokens.weight"][pad_row] = 0
    for key in GRAD_KEYS:
        g = named[key].grad
        assert g is not None and float(g.abs().max()) > 1e-4, key
        assert torch.allclose(grads[key], g, atol=1e-5, rtol=0), (key, float((grads[key] - g).abs().max()))


def test_response_positions_match_trls_completion(peers):
    """Our collated targets score exactly the response tokens TRL's completion mask scores."""
    mb = peers.obj._collate(peers.seqs)
    for j, s in enumerate(peers.seqs):
        scored = mb["targets"][j][mb["targets"][j] != IGNORE_INDEX].tolist()
        assert scored == s["response"]
