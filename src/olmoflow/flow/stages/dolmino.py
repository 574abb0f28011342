"""Stage ``dolmino``: a Dolmino-like midtraining mix from what the demo flow has
(``olmoflow.data.dolmino``): math with worked solutions (held-out eval problems excluded), chat
conversations rendered with the chat template, short retrieval documents.

Inputs: optional ``exclude`` (the held-out math eval file: its problems never appear), ``chat``
(a chat_data artifact or its ``sft.jsonl``), ``tokenizer`` (retrieval documents sized in its
tokens). Output: one Dolma JSONL file per source; tokenize it and mix it with ``midtrain``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from olmoflow.flow.registry import StageConfig, StageContext, register_stage


class DolminoConfig(StageConfig):
    n_math: int = Field(3000, ge=1)
    n_chat: int = Field(0, ge=0)
    n_retrieval: int = Field(0, ge=0)
    #: length of the retrieval documents (tokens of the tokenizer input, else words): the pretraining context
    retrieval_length: int = Field(128, ge=16)
    retrieval_tasks: list[str] | None = None
    #: how worked solutions do sums and differences: ``direct`` (one step) or ``columns`` (column by column
    #: from the ones, with carries: what a tiny model can learn to compute)
    trace: Literal["direct", "columns"] = "direct"


@register_stage("dolmino", description="Dolmino-like midtraining documents: worked math, chat, retrieval",
                config=DolminoConfig, libraries=("tokenizers",))
def run(config: DolminoConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.data.dolmino import build_dolmino
    from olmoflow.eval.ruler import _token_counter

    chat = inputs.get("chat")
    if chat is not None and Path(chat).is_dir():
        chat = Path(chat) / "sft.jsonl"
    count = _token_counter(str(inputs["tokenizer"])) if inputs.get("tokenizer") is not None else None
    return build_dolmino(out_dir, n_math=config.n_math, exclude_eval=inputs.get("exclude"), chat=chat,
                         n_chat=config.n_chat, n_retrieval=config.n_retrieval,
                         retrieval_length=config.retrieval_length, retrieval_tasks=config.retrieval_tasks,
                         seed=ctx.seed, count=count, trace=config.trace)
