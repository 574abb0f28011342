"""``olmoflow eval``: evaluate one model, or every checkpoint of a run.

    olmoflow eval --model PATH --tasks arc_easy,hellaswag:mc,gsm8k [--limit N] [--batch-size B] [--out FILE]
    olmoflow eval --checkpoints RUN_DIR --tasks arith_rc,ppl:heldout.jsonl [--out FILE]
    olmoflow eval --config eval.yaml [key=value ...]      # any EvalCommandConfig field, e.g. shots=5
    olmoflow eval --list-tasks

Flags and the YAML file fill one typed config (:class:`EvalCommandConfig`: the shared
``EvalOptions`` plus what to evaluate and where to write); ``key=value`` overrides come last.
"""

from __future__ import annotations

import argparse

from olmoflow.config import config_from_args
from olmoflow.errors import OlmoflowError
from olmoflow.eval.options import EvalOptions

__all__ = ["EvalCommandConfig", "main"]


class EvalCommandConfig(EvalOptions):
    """``olmoflow eval``: the shared eval options plus the model (or run) and the output file."""

    #: model directory (native olmoflow checkpoint or HF export)
    model: str | None = None
    #: a run directory: evaluate every RUN_DIR/checkpoints/step-N
    checkpoints: str | None = None
    #: write JSON results here (sweep default: RUN_DIR/eval/sweep.json)
    out: str | None = None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmoflow eval", description="evaluate one model, or every checkpoint of a run")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="model directory (native olmoflow checkpoint, training run artifact or HF "
                     "export) or an artifact id (unique prefix of >= 4 characters)")
    src.add_argument("--checkpoints", metavar="RUN_DIR", help="evaluate every RUN_DIR/checkpoints/step-N")
    src.add_argument("--list-tasks", action="store_true", help="print the registered task names")
    p.add_argument("--config", help="YAML with any of the options below (flags and key=value overrides win)")
    p.add_argument("--tasks", help="comma-separated task specs (names, FORMAT:PATH.jsonl)")
    p.add_argument("--limit", type=int, help="evaluate only the first N items of each task; for subject-grouped "
                   "tasks (MMLU, MATH) the first N of each subject (default: all)")
    p.add_argument("--batch-size", type=int, help="default 8")
    p.add_argument("--shots", type=int, help="few-shot examples for tasks whose spec gives none (NAME:Nshot)")
    p.add_argument("--out", help="write JSON results here")
    p.add_argument("--tokenizer", help="tokenizer dir (default: beside the model, or through its artifact's lineage)")
    p.add_argument("--seed", type=int, help="sampling seed for generative tasks (default 0)")
    p.add_argument("--max-length", type=int, help="context length (default: the model's)")
    p.add_argument("--device", help="torch device (cpu, cuda, cuda:1, ...; default cpu)")
    p.add_argument("--share-prefix", action="store_true", default=None,
                   help="score each context once for all its answers (faster; not bit-identical across batch sizes)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or table")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the config (e.g. shots=5 ppl_data=[a.jsonl])")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_intermixed_args(argv)
    if args.list_tasks:
        from olmoflow.eval.tasks import list_tasks

        print("\n".join(list_tasks()))
        return 0
    cfg = config_from_args(EvalCommandConfig, args, args.overrides)
    if not cfg.model and not cfg.checkpoints:
        raise OlmoflowError("give --model PATH or --checkpoints RUN_DIR (or --list-tasks)")
    if cfg.model and cfg.checkpoints:
        raise OlmoflowError("give one of --model and --checkpoints, not both")
    if not cfg.task_specs():
        raise OlmoflowError("--tasks is required (e.g. --tasks arc_easy,gsm8k); see --list-tasks")
    if cfg.checkpoints:
        from pathlib import Path

        from olmoflow.artifacts import find_artifact
        from olmoflow.eval.sweep import sweep_checkpoints

        run_dir = cfg.checkpoints if Path(cfg.checkpoints).exists() else find_artifact(cfg.checkpoints)
        sweep_checkpoints(run_dir, cfg, out=cfg.out, quiet=args.quiet)
        return 0
    from olmoflow.artifacts import resolve_model
    from olmoflow.eval.evaluator import evaluate

    evaluate(resolve_model(cfg.model), cfg, out=cfg.out, quiet=args.quiet)
    if cfg.out and not args.quiet:
        print(f"wrote {cfg.out}")
    return 0
