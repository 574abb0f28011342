"""Stage ``pairs``: delta-learning preference pairs (``olmoflow.posttrain.pairs``).

Inputs: ``strong`` and ``weak`` (models: e.g. the SFT run and the base model or an early SFT
checkpoint), ``tokenizer``, ``prompts`` (a chat_data artifact — its ``sft.jsonl`` conversations,
prompt = everything before the last assistant turn — or a JSONL of prompt records). Writes
``pairs.jsonl`` and ``stats.json`` (how many pairs each filter removed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from olmoflow.flow.registry import ReleaseFiles, StageConfig, StageContext, register_stage
from olmoflow.flow.stages._common import model_dir, need
from olmoflow.flow.stages._posttrain import find_file


class PairsStageConfig(StageConfig):
    strong_samples: int = Field(4, ge=1)
    weak_samples: int = Field(1, ge=1)
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(128, ge=1)
    max_len_delta: int = Field(100, ge=0)
    limit: int | None = Field(None, ge=1)
    require_better: bool = True
    batch_size: int = Field(32, ge=1)


@register_stage("pairs", description="delta-learning preference pairs (strong vs weak model)",
                config=PairsStageConfig, libraries=("torch", "numpy", "tokenizers"),
                release=(ReleaseFiles("stats.json", "data/{stage}/"),))
def run(config: PairsStageConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.posttrain.pairs import PairsConfig, build_pairs

    prompts = find_file(need(inputs, "prompts", ctx.stage, "prompt records"), ("prompts.jsonl", "sft.jsonl"),
                        ctx.stage, "prompts")
    cfg = PairsConfig(**config.model_dump(), prompts=[str(prompts)], out=str(out_dir), seed=ctx.seed,
                      strong=str(model_dir(need(inputs, "strong", ctx.stage, "the stronger model"))),
                      weak=str(model_dir(need(inputs, "weak", ctx.stage, "the weaker model"))),
                      tokenizer=str(need(inputs, "tokenizer", ctx.stage, "a tokenizer dir")))
    return build_pairs(cfg, quiet=ctx.quiet)
