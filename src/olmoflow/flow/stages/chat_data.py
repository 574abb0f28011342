"""Stage ``chat_data``: offline chat data for post-training (``olmoflow.posttrain.synth``).

Writes ``sft.jsonl`` (arithmetic with <think> traces, stdlib docstring questions, calculator tool
use, instruction following), ``heldout/<kind>.jsonl`` (evaluation prompts with gold fields, never in
training, decontaminated against it) and ``decontamination.json``. Optional input ``corpus`` (the
demo corpus) supplies the functions the docstring questions are about. Seeded by the flow seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from olmoflow.flow.registry import ReleaseFiles, StageConfig, StageContext, register_stage


class ChatDataConfig(StageConfig):
    n_train: int = Field(2000, ge=1)
    n_heldout: int = Field(100, ge=1)
    #: arithmetic operands of at most this many digits (1..3)
    arith_digits: int = Field(3, ge=1, le=3)
    #: how problems are asked: a subset of digits / words / story
    arith_styles: list[Literal["digits", "words", "story"]] = Field(default_factory=lambda: ["digits", "words", "story"],
                                                                   min_length=1)
    #: the <think> trace: "place" (place values) or "columns" (column by column, with carries)
    arith_trace: Literal["place", "columns"] = "place"


@register_stage("chat_data", description="offline chat data: SFT conversations + held-out prompts",
                config=ChatDataConfig, libraries=(), release=(ReleaseFiles("heldout", "eval/chat/"),))
def run(config: ChatDataConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.posttrain.synth import make_chat_data

    corpus = inputs.get("corpus")
    info = make_chat_data(out_dir, seed=ctx.seed, n_train=config.n_train, n_heldout=config.n_heldout,
                          corpus_dir=corpus, arith_digits=config.arith_digits, arith_styles=config.arith_styles,
                          arith_trace=config.arith_trace)
    return {"train": info["train"], "heldout": info["heldout"],
            "decontamination_removed": info["decontamination"].get("removed")}
