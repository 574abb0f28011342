"""Stage ``tokenizer``: train a byte-level BPE tokenizer (olmoflow.tokenizer.train_tokenizer).

Config: ``vocab_size`` (required), ``min_frequency``, ``max_docs``, ``split_digits``. Input: ``docs`` (documents dir
or file, e.g. ``${stages.curate}/documents``). Output: an AutoTokenizer-loadable directory, which
is the release bundle's ``tokenizer/``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from olmoflow.flow.registry import ReleaseFiles, StageConfig, StageContext, register_stage
from olmoflow.flow.stages._common import need


class TokenizerConfig(StageConfig):
    vocab_size: int = Field(gt=0)
    min_frequency: int = Field(2, ge=1)
    #: train on at most this many documents (None: all)
    max_docs: int | None = Field(None, ge=1)
    #: every digit its own token (small models need it for arithmetic)
    split_digits: bool = False


@register_stage("tokenizer", description="train a BPE tokenizer (olmoflow.tokenizer)", config=TokenizerConfig,
                release=(ReleaseFiles(".", "tokenizer", mode="replace"),), libraries=("tokenizers",))
def run(config: TokenizerConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.tokenizer import Tok, train_tokenizer

    docs = need(inputs, "docs", ctx.stage, "documents to train on")
    train_tokenizer([docs], out_dir, vocab_size=config.vocab_size, min_frequency=config.min_frequency,
                    max_docs=config.max_docs, quiet=ctx.quiet, seed=ctx.seed, split_digits=config.split_digits)
    return {"vocab_size": Tok.from_dir(out_dir).vocab_size}
