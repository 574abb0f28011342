"""Post-training throughput: olmoflow's SFT and DPO against TRL's ``SFTTrainer`` and ``DPOTrainer``.

Same model (the ``tiny-5m`` OLMo 3 preset with a tokenizer trained here; TRL gets it exported to
transformers with the same weights), same data (arithmetic chat conversations; preference pairs with a
correct chosen and a wrong, longer-or-shorter rejected answer), same batch geometry, optimizer (AdamW,
linear decay, clip 1.0), fp32, and the same number of threads (``torch.set_num_threads``), in one run.

- SFT: ``--seq-len`` tokens per sequence, ``--batch`` sequences per step, conversations packed with
  per-conversation attention and assistant-only loss on both sides (ours: ``sft``; TRL: ``packing=True``
  (best-fit, padding-free) and ``assistant_only_loss=True``, which our chat template's
  ``{% generation %}`` blocks support).
- DPO: sigmoid loss, ``--pairs`` pairs per step (chosen and rejected in one forward on both sides),
  reference log-probs computed once before training on both sides (ours always; TRL with
  ``precompute_ref_log_probs=True``, reference = the initial model as in ours).

TRL runs with ``gradient_checkpointing=False`` (its default is True; ours is off unless
``activation_checkpointing``) and ``bf16=False`` (transformers' default on a bf16-capable CPU).

A step's time is the interval between two consecutive optimizer-step ends (everything the loop does:
data, forward, backward, clip, AdamW, logging): the median over the steps after ``--warmup`` of a run,
then the median over ``--rounds`` runs of each trainer, ours and TRL alternating (who goes first too),
so that load changes on a shared machine hit both sides. tokens/s counts
real tokens (no padding): the mean non-padding tokens of a step's batch (packed sequences for SFT,
prompt + chosen and prompt + rejected for DPO) × steps/s. ratio = ours / TRL (> 1: ours is faster).

    python benchmarks/posttrain_throughput.py
    python benchmarks/posttrain_throughput.py --preset tiny-20m --seq-len 512 --steps 20 --threads 8 --rounds 3

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
from typing import Any

import numpy as np
import torch

from olmoflow.config import validate
from olmoflow.model import Olmo, get_preset, save
from olmoflow.posttrain.dpo import DPOConfig, DPOObjective, load_pairs
from olmoflow.posttrain.sft import SFTConfig, SFTObjective
from olmoflow.tokenizer import Tok, apply_chat_template, train_tokenizer
from olmoflow.train.callbacks import Callback
from olmoflow.train.trainer import train

NAMES = ["Ava", "Ben", "Kim", "Ola", "Raj", "Sam", "Lea", "Tom"]
ITEMS = ["apples", "books", "coins", "pencils", "stamps", "shells", "cards", "marbles"]


def _problem(r: random.Random) -> tuple[list[dict[str, str]], str, str]:
    """(prompt messages, correct answer, wrong answer) of one arithmetic word problem."""
    who, item = r.choice(NAMES), r.choice(ITEMS)
    a, b = r.randint(10, 99), r.randint(2, 60)
    prompt = [{"role": "user", "content": f"{who} has {a} {item} and gets {b} more. How many {item} does "
                                          f"{who} have now?"}]
    if r.random() < 0.3:
        prompt.insert(0, {"role": "system", "content": "You are a careful math tutor. Think step by step."})
    good = f"{who} starts with {a} {item}. Adding {b} gives {a} + {b} = {a + b}. The answer is {a + b}."
    wrong = r.choice([f"The answer is {a + b + r.randint(1, 9)}.",
                      f"{who} has {a} {item}, and {b} more is {a} - {b} = {a - b}, so {who} now has {a - b} "
                      f"{item}. The answer is {a - b}."])
    return prompt, good, wrong


def make_data(work: Path, n: int, seed: int = 0) -> dict[str, Path]:
    """Chat conversations (SFT), preference pairs (DPO) and a tokenizer trained on their text."""
    r = random.Random(seed)
    conversations, pairs = [], []
    for _ in range(n):
        prompt, good, wrong = _problem(r)
        messages = [*prompt, {"role": "assistant", "content": good}]
        if r.random() < 0.3:  # a follow-up turn
            messages += [{"role": "user", "content": "Are you sure?"},
                         {"role": "assistant", "content": f"Yes. {good}"}]
        conversations.append({"messages": messages})
        pairs.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": good}],
                      "rejected": [{"role": "assistant", "content": wrong}]})
    work.mkdir(parents=True, exist_ok=True)
    paths = {"sft": work / "sft.jsonl", "pairs": work / "pairs.jsonl", "docs": work / "docs.jsonl"}
    for key, records in (("sft", conversations), ("pairs", pairs)):
        paths[key].write_text("".join(json.dumps(x) + "\n" for x in records))
    paths["docs"].write_text("".join(json.dumps({"id": str(i), "text": apply_chat_template(c["messages"])}) + "\n"
                                     for i, c in enumerate(conversations)))
    paths["tok"] = Path(train_tokenizer([paths["docs"]], work / "tok", vocab_size=1024, quiet=True))
    return paths


def make_model(preset: str, tok_dir: Path, seq_len: int, out: Path) -> Path:
    """The preset's architecture with the tokenizer's special ids, seeded weights, saved at ``out``."""
    tok = Tok.from_dir(tok_dir)
    cfg = get_preset(preset).model_copy(update={"eos_token_id": tok.token_id("<|endoftext|>"),
                                                "pad_token_id": tok.token_id("<|pad|>"),
                                                "max_seq_len": max(seq_len, get_preset(preset).max_seq_len)})
    model = Olmo(cfg, init=False)
    model.init_weights(generator=torch.Generator().manual_seed(0))
    save(model, out)
    return out


class StepClock(Callback):
    """Wall-clock time at each optimizer-step end (ours)."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_end(self, step, total_steps, model, run_dir, record) -> None:
        self.times.append(time.perf_counter())


