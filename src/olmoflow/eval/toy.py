"""Tiny random models and tokenizers for tests, benchmarks and smoke runs of the harness.

Everything is deterministic given the seed, so two calls produce byte-identical directories.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

__all__ = ["TOY_TEXTS", "make_toy_tokenizer", "make_toy_model", "make_toy_run"]

TOY_TEXTS = [
    "Question: What is 12 + 7?\nAnswer: 19",
    "The quick brown fox jumps over the lazy dog. A stitch in time saves nine.",
    "Plants need water, light and air to grow. The sun is a star. Rocks are hard.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Lichens are made of algae and fungi. Magnets attract iron. Ice melts when heated.",
    "Which technology was developed most recently? cellular telephone, television, airplane",
]


def make_toy_tokenizer(out_dir: str | Path, vocab_size: int = 400, texts: list[str] | None = None) -> Path:
    """Train a small olmoflow byte-level BPE tokenizer (HF-loadable directory) on toy text."""
    from olmoflow.tokenizer import train_tokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "_corpus.jsonl"
    lines = (texts or TOY_TEXTS) * 20
    corpus.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(lines)))
    train_tokenizer([corpus], out, vocab_size=vocab_size, quiet=True)
    corpus.unlink()
    return out


def _tiny_model(tokenizer_dir: Path, seed: int, preset: str = "tiny-1m", **overrides):
    from olmoflow.model import Olmo, get_preset
    from olmoflow.tokenizer import Tok

    tok = Tok.from_dir(tokenizer_dir)
    vocab = ((tok.vocab_size + 63) // 64) * 64
    cfg = get_preset(preset, vocab_size=vocab, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id, **overrides)
    model = Olmo(cfg, init=False)
    model.init_weights(generator=torch.Generator().manual_seed(seed))
    return model


def make_toy_model(
    out_dir: str | Path, tokenizer_dir: str | Path, seed: int = 0, hf: bool = True,
    preset: str = "tiny-1m", **overrides,
) -> Path:
    """A random-init tiny OLMo saved as an HF export (``hf=True``) or a native checkpoint,
    with the tokenizer files next to the weights."""
    from olmoflow.model import save
    from olmoflow.model.hf import export_hf

    model = _tiny_model(Path(tokenizer_dir), seed, preset, **overrides)
    out = Path(out_dir)
    if hf:
        return export_hf(model, out, tokenizer_dir=tokenizer_dir)
    save(model, out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        src = Path(tokenizer_dir) / name
        if src.is_file():
            (out / name).write_bytes(src.read_bytes())
    return out


def make_toy_run(run_dir: str | Path, tokenizer_dir: str | Path, steps: list[int], seed: int = 0) -> Path:
    """A fake pretraining run: ``RUN_DIR/checkpoints/step-N/`` native checkpoints, each the base
    model perturbed a little more (stand-in for training), plus the tokenizer in ``RUN_DIR``."""
    from olmoflow.model import save

    run = Path(run_dir)
    base = _tiny_model(Path(tokenizer_dir), seed)
    gen = torch.Generator().manual_seed(seed + 1)
    for k, step in enumerate(steps):
        with torch.no_grad():
            for p in base.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.01 * (k > 0))
        save(base, run / "checkpoints" / f"step-{step}")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        src = Path(tokenizer_dir) / name
        if src.is_file():
            (run / name).write_bytes(src.read_bytes())
    return run
