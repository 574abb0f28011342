"""RL throughput: olmoflow's GRPO (``olmoflow rl``) against TRL's ``GRPOTrainer``, on CPU, in one run.

Same model (an OLMo 3 preset with a tokenizer trained here; TRL gets it exported to transformers with
the same weights), same prompts (arithmetic questions through the chat template), same group size,
prompts per step, completion length, temperature 1, same reward (olmoflow's math verifier, called from
TRL's reward function), same loss settings (token mean over the batch / ``loss_type="dapo"``, no std
scaling, clip 0.2 / 0.272, no KL term and no reference model), one optimizer step per rollout, AdamW,
fp32, and the same number of threads. Two things are switched off on our side because TRL has no
counterpart: active sampling (it would sample extra prompts to replace zero-std groups) and the KL
measurement against the initial policy (``measure_kl``; a reference forward per step).

A step = one rollout (generate ``--prompts`` × ``--group`` completions, score them, advantages) plus one
optimizer step on them. Each side's time is split into rollout (ours: ``GRPOObjective._rollout``; TRL:
``_generate_and_score_completions``) and learner (the rest of the step: forward, backward, AdamW,
logging). Figures are medians over the steps after ``--warmup``, in wall time (``--clock cpu``: CPU
seconds of this process, for a busy shared machine, with ``--threads 1``). Rollout tokens/s = generated
completion tokens of a step / its rollout time; steps/s = 1 / step time. ratio = ours / TRL.

    python benchmarks/rl_throughput.py
    python benchmarks/rl_throughput.py --preset tiny-20m --group 8 --prompts 8 --max-new 64 --threads 8

Ends with ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from olmoflow.config import validate
from olmoflow.model import Olmo, get_preset, save
from olmoflow.posttrain.grpo import GRPOConfig, GRPOObjective
from olmoflow.tokenizer import Tok, apply_chat_template, train_tokenizer
from olmoflow.train.callbacks import Callback
from olmoflow.train.trainer import train

LR = 1e-5
#: the clock steps are timed with: wall time, or with --clock cpu the CPU time of this process (all its
#: threads), which other jobs on a shared machine do not inflate
_CLOCK = {"now": time.perf_counter}


def _now() -> float:
    return _CLOCK["now"]()


def make_data(work: Path, n: int, seed: int = 0) -> dict[str, Path]:
    """Arithmetic prompt records (``prompt`` + ``answer``) and a tokenizer trained on their chat text."""
    r = random.Random(seed)
    recs = []
    for i in range(n):
        a, b = r.randint(2, 60), r.randint(2, 60)
        recs.append({"id": str(i), "prompt": f"What is {a} plus {b}? Put the answer in \\boxed{{}}.",
                     "answer": str(a + b), "solution": f"{a} + {b} = {a + b}, so \\boxed{{{a + b}}}."})
    work.mkdir(parents=True, exist_ok=True)
    prompts, docs = work / "prompts.jsonl", work / "docs.jsonl"
    prompts.write_text("".join(json.dumps({k: x[k] for k in ("id", "prompt", "answer")}) + "\n" for x in recs))
    docs.write_text("".join(json.dumps({"id": x["id"], "text": apply_chat_template(
        [{"role": "user", "content": x["prompt"]}, {"role": "assistant", "content": x["solution"]}])}) + "\n"
        for x in recs))
    tok = Path(train_tokenizer([docs], work / "tok", vocab_size=1024, quiet=True))
    return {"prompts": prompts, "tok": tok}


def make_model(preset: str, tok_dir: Path, out: Path) -> Path:
    """The preset's architecture with the tokenizer's special ids, seeded weights, saved at ``out``."""
    tok = Tok.from_dir(tok_dir)
    cfg = get_preset(preset).model_copy(update={"eos_token_id": tok.token_id("<|endoftext|>"),
                                                "pad_token_id": tok.token_id("<|pad|>")})
    model = Olmo(cfg, init=False)
    model.init_weights(generator=torch.Generator().manual_seed(0))
    save(model, out)
    return out


def _split(steps: list[tuple[float, float, int]], warmup: int) -> dict[str, float]:
    """Medians of (step seconds, rollout seconds, completion tokens) after ``warmup`` steps."""
    kept = steps[warmup:]
    step = statistics.median(s for s, _, _ in kept)
    roll = statistics.median(r for _, r, _ in kept)
    toks = statistics.median(t for _, _, t in kept)
    return {"step_s": step, "rollout_s": roll, "learner_s": step - roll, "tokens": toks,
            "steps_per_s": 1 / step, "rollout_tok_s": toks / roll}


# ---------------------------------------------------------------------------- ours


class TimedObjective(GRPOObjective):
    """GRPO with the rollout's time and generated tokens recorded per step."""

    def __init__(self, cfg: GRPOConfig):
        super().__init__(cfg)
        self.rollout_times: list[tuple[float, int]] = []

    def _rollout(self, model) -> None:
        t0 = _now()
        super()._rollout(model)
        tokens = sum(len(s["response"]) for update in self.pending for s in update)
        self.rollout_times.append((_now() - t0, tokens))


