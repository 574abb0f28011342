"""Stage ``long_docs``: long documents for context extension (``olmoflow.data.long_context``).

Inputs: ``docs`` (documents: a demo corpus ``docs/`` dir, a curate output, JSONL files), optional
``tokenizer`` (synthetic documents are then sized in its tokens, else in words). Related documents
(ids sharing a prefix: one package's modules, one topic's pages) are joined into long documents,
the most and least gzip-compressible ``drop_low`` / ``drop_high`` of them are dropped, and
``n_synthetic`` documents with retrieval targets (pass keys, keyed magic numbers, variable chains,
word counts: the RULER task generators with training seeds) are added.
Output: ``long.jsonl`` (source ``long``), ``synthetic.jsonl`` (source ``synthetic``),
``dropped.jsonl`` (with the reason) and ``stats.json``; tokenize it with a ``tokenize`` stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from olmoflow.flow.registry import ReleaseFiles, StageConfig, StageContext, register_stage
from olmoflow.flow.stages._common import files_in, need


class LongDocsConfig(StageConfig):
    min_chars: int = Field(2000, ge=1)
    max_chars: int = Field(20000, ge=1)
    drop_low: float = Field(0.2, ge=0, lt=1)
    drop_high: float = Field(0.2, ge=0, lt=1)
    n_synthetic: int = Field(0, ge=0)
    #: lengths of the synthetic documents (tokens of the tokenizer input, else words)
    synthetic_lengths: list[int] = Field(default_factory=lambda: [512])
    #: RULER task generators to draw from (None: all four)
    synthetic_tasks: list[str] | None = None


@register_stage("long_docs", description="long documents: related docs joined, gzip-compressibility filter, "
                "synthetic retrieval documents", config=LongDocsConfig, libraries=("tokenizers",),
                release=(ReleaseFiles("stats.json", "data/{stage}/"),))
def run(config: LongDocsConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.data.documents import iter_docs
    from olmoflow.data.long_context import build_long_documents
    from olmoflow.eval.ruler import _token_counter

    src = need(inputs, "docs", ctx.stage, "documents to join into long ones")
    docs = [d for f in files_in(src) for d in iter_docs(f)]
    count = _token_counter(str(inputs["tokenizer"])) if inputs.get("tokenizer") is not None else None
    return build_long_documents(docs, out_dir, min_chars=config.min_chars, max_chars=config.max_chars,
                                n_synthetic=config.n_synthetic, synthetic_lengths=config.synthetic_lengths,
                                synthetic_tasks=config.synthetic_tasks, drop_low=config.drop_low,
                                drop_high=config.drop_high, seed=ctx.seed, count=count)
