"""``olmoflow pretrain --config FILE [key=value ...] [--resume] [--dry-run] [--quiet]``.

The same command runs under ``torchrun --nproc_per_node=N`` (FSDP2, one process per device).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from olmoflow.config import load_config
from olmoflow.train import distributed as D
from olmoflow.train.config import TrainConfig


def _fmt_plan(p: dict) -> str:
    mem = p["memory_per_gpu_bf16"]
    lines = [
        f"model            {p['model']}: {p['parameters']:,} parameters "
        f"({p['non_embedding_parameters']:,} non-embedding)",
        f"batch            {p['global_batch_tokens']:,} tokens/step = {p['global_batch_seqs']} seqs × {p['seq_len']}"
        f" = micro {p['micro_batch']} × accum {p['accum_steps']} × {p['world_size']} processes",
        f"run              {p['steps']:,} steps, {p['total_tokens']:,} tokens, lr {p['lr']:g} "
        f"({p['schedule']['name']}, warmup {p['schedule']['warmup_steps']})",
        f"compute          {p['flops_per_token'] * p['total_tokens']:.3g} FLOPs",
        f"memory/GPU (est) {mem['total_gib']:.2f} GiB = states {mem['params_grads_optimizer_gib']:.2f}"
        f" + activations {mem['activations_gib']:.2f} + logits {mem['logits_gib']:.2f} (bf16)",
    ]
    if "data_tokens" in p:
        lines.append(f"data             {p['data_tokens']:,} tokens ({p['epochs']:.2f} epochs)")
    return "\n".join(lines)


def _dry_run(cfg: TrainConfig, args) -> int:
    """Print the plan; data problems are reported after it (exit 1) rather than hiding it."""
    from olmoflow.errors import OlmoflowError
    from olmoflow.train.trainer import plan

    world = args.nproc or int(os.environ.get("WORLD_SIZE", 1))
    p = plan(cfg, world_size=world, check_data=False)
    data_error = None
    try:
        p.update(plan(cfg, world_size=world, check_data=True))
    except OlmoflowError as e:
        data_error = str(e)
        p["data_error"] = data_error
    print(json.dumps(p, indent=2) if args.json else _fmt_plan(p))
    if data_error:
        print(f"data             NOT READY: {data_error}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="olmoflow pretrain", description="pretrain an OLMo model")
    ap.add_argument("--config", required=True, help="TrainConfig YAML")
    ap.add_argument("overrides", nargs="*", help="key.path=value overrides")
    ap.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint")
    ap.add_argument("--dry-run", action="store_true", help="print the resolved plan and exit")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--json", action="store_true", help="print the plan / final metrics as JSON")
    ap.add_argument("--nproc", type=int, default=None,
                    help="--dry-run: plan for this many processes (default: $WORLD_SIZE or 1)")
    args = ap.parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if args.dry_run:
        return _dry_run(cfg, args)
    from olmoflow.train.trainer import pretrain

    try:
        out = pretrain(cfg, quiet=args.quiet, resume=args.resume)
        if D.rank() == 0:
            print(json.dumps(out) if args.json else
                  f"done: step {out['step']}, loss {out.get('loss', float('nan')):.4f}, "
                  f"tokens {out['tokens']:,}, checkpoint {out['checkpoint']}")
    finally:
        D.shutdown()
    return 0
