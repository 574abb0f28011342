"""RLVR with GRPO as in OLMo 3: ``olmoflow rl --config FILE``, flow stage ``rlvr``.

REFERENCE.md §4. Each rollout samples a group of ``group_size`` responses per prompt at temperature
1 (the rollout backend: the in-process engine by default), scores them with a verifier (or, as the
spurious-reward control, a seeded coin: ``reward: random``) and sets each response's advantage to
its reward minus the group mean (no std division unless ``std_normalize``). The loss per response
token is the clipped policy-gradient term with separate clip-low / clip-high,

    −min(ρ·A, clip(ρ, 1 − clip_low, 1 + clip_high)·A),   ρ = π(t) / π_old(t),

times a truncated importance weight ``min(π_old(t) / π_sampler(t), tis_cap)`` that corrects for the
sampler's log-probs differing from the learner's, plus ``kl_coef`` · KL(π‖π_ref) (k3 estimator;
0 by default: OLMo 3 uses no KL term). The batch loss is the token mean over all response tokens of
the global batch. Active sampling drops groups whose rewards all agree (no signal), samples more
prompts until the batch holds ``prompts_per_step`` informative groups (at most ``max_rounds``
rounds), and retires prompts solved in ≥ ``retire_solved`` of a group. ``updates_per_rollout`` > 1
splits a rollout into that many optimizer steps (π_old = the learner at rollout time).

RL-Zero: ``prompt_format: plain`` starts from a base model with a plain ``Question: …\\nAnswer:``
prompt instead of the chat template. Everything else (optimizer, schedule, checkpoints with exact
resume — rollout state included —, logging) is the one training loop's.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from olmoflow.config import Config
from olmoflow.errors import OlmoflowError
from olmoflow.train.config import OptimizerConfig, ScheduleConfig, TrainConfig
from olmoflow.train.data import IGNORE_INDEX
from olmoflow.train.objective import Objective, RunContext

__all__ = ["GRPOConfig", "GRPOObjective", "grpo_token_loss", "group_advantages", "rl"]


class PromptDataConfig(Config):
    """Prompt records (JSONL: ``prompt`` or ``messages`` + what the verifier needs, e.g. ``answer``)."""

    paths: list[str] = Field(default_factory=list)
    #: train only on records whose ``kind`` is one of these (e.g. ``[arith]`` of a chat_data file); empty: all
    kinds: list[str] = Field(default_factory=list)
    #: held-out prompts scored greedily every ``eval_every`` steps (accuracy = share scoring 1)
    heldout_paths: list[str] = Field(default_factory=list)
    heldout_limit: int | None = Field(100, ge=1)


#: where a plain-format (RL-Zero) response ends unless ``rollout.stop_strings`` says otherwise, as lm-eval
#: stops its generative tasks ("until")
PLAIN_STOP = ["\n\n", "\nQuestion:"]


class RolloutConfig(Config):
    backend: Literal["engine", "vllm"] = "engine"
    group_size: int = Field(8, ge=2)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(64, ge=1)
    max_batch_size: int = Field(64, ge=1)
    #: a response also ends where one of these strings appears (the text before it is scored); None: none
    #: for the chat format, and for the plain RL-Zero format the end of the answer's paragraph
    #: (``PLAIN_STOP``: a base model otherwise runs on into its next made-up question and answer, whose
    #: numbers the math verifier would read as the final answer)
    stop_strings: list[str] | None = None
    #: an HF export of the starting model (the vllm backend loads it)
    model_dir: str | None = None


class GRPOConfig(TrainConfig):
    """A :class:`TrainConfig` for GRPO; ``init_from``, ``tokenizer`` and ``data.paths`` are required."""

    run_dir: str = "runs/rlvr"
    data: PromptDataConfig = Field(default_factory=PromptDataConfig)  # type: ignore[assignment]
    tokenizer: str | None = None
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    #: informative groups (prompts) per rollout
    prompts_per_step: int = Field(8, ge=1)
    updates_per_rollout: int = Field(1, ge=1)
    clip_low: float = Field(0.2, ge=0)
    clip_high: float = Field(0.272, ge=0)
    kl_coef: float = Field(0.0, ge=0)
    std_normalize: bool = False
    #: truncated importance sampling cap (0: off)
    tis_cap: float = Field(2.0, ge=0)
    active_sampling: bool = True
    max_rounds: int = Field(4, ge=1)
    #: retire a prompt when at least this fraction of its group scores 1
    retire_solved: float = Field(7 / 8, gt=0, le=1)
    #: "verifier": the record's verifier; "random": Bernoulli(0.5), seeded, independent of the answer
    reward: Literal["verifier", "random"] = "verifier"
    prompt_format: Literal["chat", "plain"] = "chat"
    plain_template: str = "Question: {prompt}\nAnswer:"
    #: measure KL to the initial policy every step (also when kl_coef is 0)
    measure_kl: bool = True
    seq_len: int = Field(256, gt=1)
    micro_batch: int = Field(8, gt=0)
    global_batch_tokens: int = 0  # derived: prompts_per_step × group_size / updates_per_rollout (whole micro batches) × seq_len
    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(name="constant"))
    optimizer: OptimizerConfig = Field(default_factory=lambda: OptimizerConfig(lr=1e-6, weight_decay=0.0, z_loss=0.0))
    spike_skip: bool = False
    #: held-out accuracy before the first step too (the curves' starting point)
    eval_at_start: bool = True
    #: also sample this many responses per held-out prompt at the rollout temperature and report their
    #: mean accuracy (``heldout_pass1``, pass@1 averaged over samples, as reasoning evaluations sample);
    #: the same seeds at every evaluation, so the curve moves only with the model. 0: greedy only
    eval_samples: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        if isinstance(data, dict):
            f = cls.model_fields
            group = (data.get("rollout") or {}).get("group_size", RolloutConfig.model_fields["group_size"].default)
            per = data.get("prompts_per_step", f["prompts_per_step"].default)
            upd = data.get("updates_per_rollout", f["updates_per_rollout"].default)
            seq = data.get("seq_len", f["seq_len"].default)
            micro = data.get("micro_batch", f["micro_batch"].default)
            if all(isinstance(x, int) for x in (group, per, upd, seq, micro)) and upd > 0 and micro > 0:
                # sequences per update, rounded up to whole micro batches (the loop's batch plan checks
                # divisibility; the real micro batches are whatever a rollout holds)
                seqs = -(-max(1, per * group // upd) // micro) * micro
                data = {**data, "global_batch_tokens": seqs * seq}
        return data

    @model_validator(mode="after")
    def _need_inputs(self) -> GRPOConfig:
        for key, value in (("init_from", self.init_from), ("tokenizer", self.tokenizer),
                           ("data.paths", self.data.paths)):
            if not value:
                raise ValueError(f"rl needs '{key}'")
        seqs = self.prompts_per_step * self.rollout.group_size
        if seqs % self.updates_per_rollout:
            raise ValueError(f"prompts_per_step × rollout.group_size = {seqs} is not divisible by "
                             f"updates_per_rollout={self.updates_per_rollout}")
        if self.plain_template.count("{prompt}") != 1:
            raise ValueError("plain_template must contain '{prompt}' once")
        return self


# ---------------------------------------------------------------------------- math of GRPO


def group_advantages(rewards: torch.Tensor, std_normalize: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """``rewards`` [groups, G] -> advantages: reward − group mean (÷ group std when asked)."""
    adv = rewards - rewards.mean(-1, keepdim=True)
    if std_normalize:
        adv = adv / (rewards.std(-1, keepdim=True) + eps)
    return adv


def grpo_token_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                    clip_low: float, clip_high: float, sampler_logp: torch.Tensor | None = None, tis_cap: float = 0.0,
                    ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-token GRPO loss summed over ``mask`` (divide by the global token count for the mean).

    logp, old_logp, sampler_logp, ref_logp, mask: [B, T]; adv: [B] (one advantage per response).
    Returns ``(loss_sum, sums)`` with sums over masked tokens of the clipped fractions (low: ratio
    below 1 − clip_low with A < 0; high: above 1 + clip_high with A > 0), the importance weight and
    the k3 KL estimate to ``ref_logp`` (when given)."""
    m = mask.to(logp.dtype)
    a = adv[:, None].to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    per_token = -torch.minimum(ratio * a, clipped * a)
    weight = torch.ones_like(logp)
    if sampler_logp is not None and tis_cap > 0:
        weight = torch.clamp(torch.exp(old_logp - sampler_logp), max=tis_cap).detach()
        per_token = per_token * weight
    kl = None
    if ref_logp is not None:
        d = (ref_logp - logp)
        kl = torch.exp(d) - d - 1
        if kl_coef > 0:
            per_token = per_token + kl_coef * kl
    sums = {
        "clip_low": (((ratio < 1 - clip_low) & (a < 0)).to(m.dtype) * m).sum().detach(),
        "clip_high": (((ratio > 1 + clip_high) & (a > 0)).to(m.dtype) * m).sum().detach(),
        "is_weight": (weight * m).sum().detach(),
        "kl": (kl.detach() * m).sum() if kl is not None else torch.zeros((), dtype=logp.dtype, device=logp.device),
    }
    return (per_token * m).sum(), sums


