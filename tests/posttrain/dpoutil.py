"""Helpers for DPO tests: a tokenizer trained offline, tiny saved models and preference files."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from olmoflow.config import validate
from olmoflow.model import ModelConfig, Olmo, save
from olmoflow.posttrain.dpo import DPOConfig

WORDS = "the cat sat on a mat and ran to dog house big small red blue one two three four five answer is".split()
MODEL = dict(flavor="olmo3", vocab_size=384, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=2, n_heads=4,
             n_kv_heads=2, mlp_hidden=128, max_seq_len=128, sliding_window=16)


def make_tokenizer(root: Path) -> Path:
    """A small BPE tokenizer (olmoflow's trainer, special tokens and chat template) in ``root/tok``."""
    from olmoflow.tokenizer import train_tokenizer

    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    docs = root / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": str(i), "text": " ".join(rng.choice(WORDS) for _ in range(30))})
                            + "\n" for i in range(300)))
    return Path(train_tokenizer([docs], root / "tok", vocab_size=400, quiet=True))


def make_model(path: Path, seed: int, **overrides: Any) -> Path:
    """A tiny OLMo 3 model with seeded random weights (norm weights perturbed too) saved at ``path``."""
    torch.manual_seed(seed)
    model = Olmo(ModelConfig(**{**MODEL, **overrides}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    save(model, path)
    return path


def pair_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Arithmetic preference pairs in the conversational form (prompt as messages, chosen/rejected as
    assistant messages); a system turn on every third pair, multi-word responses of different lengths."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        prompt = [{"role": "user", "content": f"what is {a} plus {b}"}]
        if i % 3 == 0:
            prompt = [{"role": "system", "content": "answer with one small number"}, *prompt]
        wrong = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        out.append({"prompt": prompt,
                    "chosen": [{"role": "assistant", "content": f"the answer is {a + b}"}],
                    "rejected": [{"role": "assistant", "content": f"the answer is {rng.randint(10, 99)} {wrong}"}]})
    return out


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def dpo_config(root: Path, **kw: Any) -> DPOConfig:
    """A DPO config on the models/tokenizer/pairs under ``root`` (see :func:`make_setup`)."""
    base = dict(run_dir=str(root / "run"), init_from=str(root / "policy"), reference=str(root / "reference"),
                tokenizer=str(root / "tok"), data={"paths": [str(root / "pairs.jsonl")]}, seq_len=96,
                global_batch_pairs=4, micro_batch=2, steps=3, loss_type="sigmoid", beta=0.5,
                optimizer={"lr": 1e-3}, seed=0)
    return validate(DPOConfig, {**base, **kw})


def make_setup(root: Path, n_pairs: int = 8) -> Path:
    """Tokenizer, policy and a different reference model, and ``n_pairs`` pairs under ``root``."""
    make_tokenizer(root)
    make_model(root / "policy", seed=1)
    make_model(root / "reference", seed=2)
    write_jsonl(root / "pairs.jsonl", pair_records(n_pairs))
    return root