def step_seconds(times: list[float], warmup: int) -> float:
    """Median interval between consecutive step ends, after ``warmup`` steps."""
    gaps = np.diff(times)[warmup:]
    return float(statistics.median(gaps))


# ---------------------------------------------------------------------------- ours


def ours_sft(p: dict[str, Path], base: Path, a, work: Path) -> tuple[float, float]:
    """(seconds per step, real tokens per step) of olmoflow's SFT."""
    cfg = validate(SFTConfig, dict(run_dir=str(work / "ours_sft"), init_from=str(base), tokenizer=str(p["tok"]),
                                   data={"paths": [str(p["sft"])]}, seq_len=a.seq_len, micro_batch=a.batch,
                                   global_batch_tokens=a.seq_len * a.batch, steps=a.warmup + a.steps + 1,
                                   optimizer={"lr": 1e-4}, checkpoint={"every": 0}))
    obj, clock = SFTObjective(cfg), StepClock()
    train(cfg, obj, quiet=True, callbacks=[clock])
    src = obj.sampler.sources[0]
    real = sum(len(e.ids) for e in src.examples) / len(src)  # mean tokens in a packed sequence
    return step_seconds(clock.times, a.warmup), real * a.batch


def ours_dpo(p: dict[str, Path], base: Path, a, work: Path) -> tuple[float, float]:
    """(seconds per step, real tokens per step) of olmoflow's DPO."""
    cfg = validate(DPOConfig, dict(run_dir=str(work / "ours_dpo"), init_from=str(base), tokenizer=str(p["tok"]),
                                   data={"paths": [str(p["pairs"])]}, seq_len=a.seq_len, micro_batch=a.pairs,
                                   global_batch_pairs=a.pairs, steps=a.warmup + a.steps + 1, loss_type="sigmoid",
                                   beta=0.1, optimizer={"lr": 1e-5}, checkpoint={"every": 0}))
    clock = StepClock()
    train(cfg, DPOObjective(cfg), quiet=True, callbacks=[clock])
    return step_seconds(clock.times, a.warmup), pair_tokens(p, a.seq_len) * a.pairs


def pair_tokens(p: dict[str, Path], seq_len: int) -> float:
    """Mean real tokens of one pair: prompt + chosen and prompt + rejected."""
    pairs = load_pairs([str(p["pairs"])], Tok.from_dir(p["tok"]), seq_len)
    return float(np.mean([len(x.chosen) + len(x.rejected) for x in pairs]))


# ---------------------------------------------------------------------------- TRL


def trl_common(a, out: Path) -> dict[str, Any]:
    return dict(output_dir=str(out), max_steps=a.warmup + a.steps + 1, learning_rate=1e-4,
                lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch",
                adam_beta1=0.9, adam_beta2=0.95, logging_steps=1, save_strategy="no", report_to="none", bf16=False,
                use_cpu=True, gradient_checkpointing=False, gradient_accumulation_steps=1, seed=0,
                dataloader_num_workers=0, disable_tqdm=True)


