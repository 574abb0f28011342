"""Stage ``pairs``: delta-learning preference pairs (``olmoflow.posttrain.pairs``).

Inputs: ``strong`` and ``weak`` (models: e.g. the SFT run and the base model or an early SFT
checkpoint), ``tokenizer``, ``prompts`` (a chat_data artifact — its ``sft.jsonl`` conversations,
prompt = everything before the last assistant turn — or a JSONL of prompt records). Writes
``pairs.jsonl`` and ``stats.json`` (how many pairs each filter removed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import ReleaseFiles, StageConfig, StageContext, refuse_runner_keys, register_stage
from olmoflow.flow.stages._common import model_dir, need
from olmoflow.flow.stages._posttrain import find_file
from olmoflow.posttrain.pairs import PairsConfig

#: PairsConfig keys the runner fills from inputs and the flow
RUNNER_KEYS = ("prompts", "strong", "weak", "tokenizer", "out", "seed")


class PairsStageConfig(PairsConfig, StageConfig):
    """``PairsConfig`` without what the runner fills (models, tokenizer and prompts are inputs)."""

    #: which weights of the ``weak`` input: its final model, or (a training run's) earliest
    #: intermediate checkpoint — e.g. the SFT run itself early on, "a much weaker model"
    weak_checkpoint: Literal["final", "earliest"] = "final"

    @model_validator(mode="before")
    @classmethod
    def _no_runner_keys(cls, data: Any) -> Any:
        return refuse_runner_keys(data, RUNNER_KEYS)

    def resolved(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in RUNNER_KEYS}


@register_stage("pairs", description="delta-learning preference pairs (strong vs weak model)",
                config=PairsStageConfig, libraries=("torch", "numpy", "tokenizers"),
                release=(ReleaseFiles("stats.json", "data/{stage}/"),))
def run(config: PairsStageConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.posttrain.pairs import build_pairs

    prompts = find_file(need(inputs, "prompts", ctx.stage, "prompt records"), ("prompts.jsonl", "sft.jsonl"),
                        ctx.stage, "prompts")
    weak = need(inputs, "weak", ctx.stage, "the weaker model")
    if config.weak_checkpoint == "earliest":
        steps = sorted(Path(weak).glob("checkpoints/step-*"), key=lambda d: int(d.name.removeprefix("step-")))
        if not steps:
            raise OlmoflowError(f"stage {ctx.stage!r}: weak_checkpoint 'earliest' but {weak} has no checkpoints/step-N")
        weak = steps[0]
    settings = {k: v for k, v in config.resolved().items() if k != "weak_checkpoint"}
    cfg = PairsConfig(**settings, prompts=[str(prompts)], out=str(out_dir), seed=ctx.seed,
                      strong=str(model_dir(need(inputs, "strong", ctx.stage, "the stronger model"))),
                      weak=str(model_dir(weak)),
                      tokenizer=str(need(inputs, "tokenizer", ctx.stage, "a tokenizer dir")))
    return build_pairs(cfg, quiet=ctx.quiet)
