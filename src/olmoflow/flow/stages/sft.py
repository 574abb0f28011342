"""Stage ``sft``: supervised fine-tuning (``olmoflow.posttrain.sft``) on chat data.

Inputs: ``model`` (the base model: a training run artifact or model dir), ``tokenizer``, ``data``
(a chat_data artifact — its ``sft.jsonl`` —, a pairs artifact — the prompts with their chosen answers —
or JSONL/Parquet conversation files), optional ``val``.
The artifact is the run dir (``metrics.jsonl``, ``checkpoints/``, ``final/``); resumable like pretrain.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from olmoflow.flow.registry import ReleaseFiles, StageContext, register_stage
from olmoflow.flow.stages._common import need
from olmoflow.flow.stages._posttrain import SFT, find_file, finish, resume_point, runner_config, train_inputs

#: a chat_data artifact's conversations; a pairs artifact's chosen side (SFT on chosen: DPO's control)
CHAT_FILES = ("sft.jsonl", "sft.jsonl.gz", "sft.parquet", "pairs.jsonl")


@functools.cache
def config_class():
    from olmoflow.posttrain.sft import SFTConfig

    return runner_config(SFTConfig, ("paths", "val_paths"))


@register_stage("sft", description="supervised fine-tuning on packed chat data, loss on assistant tokens",
                config=config_class, report=(SFT,), fork_input="model", resume_point=resume_point,
                release=(ReleaseFiles("final", "model", mode="replace"),
                         ReleaseFiles("metrics.jsonl", "logs/{stage}.metrics.jsonl")),
                volatile_files=("log.jsonl", "checkpoints/*/rng.json", "checkpoints/*/manifest.json"),
                volatile_keys={"metrics.jsonl": ("tokens_per_s",)}, libraries=("torch", "numpy", "tokenizers"))
def run(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.posttrain.sft import SFTConfig, sft

    data = {"paths": [str(find_file(need(inputs, "data", ctx.stage, "chat data"), CHAT_FILES, ctx.stage,
                                    "SFT conversations"))]}
    if inputs.get("val") is not None:
        data["val_paths"] = [str(find_file(inputs["val"], CHAT_FILES, ctx.stage, "validation conversations"))]
    cfg = train_inputs(config, inputs, out_dir, ctx, SFTConfig, data)
    return finish(sft(cfg, quiet=ctx.quiet, resume=ctx.resume_from is not None))