# ---------------------------------------------------------------------------- prompts


def _read_prompts(paths: list[str]) -> list[dict[str, Any]]:
    from olmoflow.io import iter_records

    out = []
    for path in paths:
        for where, rec in iter_records(path):
            rec.setdefault("id", f"{Path(path).name}:{where.rsplit(':', 1)[1]}")
            out.append({**rec, "_where": where})
    if not out:
        raise OlmoflowError(f"no prompts in {', '.join(paths)}")
    return out


def _prompt_text(rec: dict[str, Any]) -> str:
    """The user's question of a record (for the plain RL-Zero format): ``prompt``, a GSM8K-style
    ``question``, or the last user message."""
    for key in ("prompt", "question"):
        if isinstance(rec.get(key), str):
            return rec[key]
    from olmoflow.posttrain.pairs import prompt_messages

    users = [m.get("content", "") for m in prompt_messages(rec, rec["_where"]) if m.get("role") == "user"]
    if not users:
        raise OlmoflowError(f"{rec['_where']}: no user message to use as the prompt")
    return users[-1]


def _seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


# ---------------------------------------------------------------------------- objective


class GRPOObjective(Objective):
    """GRPO over prompt records; batches are rollouts of the current policy."""

    name = "rlvr"
    metric_names = ("loss", "entropy", "clip_low", "clip_high", "is_weight", "kl")
    allow_empty = True

    def __init__(self, cfg: GRPOConfig):
        self.cfg = cfg
        self.epoch, self.cursor, self.rollouts = 0, 0, 0
        self.retired: set[int] = set()
        self.pending: list[list[dict[str, Any]]] = []
        self.stats: dict[str, Any] = {}
        self._last_stats: dict[str, Any] = {}
        self._taken = False
        self._last_tokens = 0

    # ------------------------------------------------------------------ setup

    def setup(self, run: RunContext) -> None:
        from olmoflow.model import load
        from olmoflow.posttrain.rollout import make_backend
        from olmoflow.posttrain.verifiers import get_verifier, verifier_for
        from olmoflow.tokenizer import Tok

        super().setup(run)
        cfg = self.cfg
        self.tok = Tok.from_dir(cfg.tokenizer)
        if self.tok.vocab_size > run.model_cfg.vocab_size:
            raise OlmoflowError(f"key 'tokenizer': {cfg.tokenizer} has {self.tok.vocab_size} tokens, more than the "
                                f"model's vocab_size {run.model_cfg.vocab_size}")
        self.prompts = _read_prompts(cfg.data.paths)
        if cfg.data.kinds:
            self.prompts = [r for r in self.prompts if r.get("kind") in cfg.data.kinds]
            if not self.prompts:
                raise OlmoflowError(f"key 'data.kinds': no prompt in {cfg.data.paths} has a kind in {cfg.data.kinds}")
        self.heldout = _read_prompts(cfg.data.heldout_paths)[: cfg.data.heldout_limit] if cfg.data.heldout_paths else []
        self.verifiers = []
        for rec in self.prompts + self.heldout:
            if rec.get("verifier"):
                try:
                    v = get_verifier(str(rec["verifier"]))
                except OlmoflowError as e:
                    raise OlmoflowError(f"{rec['_where']}: {e}") from None
            else:
                v = verifier_for(rec)
            if v is None and (cfg.reward == "verifier" or rec in self.heldout):
                raise OlmoflowError(f"{rec['_where']}: no verifier applies to this prompt (give it a 'verifier' "
                                    "field or the field one needs, e.g. 'answer' for math)")
            if v is not None and v.requires and v.requires not in rec:
                raise OlmoflowError(f"{rec['_where']}: verifier {v.name!r} needs field {v.requires!r}")
        self.prompt_ids = [self._encode(r) for r in self.prompts]
        self.heldout_ids = [self._encode(r) for r in self.heldout]
        longest = max(len(p) for p in self.prompt_ids + self.heldout_ids)
        if longest + cfg.rollout.max_new_tokens > cfg.seq_len:
            raise OlmoflowError(f"key 'seq_len': {cfg.seq_len} < longest prompt ({longest} tokens) + "
                                f"rollout.max_new_tokens ({cfg.rollout.max_new_tokens})")
        if cfg.seq_len > run.model_cfg.max_seq_len:
            raise OlmoflowError(f"key 'seq_len': {cfg.seq_len} exceeds the model's max_seq_len {run.model_cfg.max_seq_len}")
        stops = cfg.rollout.stop_strings
        if stops is None:
            stops = PLAIN_STOP if cfg.prompt_format == "plain" else []
        self.backend = make_backend(cfg.rollout.backend, self.tok, self.tok.stop_ids, cfg.rollout.model_dir,
                                    cfg.rollout.max_batch_size, stop_strings=stops)
        self.reference = None
        if cfg.kl_coef > 0 or cfg.measure_kl:  # the initial policy, frozen
            self.reference = load(cfg.init_from, device=run.device).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)

    def _encode(self, rec: dict[str, Any]) -> list[int]:
        if self.cfg.prompt_format == "plain":
            return self.tok.encode(self.cfg.plain_template.format(prompt=_prompt_text(rec)))
        from olmoflow.posttrain.pairs import prompt_messages

        return self.tok.encode_chat(prompt_messages(rec, rec["_where"]), rec.get("tools"), add_generation_prompt=True)

    # ------------------------------------------------------------------ rollouts

    def _reward(self, rec: dict[str, Any], text: str, key: tuple) -> float:
        if self.cfg.reward == "random":
            return float(random.Random(_seed(self.cfg.seed, "coin", *key)).random() < 0.5)
        from olmoflow.posttrain.verifiers import verify

        score, _ = verify(rec, text)
        return float(score or 0.0)

    def _next_prompts(self, n: int) -> list[int]:
        """The next ``n`` unretired prompts of the seeded epoch order (a new order each epoch)."""
        out: list[int] = []
        live = len(self.prompts) - len(self.retired)
        if live <= 0:
            return out
        while len(out) < min(n, live):
            order = np.random.default_rng([self.cfg.seed, self.epoch]).permutation(len(self.prompts))
            if self.cursor >= len(order):
                self.epoch, self.cursor = self.epoch + 1, 0
                continue
            i = int(order[self.cursor])
            self.cursor += 1
            if i not in self.retired and i not in out:
                out.append(i)
        return out

    def _rollout(self, model: torch.nn.Module) -> None:
        cfg, G = self.cfg, self.cfg.rollout.group_size
        self.backend.sync(model)
        groups: list[tuple[int, list[Any], list[float]]] = []
        sampled = dropped = solved_groups = 0
        all_rewards: list[float] = []
        rounds = 0
        while len(groups) < cfg.prompts_per_step and rounds < cfg.max_rounds:
            idx = self._next_prompts(cfg.prompts_per_step - len(groups))
            if not idx:
                break
            seeds = [[_seed(cfg.seed, "sample", self.rollouts, rounds, i, k) for k in range(G)] for i in idx]
            samples = self.backend.generate([self.prompt_ids[i] for i in idx], G, cfg.rollout.max_new_tokens,
                                            cfg.rollout.temperature, cfg.rollout.top_p, seeds)
            for i, group in zip(idx, samples):
                rewards = [self._reward(self.prompts[i], s.text, (self.rollouts, rounds, i, k))
                           for k, s in enumerate(group)]
                sampled += 1
                all_rewards += rewards
                solved = sum(r >= 1.0 for r in rewards) / G
                solved_groups += solved >= cfg.retire_solved
                if solved >= cfg.retire_solved:
                    self.retired.add(i)
                if cfg.active_sampling and float(np.std(rewards)) == 0.0:
                    dropped += 1
                    continue
                groups.append((i, group, rewards))
            rounds += 1
            if not cfg.active_sampling:
                break
        self.rollouts += 1
        seqs = self._sequences(groups)
        per_update = max(1, len(seqs) // cfg.updates_per_rollout) if seqs else 0
        if seqs and cfg.updates_per_rollout > 1:
            self._old_logps(model, seqs)
        self.pending = ([seqs[u * per_update : (u + 1) * per_update] for u in range(cfg.updates_per_rollout)]
                        if seqs else [[] for _ in range(cfg.updates_per_rollout)])
        lengths = [len(s["response"]) for s in seqs]
        self.stats = {
            "reward_mean": float(np.mean(all_rewards)) if all_rewards else 0.0,
            "solve_rate": float(np.mean([r >= 1.0 for r in all_rewards])) if all_rewards else 0.0,
            "groups": len(groups), "groups_sampled": sampled,
            "zero_std_dropped_frac": dropped / max(1, sampled), "rounds": rounds,
            "retired_prompts": len(self.retired), "response_len": float(np.mean(lengths)) if lengths else 0.0,
        }

    def _sequences(self, groups) -> list[dict[str, Any]]:
        cfg = self.cfg
        out = []
        for i, group, rewards in groups:
            adv = group_advantages(torch.tensor([rewards], dtype=torch.float64), cfg.std_normalize)[0].tolist()
            for s, a in zip(group, adv):
                if not s.tokens:
                    continue
                out.append({"prompt": self.prompt_ids[i], "response": list(s.tokens), "sampler_logp": list(s.logprobs),
                            "adv": float(a)})
        if self.reference is not None and out:
            self._fill_logps(self.reference, out, "ref_logp")
        return out

    @torch.no_grad()
    def _fill_logps(self, model, seqs: list[dict[str, Any]], key: str) -> None:
        """Per-response-token log-probs of ``model`` into each sequence's ``key`` (no grad)."""
        was = model.training
        model.eval()
        for s in range(0, len(seqs), self.cfg.micro_batch):
            part = seqs[s : s + self.cfg.micro_batch]
            b = self._collate(part, with_extras=False)
            with self.run.autocast():
                lp = model(b["input_ids"], targets=b["targets"], ignore_index=IGNORE_INDEX)["logp"]
            for j, seq in enumerate(part):
                p, r = len(seq["prompt"]), len(seq["response"])
                seq[key] = lp[j, p - 1 : p - 1 + r].float().cpu().tolist()
        model.train(was)

    def _old_logps(self, model, seqs) -> None:
        self._fill_logps(model, seqs, "old_logp")

    def _collate(self, seqs: list[dict[str, Any]], with_extras: bool = True) -> dict[str, torch.Tensor]:
        """Right-padded [b, T] tensors; per-token values sit at the positions that predict them."""
        T = max(len(s["prompt"]) + len(s["response"]) for s in seqs)
        b = len(seqs)
        pad = self.run.model_cfg.pad_token_id
        ids = torch.full((b, T), pad, dtype=torch.long)
        targets = torch.full((b, T), IGNORE_INDEX, dtype=torch.long)
        extras = {k: torch.zeros((b, T), dtype=torch.float32) for k in ("sampler_logp", "old_logp", "ref_logp")}
        adv = torch.zeros(b, dtype=torch.float32)
        for j, s in enumerate(seqs):
            p, r = len(s["prompt"]), len(s["response"])
            ids[j, :p] = torch.tensor(s["prompt"])
            ids[j, p : p + r] = torch.tensor(s["response"])
            targets[j, p - 1 : p - 1 + r] = torch.tensor(s["response"])
            adv[j] = s["adv"]
            if with_extras:
                for k in extras:
                    if k in s:
                        extras[k][j, p - 1 : p - 1 + r] = torch.tensor(s[k], dtype=torch.float32)
        out = {"input_ids": ids, "targets": targets, "adv": adv}
        if with_extras:
            out.update(extras)
            out["has"] = torch.tensor([int(k in seqs[0]) for k in ("sampler_logp", "old_logp", "ref_logp")])
        return out

    # ------------------------------------------------------------------ objective API

    def next_batch(self, model):
        if not self.pending:
            self._rollout(model)
        self._taken = True
        seqs = self.pending[0]
        rank, world = self.run.rank, self.run.world_size
        mine = seqs[rank::world]
        mb = self.cfg.micro_batch
        return [self._collate(mine[s : s + mb]) for s in range(0, len(mine), mb)]

    def normalizer(self, micro_batch) -> float:
        return int((micro_batch["targets"] != IGNORE_INDEX).sum())

    def loss(self, model, mb):
        cfg = self.cfg
        dev = self.run.device
        b = {k: v.to(dev) for k, v in mb.items()}
        with self.run.autocast():
            out = model(b["input_ids"], targets=b["targets"], ignore_index=IGNORE_INDEX, return_entropy=True)
        logp = out["logp"]
        mask = b["targets"] != IGNORE_INDEX
        has_sampler, has_old, has_ref = (bool(x) for x in b["has"].tolist())
        old = b["old_logp"] if has_old else logp.detach()
        loss_sum, sums = grpo_token_loss(
            logp, old, b["adv"], mask, cfg.clip_low, cfg.clip_high,
            sampler_logp=b["sampler_logp"] if has_sampler else None, tis_cap=cfg.tis_cap,
            ref_logp=b["ref_logp"] if has_ref else None, kl_coef=cfg.kl_coef)
        ent = (out["entropy"].detach() * mask).sum()
        return loss_sum, {"loss": loss_sum.detach(), "entropy": ent, **sums}

    def commit(self) -> None:
        if not self._taken:
            raise RuntimeError("commit() without next_batch()")
        self._taken = False
        done = self.pending.pop(0)
        self._last_stats = dict(self.stats)
        self._last_tokens = sum(len(s["prompt"]) + len(s["response"]) for s in done)

    def step_metrics(self) -> dict[str, Any]:
        return dict(self._last_stats)

    def step_tokens(self) -> int:
        return self._last_tokens

    @torch.no_grad()
    def validate(self, model) -> dict[str, float] | None:
        """Greedy answers to the held-out prompts, scored by their verifiers."""
        if not self.heldout:
            return None
        from olmoflow.posttrain.verifiers import verify

        self.backend.sync(model)
        res = self._greedy()
        scores = [float(verify(rec, r)[0] or 0.0) for rec, r in zip(self.heldout, res)]
        out = {"heldout_reward": float(np.mean(scores)), "heldout_acc": float(np.mean([s >= 1.0 for s in scores]))}
        k = self.cfg.eval_samples
        if k:
            ro = self.cfg.rollout
            seeds = [[_seed(self.cfg.seed, "heldout", i, j) for j in range(k)] for i in range(len(self.heldout_ids))]
            groups = self.backend.generate(self.heldout_ids, k, ro.max_new_tokens, ro.temperature, ro.top_p, seeds)
            out["heldout_pass1"] = float(np.mean([float(verify(rec, s.text)[0] or 0.0) >= 1.0
                                                  for rec, group in zip(self.heldout, groups) for s in group]))
        return out

    def _greedy(self) -> list[str]:
        res = self.backend.generate(self.heldout_ids, 1, self.cfg.rollout.max_new_tokens, 0.0, 1.0,
                                    [[0] for _ in self.heldout_ids])
        return [group[0].text for group in res]

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor, "rollouts": self.rollouts,
                "retired": sorted(self.retired), "pending": self.pending, "stats": self.stats}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.cursor, self.rollouts = int(state["epoch"]), int(state["cursor"]), int(state["rollouts"])
        self.retired = set(state["retired"])
        self.pending = state["pending"]
        self.stats = state["stats"]


def rl(cfg: GRPOConfig, quiet: bool = False, resume: bool = False) -> dict[str, Any]:
    """Run GRPO from ``cfg.init_from``; returns the final metrics."""
    from olmoflow.train.trainer import train

    return train(cfg, GRPOObjective(cfg), quiet=quiet, resume=resume)
