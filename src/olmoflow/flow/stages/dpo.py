"""Stage ``dpo``: direct preference optimisation (``olmoflow.posttrain.dpo``; dpo_norm, beta 5 by default).

Inputs: ``model`` (usually the SFT run), ``tokenizer``, ``data`` (a pairs artifact — its
``pairs.jsonl`` — or a preference JSONL), optional ``reference`` (default: the starting model).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from olmoflow.flow.registry import ReleaseFiles, StageContext, register_stage
from olmoflow.flow.stages._common import need
from olmoflow.flow.stages._posttrain import DPO, find_file, finish, resume_point, runner_config, train_inputs


@functools.cache
def config_class():
    from olmoflow.posttrain.dpo import DPOConfig

    return runner_config(DPOConfig, ("paths", "val_paths"))


@register_stage("dpo", description="DPO (sigmoid / length-normalised) on preference pairs", config=config_class,
                report=(DPO,), fork_input="model", resume_point=resume_point,
                release=(ReleaseFiles("final", "model", mode="replace"),
                         ReleaseFiles("metrics.jsonl", "logs/{stage}.metrics.jsonl")),
                volatile_files=("log.jsonl", "checkpoints/*/rng.json", "checkpoints/*/manifest.json"),
                volatile_keys={"metrics.jsonl": ("tokens_per_s",)}, libraries=("torch", "numpy", "tokenizers"))
def run(config: Any, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.posttrain.dpo import DPOConfig, dpo

    pairs = find_file(need(inputs, "data", ctx.stage, "preference pairs"), ("pairs.jsonl",), ctx.stage, "pairs")
    cfg = train_inputs(config, inputs, out_dir, ctx, DPOConfig, {"paths": [str(pairs)]})
    return finish(dpo(cfg, quiet=ctx.quiet, resume=ctx.resume_from is not None))
