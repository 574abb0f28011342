"""Stage ``tokenize``: documents -> token dataset (olmoflow.data.tokenize.tokenize; docs/formats.md).

Config: ``workers``, ``batch_size`` (speed only). Inputs: ``docs`` (documents, or a curate output
dir) and ``tokenizer``. Output: ``meta.json`` + per-source ``.bin`` / ``.idx.npy`` shards.
"""

from __future__ import annotations

from pathlib import Path

from olmoflow.flow.registry import StageContext, register_stage
from olmoflow.flow.stages._common import need

KEYS = ("workers", "batch_size")


def resolve(config: dict) -> dict:
    from olmoflow.config import ConfigError

    bad = set(config) - set(KEYS)
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} (allowed: {', '.join(KEYS)})")
    return {"workers": int(config.get("workers", 2)), "batch_size": int(config.get("batch_size", 512))}


@register_stage("tokenize", description="tokenize documents into memmap shards (olmoflow.data)",
                resolve_config=resolve)
def run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.data.tokenize import tokenize

    docs = need(inputs, "docs", ctx.stage, "documents or a curate output dir")
    tok = need(inputs, "tokenizer", ctx.stage, "a tokenizer dir")
    meta = tokenize(docs, tok, out_dir, workers=config["workers"], quiet=ctx.quiet,
                    batch_size=config["batch_size"])
    return {"n_tokens": meta["n_tokens"], "n_docs": meta["n_docs"], "sources": meta.get("sources", {})}
