"""Stage ``rlvr``: RLVR with GRPO (``olmoflow.posttrain.grpo``); ``reward: random`` is the spurious-reward
control and ``prompt_format: plain`` from a base model is RL-Zero.

Inputs: ``model``, ``tokenizer``, ``data`` (prompt records: a chat_data artifact — its ``sft.jsonl``
prompts — or a JSONL file), optional ``heldout`` (records scored greedily every ``eval_every`` steps;
a chat_data artifact gives its ``heldout/arith.jsonl``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from olmoflow.flow.registry import ReleaseFiles, StageContext, register_stage
from olmoflow.flow.stages._common import need
from olmoflow.flow.stages._posttrain import RL, find_file, finish, resume_point, runner_config, train_inputs


@functools.cache
def config_class():
    from olmoflow.posttrain.grpo import GRPOConfig

    return runner_config(GRPOConfig, ("paths", "heldout_paths"))


@register_stage("rlvr", description="GRPO with verifiable (or random) rewards", config=config_class,
                report=(RL,), fork_input="model", resume_point=resume_point,
                release=(ReleaseFiles("final", "model", mode="replace"),
                         ReleaseFiles("metrics.jsonl", "logs/{stage}.metrics.jsonl")),
                volatile_files=("log.jsonl", "checkpoints/*/rng.json", "checkpoints/*/manifest.json"),
                volatile_keys={"metrics.jsonl": ("tokens_per_s",)}, libraries=("torch", "numpy", "tokenizers"))
def run(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.posttrain.grpo import GRPOConfig, rl

    data = {"paths": [str(find_file(need(inputs, "data", ctx.stage, "prompts"), ("prompts.jsonl", "sft.jsonl"),
                                    ctx.stage, "prompt records"))]}
    if inputs.get("heldout") is not None:
        data["heldout_paths"] = [str(find_file(inputs["heldout"], ("heldout/arith.jsonl",), ctx.stage,
                                               "held-out prompts"))]
    cfg = train_inputs(config, inputs, out_dir, ctx, GRPOConfig, data)
    return finish(rl(cfg, quiet=ctx.quiet, resume=ctx.resume_from is not None))
