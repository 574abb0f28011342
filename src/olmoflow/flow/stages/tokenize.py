"""Stage ``tokenize``: documents -> token dataset (olmoflow.data.tokenize.tokenize; docs/formats.md).

Config: ``workers``, ``batch_size`` (speed only). Inputs: ``docs`` (documents, or a curate output
dir) and ``tokenizer``. Output: ``meta.json`` + per-source ``.bin`` / ``.idx.npy`` shards. Report:
a token-dataset table (documents, tokens, tokens per source) under "Data funnel", shared with ``mix``.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from olmoflow.flow.registry import (
    ReleaseFiles,
    ReportSection,
    StageArtifact,
    StageConfig,
    StageContext,
    register_stage,
)
from olmoflow.flow.report import fmt
from olmoflow.flow.stages._common import need


class TokenizeConfig(StageConfig):
    workers: int = Field(2, ge=1)
    batch_size: int = Field(512, ge=1)


def token_datasets_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    """One table row per token dataset (tokenize or mix output): documents, tokens, per source."""
    rows = [(a.name, json.loads((a.dir / "meta.json").read_text())) for a in arts if (a.dir / "meta.json").is_file()]
    if not rows:
        return []
    lines = ["Token datasets:", "", "| stage | docs | tokens | tokens per source |", "|---|---|---|---|"]
    for name, meta in rows:
        per = ", ".join(f"{k}: {fmt(v)}" for k, v in (meta.get("sources") or {}).items())
        lines.append(f"| {name} | {fmt(meta.get('n_docs', '-'))} | {fmt(meta.get('n_tokens', '-'))} | {per} |")
    return lines + [""]


TOKEN_DATASETS = ReportSection("Data funnel", token_datasets_section, order=11)
#: the dataset's meta.json (counts per source, shards) and any quarantined records go into data/
DATA_FILES = (ReleaseFiles("meta.json", "data/{stage}/"), ReleaseFiles("quarantine*", "data/{stage}/"))


@register_stage("tokenize", description="tokenize documents into memmap shards (olmoflow.data)",
                config=TokenizeConfig, report=(TOKEN_DATASETS,), release=DATA_FILES, libraries=("numpy", "tokenizers"))
def run(config: TokenizeConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.data.tokenize import tokenize

    docs = need(inputs, "docs", ctx.stage, "documents or a curate output dir")
    tok = need(inputs, "tokenizer", ctx.stage, "a tokenizer dir")
    meta = tokenize(docs, tok, out_dir, workers=config.workers, quiet=ctx.quiet, batch_size=config.batch_size)
    return {"n_tokens": meta["n_tokens"], "n_docs": meta["n_docs"], "sources": meta.get("sources", {})}
