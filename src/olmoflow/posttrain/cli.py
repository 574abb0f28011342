"""``olmoflow sft | dpo | rl | pairs --config FILE [key=value ...]``.

``sft``, ``dpo`` and ``rl`` run on the one training loop, so they take the same ``--resume`` and run under
``torchrun --nproc_per_node=N`` (FSDP2) like ``olmoflow pretrain``.
"""

from __future__ import annotations

import argparse
import json

from olmoflow.config import load_config
from olmoflow.train import distributed as D


def _args(prog: str, what: str, train: bool = True, argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog=f"olmoflow {prog}", description=what)
    ap.add_argument("--config", required=True, help="config YAML (docs/posttrain.md)")
    ap.add_argument("overrides", nargs="*", help="key.path=value overrides")
    if train:
        ap.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    return ap.parse_args(argv)


def _train(prog: str, what: str, cfg_cls, run, argv: list[str]) -> int:
    args = _args(prog, what, argv=argv)
    cfg = load_config(cfg_cls, args.config, args.overrides)
    try:
        out = run(cfg, quiet=args.quiet, resume=args.resume)
        if D.rank() == 0:
            print(json.dumps(out) if args.json else
                  f"done: step {out['step']}, loss {out.get('loss', float('nan')):.4f}, checkpoint {out['checkpoint']}")
    finally:
        D.shutdown()
    return 0


def sft_main(argv: list[str]) -> int:
    from olmoflow.posttrain.sft import SFTConfig, sft

    return _train("sft", "supervised fine-tuning on chat data", SFTConfig, sft, argv)


def dpo_main(argv: list[str]) -> int:
    from olmoflow.posttrain.dpo import DPOConfig, dpo

    return _train("dpo", "direct preference optimisation (sigmoid / dpo_norm)", DPOConfig, dpo, argv)


def rl_main(argv: list[str]) -> int:
    from olmoflow.posttrain.grpo import GRPOConfig, rl

    return _train("rl", "RLVR with GRPO (verifiable or random rewards; RL-Zero with prompt_format=plain)",
                  GRPOConfig, rl, argv)


def pairs_main(argv: list[str]) -> int:
    from olmoflow.posttrain.pairs import PairsConfig, build_pairs

    args = _args("pairs", "build delta-learning preference pairs (strong vs weak model)", train=False, argv=argv)
    cfg = load_config(PairsConfig, args.config, args.overrides)
    stats = build_pairs(cfg, quiet=args.quiet)
    print(json.dumps(stats) if args.json else
          f"pairs: kept {stats['kept']} of {stats['prompts']} prompts (not better {stats['not_better']}, "
          f"length delta {stats['length_delta']}, too long {stats['too_long']}, empty {stats['empty_response']}) "
          f"-> {cfg.out}/pairs.jsonl")
    return 0
