"""``olmoflow eval``: evaluate one model, or every checkpoint of a run.

    olmoflow eval --model PATH --tasks arc_easy,hellaswag:mc,gsm8k [--limit N] [--batch-size B] [--out FILE]
    olmoflow eval --checkpoints RUN_DIR --tasks arith_rc,ppl:heldout.jsonl [--out FILE]
    olmoflow eval --list-tasks
"""

from __future__ import annotations

import argparse

from olmoflow.errors import OlmoflowError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmoflow eval", description="evaluate one model, or every checkpoint of a run")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="model directory (native olmoflow checkpoint or HF export)")
    src.add_argument("--checkpoints", metavar="RUN_DIR", help="evaluate every RUN_DIR/checkpoints/step-N")
    src.add_argument("--list-tasks", action="store_true", help="print the registered task names")
    p.add_argument("--tasks", help="comma-separated task specs (names, FORMAT:PATH.jsonl)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items of each task")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", help="write JSON results here")
    p.add_argument("--tokenizer", help="tokenizer dir (default: next to the model or in a parent dir)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for generative tasks")
    p.add_argument("--max-length", type=int, default=None, help="context length (default: the model's)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--share-prefix", action="store_true",
                   help="score each context once for all its answers (faster; not bit-identical across batch sizes)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or table")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.list_tasks:
        from olmoflow.eval.tasks import list_tasks

        print("\n".join(list_tasks()))
        return 0
    if not args.model and not args.checkpoints:
        raise OlmoflowError("give --model PATH or --checkpoints RUN_DIR (or --list-tasks)")
    if not args.tasks:
        raise OlmoflowError("--tasks is required (e.g. --tasks arc_easy,gsm8k); see --list-tasks")
    tasks = [t for t in args.tasks.split(",") if t.strip()]
    if args.checkpoints:
        from olmoflow.eval.sweep import sweep_checkpoints

        sweep_checkpoints(args.checkpoints, tasks, limit=args.limit, batch_size=args.batch_size, out=args.out,
                          quiet=args.quiet, seed=args.seed, tokenizer=args.tokenizer, share_prefix=args.share_prefix,
                          max_length=args.max_length, device=args.device)
        return 0
    from olmoflow.eval.evaluator import evaluate

    evaluate(args.model, tasks, limit=args.limit, batch_size=args.batch_size, out=args.out, quiet=args.quiet,
             seed=args.seed, tokenizer=args.tokenizer, max_length=args.max_length, device=args.device,
             share_prefix=args.share_prefix)
    if args.out and not args.quiet:
        print(f"wrote {args.out}")
    return 0