def trl_clock():
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter())

    return Clock()


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def trl_sft(p: dict[str, Path], hf: Path, a, work: Path) -> tuple[float, float]:
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    args = trl.SFTConfig(**trl_common(a, work / "trl_sft"), per_device_train_batch_size=a.batch,
                         max_length=a.seq_len, packing=True, assistant_only_loss=True)
    clock = trl_clock()
    trainer = trl.SFTTrainer(model=AutoModelForCausalLM.from_pretrained(hf), args=args,
                             processing_class=AutoTokenizer.from_pretrained(p["tok"]),
                             train_dataset=Dataset.from_list(_records(p["sft"])), callbacks=[clock])
    trainer.train()
    real = float(np.mean([len(x) for x in trainer.train_dataset["input_ids"]]))  # mean packed sequence
    return step_seconds(clock.times, a.warmup), real * a.batch


def trl_dpo(p: dict[str, Path], hf: Path, a, work: Path) -> tuple[float, float]:
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    args = trl.DPOConfig(**{**trl_common(a, work / "trl_dpo"), "learning_rate": 1e-5},
                         per_device_train_batch_size=a.pairs, max_length=a.seq_len, loss_type=["sigmoid"], beta=0.1,
                         precompute_ref_log_probs=True)
    clock = trl_clock()
    trainer = trl.DPOTrainer(model=AutoModelForCausalLM.from_pretrained(hf), args=args,
                             processing_class=AutoTokenizer.from_pretrained(p["tok"]),
                             train_dataset=Dataset.from_list(_records(p["pairs"])), callbacks=[clock])
    trainer.train()
    return step_seconds(clock.times, a.warmup), pair_tokens(p, a.seq_len) * a.pairs


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny-5m")
    ap.add_argument("--seq-len", type=int, default=256, help="SFT sequence length; DPO's longest pair")
    ap.add_argument("--batch", type=int, default=4, help="SFT sequences per step")
    ap.add_argument("--pairs", type=int, default=4, help="DPO pairs per step")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per run (after --warmup)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each trainer, ours and TRL alternating")
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of both sides (1: on a shared 2-core machine 2 threads oversubscribe)")
    a = ap.parse_args(argv)
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
        base = make_model(a.preset, p["tok"], a.seq_len, work / "base")
        n_params = sum(t.numel() for t in Olmo(get_preset(a.preset), init=False).parameters())
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.preset} ({n_params / 1e6:.1f}M params), "
              f"TRL {trl.__version__ if trl else '-'}; SFT {a.batch}x{a.seq_len} packed, DPO {a.pairs} pairs/step, "
              f"{a.rounds} rounds x {a.steps} timed steps", flush=True)
        sides = {"ours": {"sft": ours_sft, "dpo": ours_dpo}}
        if trl is not None:
            from olmoflow.model import load
            from olmoflow.model.hf import export_hf

            base_hf = export_hf(load(base), work / "hf")
            sides["trl"] = {"sft": trl_sft, "dpo": trl_dpo}
        for kind in ("sft", "dpo"):
            seconds: dict[str, list[float]] = {side: [] for side in sides}
            tokens: dict[str, float] = {}
            for r in range(a.rounds):
                order = list(sides) if r % 2 == 0 else list(sides)[::-1]  # alternate who runs first
                for side in order:
                    model = base if side == "ours" else base_hf
                    sec, tokens[side] = sides[side][kind](p, model, a, work / f"{side}-{kind}-{r}")
                    seconds[side].append(sec)
            rate = {side: (1 / statistics.median(v), tokens[side] / statistics.median(v)) for side, v in seconds.items()}
            result[f"{kind}_steps_s"], result[f"{kind}_tok_s"] = f"{rate['ours'][0]:.2f}", f"{rate['ours'][1]:.0f}"
            line = f"{kind.upper()}  olmoflow {rate['ours'][0]:6.2f} steps/s {rate['ours'][1]:7.0f} tok/s"
            if "trl" in rate:
                steps_ratio, tok_ratio = rate["ours"][0] / rate["trl"][0], rate["ours"][1] / rate["trl"][1]
                result[f"{kind}_peer_steps_s"] = f"{rate['trl'][0]:.2f}"
                result[f"{kind}_peer_tok_s"] = f"{rate['trl'][1]:.0f}"
                result[f"{kind}_steps_ratio"], result[f"{kind}_tok_ratio"] = f"{steps_ratio:.2f}", f"{tok_ratio:.2f}"
                line += (f"   TRL {rate['trl'][0]:6.2f} steps/s {rate['trl'][1]:7.0f} tok/s   "
                         f"ratio steps {steps_ratio:.2f} tokens {tok_ratio:.2f}")
            print(line, flush=True)
    if trl is None:
        result["peer"] = "skipped"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
