"""Stage ``tokenizer``: train a byte-level BPE tokenizer (olmoflow.tokenizer.train_tokenizer).

Config: ``vocab_size`` (required), ``min_frequency``, ``max_docs``. Input: ``docs`` (documents dir
or file, e.g. ``${stages.curate}/documents``). Output: an AutoTokenizer-loadable directory.
"""

from __future__ import annotations

from pathlib import Path

from olmoflow.flow.registry import StageContext, register_stage
from olmoflow.flow.stages._common import need

KEYS = ("vocab_size", "min_frequency", "max_docs")


def resolve(config: dict) -> dict:
    from olmoflow.config import ConfigError

    bad = set(config) - set(KEYS)
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} (allowed: {', '.join(KEYS)})")
    if not isinstance(config.get("vocab_size"), int):
        raise ConfigError("key 'vocab_size': required (an integer)")
    return {"vocab_size": config["vocab_size"], "min_frequency": int(config.get("min_frequency", 2)),
            "max_docs": config.get("max_docs")}


@register_stage("tokenizer", description="train a BPE tokenizer (olmoflow.tokenizer)", resolve_config=resolve)
def run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.tokenizer import Tok, train_tokenizer

    docs = need(inputs, "docs", ctx.stage, "documents to train on")
    train_tokenizer([docs], out_dir, vocab_size=config["vocab_size"], min_frequency=config["min_frequency"],
                    max_docs=config["max_docs"], quiet=ctx.quiet, seed=ctx.seed)
    return {"vocab_size": Tok.from_dir(out_dir).vocab_size}