class StepClock(Callback):
    def __init__(self):
        self.times: list[float] = []

    def on_step_end(self, step, total_steps, model, run_dir, record) -> None:
        self.times.append(_now())


def ours(p: dict[str, Path], base: Path, a, work: Path) -> dict[str, float]:
    cfg = validate(GRPOConfig, dict(
        run_dir=str(work / "ours"), init_from=str(base), tokenizer=str(p["tok"]), data={"paths": [str(p["prompts"])]},
        seq_len=a.seq_len, rollout={"group_size": a.group, "max_new_tokens": a.max_new, "max_batch_size": 256},
        prompts_per_step=a.prompts, micro_batch=a.prompts * a.group, steps=a.warmup + a.steps,
        active_sampling=False, measure_kl=False, optimizer={"lr": LR, "weight_decay": 0.0}, checkpoint={"every": 0}))
    obj, clock = TimedObjective(cfg), StepClock()
    start = _now()
    train(cfg, obj, quiet=True, callbacks=[clock])
    bounds = [start, *clock.times]
    steps = [(bounds[i + 1] - bounds[i], r, t) for i, (r, t) in enumerate(obj.rollout_times)]
    return _split(steps, a.warmup)


# ---------------------------------------------------------------------------- TRL


def trl_run(p: dict[str, Path], hf: Path, a, work: Path) -> dict[str, float]:
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback

    from olmoflow.posttrain.verifiers import verify

    records = [json.loads(line) for line in p["prompts"].read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]}
                                 for r in records])

    def math_reward(completions, answer, **kw) -> list[float]:
        return [float(verify({"answer": gold}, c[0]["content"])[0]) for c, gold in zip(completions, answer)]

    rollouts: list[tuple[float, int]] = []
    times: list[float] = []

    class Timed(trl.GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            t0 = _now()
            out = super()._generate_and_score_completions(inputs)
            rollouts.append((_now() - t0, int(out["completion_mask"].sum())))
            return out

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(_now())

    args = trl.GRPOConfig(
        output_dir=str(work / "trl"), max_steps=a.warmup + a.steps, learning_rate=LR, lr_scheduler_type="constant",
        weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.95, logging_steps=1,
        save_strategy="no", report_to="none", bf16=False, use_cpu=True, gradient_checkpointing=False,
        gradient_accumulation_steps=1, seed=0, dataloader_num_workers=0, disable_tqdm=True,
        per_device_train_batch_size=a.prompts * a.group, num_generations=a.group, max_completion_length=a.max_new,
        temperature=1.0, top_p=1.0, loss_type="dapo", scale_rewards="none", epsilon=0.2, epsilon_high=0.272,
        beta=0.0, log_completions=False)
    trainer = Timed(model=AutoModelForCausalLM.from_pretrained(hf), reward_funcs=math_reward, args=args,
                    processing_class=AutoTokenizer.from_pretrained(p["tok"]), train_dataset=dataset,
                    callbacks=[Clock()])
    trainer.remove_callback(PrinterCallback)  # no per-step log dicts on stdout
    start = _now()
    trainer.train()
    bounds = [start, *times]
    steps = [(bounds[i + 1] - bounds[i], r, t) for i, (r, t) in enumerate(rollouts)]
    return _split(steps, a.warmup)


# ---------------------------------------------------------------------------- main


def _line(name: str, r: dict[str, float]) -> str:
    share = r["rollout_s"] / r["step_s"]
    return (f"{name:9s} {r['steps_per_s']:6.3f} steps/s  rollout {r['rollout_tok_s']:7.0f} tok/s "
            f"({r['tokens']:.0f} tokens)  step {r['step_s']:.2f}s = rollout {r['rollout_s']:.2f}s "
            f"({100 * share:.0f}%) + learner {r['learner_s']:.2f}s -> {'rollout' if share >= 0.5 else 'learner'} "
            "dominates")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny-5m")
    ap.add_argument("--prompts", type=int, default=4, help="prompts (groups) per step")
    ap.add_argument("--group", type=int, default=8, help="completions per prompt")
    ap.add_argument("--max-new", type=int, default=64, help="completion tokens at most")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: time by this process's CPU seconds (robust on a busy machine; use with --threads 1)")
    a = ap.parse_args(argv)
    _CLOCK["now"] = time.process_time if a.clock == "cpu" else time.perf_counter
    torch.set_num_threads(a.threads)
    warnings.filterwarnings("ignore")
    try:
        import trl
    except ImportError as e:
        trl = None
        print(f"TRL not available ({e}): peer skipped (pip install trl==1.16.0)")
    result: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        p = make_data(work / "data", a.examples)
        base = make_model(a.preset, p["tok"], work / "base")
        n_params = sum(t.numel() for t in Olmo(get_preset(a.preset), init=False).parameters())
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.preset} ({n_params / 1e6:.1f}M params), "
              f"TRL {trl.__version__ if trl else '-'}; {a.prompts} prompts × {a.group} completions × ≤{a.max_new} "
              f"tokens per step, {a.steps} timed steps after {a.warmup}, {a.clock} clock", flush=True)
        mine = ours(p, base, a, work)
        print(_line("olmoflow", mine), flush=True)
        result.update(ours_steps_s=f"{mine['steps_per_s']:.3f}", ours_rollout_tok_s=f"{mine['rollout_tok_s']:.0f}",
                      ours_rollout_share=f"{mine['rollout_s'] / mine['step_s']:.2f}")
        if trl is not None:
            from olmoflow.model import load
            from olmoflow.model.hf import export_hf

            peer = trl_run(p, export_hf(load(base), work / "hf"), a, work)
            print(_line("TRL", peer), flush=True)
            steps_ratio = mine["steps_per_s"] / peer["steps_per_s"]
            tok_ratio = mine["rollout_tok_s"] / peer["rollout_tok_s"]
            learner_ratio = peer["learner_s"] / mine["learner_s"]
            print(f"ratio (ours / TRL): steps/s {steps_ratio:.2f}, rollout tok/s {tok_ratio:.2f}, "
                  f"learner time {learner_ratio:.2f}")
            result.update(peer_steps_s=f"{peer['steps_per_s']:.3f}", peer_rollout_tok_s=f"{peer['rollout_tok_s']:.0f}",
                          peer_rollout_share=f"{peer['rollout_s'] / peer['step_s']:.2f}",
                          steps_ratio=f"{steps_ratio:.2f}", rollout_tok_ratio=f"{tok_ratio:.2f}",
                          learner_ratio=f"{learner_ratio:.2f}")
        else:
            result["peer"] = "skipped"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
