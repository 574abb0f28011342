"""``olmoflow data ...``, ``olmoflow tokenize`` and ``olmoflow mix``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from olmoflow.errors import OlmoflowError


def _curate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="olmoflow data curate", description="curate documents with a recipe")
    p.add_argument("--input", "-i", nargs="+", required=True, help="files or directories")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--recipe", help="recipe YAML (default: packaged Dolma-3-style recipe)")
    p.add_argument("--decontaminate", nargs="*", default=[], metavar="EVAL.jsonl")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--executor", choices=["local", "ray"], default="local")
    p.add_argument("--keep-work", action="store_true", help="keep intermediate shards")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("overrides", nargs="*", help="recipe overrides, e.g. langid.min_score=0.5")
    args, extra = p.parse_known_args(argv)
    # key=value items swallowed by --input/--decontaminate are overrides, not paths
    moved = [a for a in args.input + args.decontaminate if "=" in a and not Path(a).exists()]
    args.input = [a for a in args.input if a not in moved]
    args.decontaminate = [a for a in args.decontaminate if a not in moved]
    overrides = moved + list(args.overrides) + [a for a in extra if "=" in a and not a.startswith("-")]
    bad = [a for a in extra if a not in overrides]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    from olmoflow.data.curate import curate

    s = curate(args.input, args.output, recipe=args.recipe, decontaminate=args.decontaminate,
               workers=args.workers, executor=args.executor, overrides=overrides, quiet=args.quiet,
               keep_work=args.keep_work)
    a = s["accounting"]
    print(f"curated {a['docs_in']} docs: kept {a['kept']}, removed {a['removed']}, quarantined "
          f"{a['quarantined']} ({'balanced' if a['balanced'] else 'NOT balanced'}); "
          f"report: {Path(args.output) / 'report.md'}")
    return 0 if a["balanced"] else 1


def _demo_corpus(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="olmoflow data demo-corpus", description="build the offline demo corpus")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-docs-per-source", type=int, default=None)
    args = p.parse_args(argv)
    from olmoflow.data.demo import build_demo_corpus

    print(json.dumps(build_demo_corpus(args.output, args.seed, args.max_docs_per_source), indent=1))
    return 0


def _train_quality(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="olmoflow data train-quality", description="train a fastText quality classifier")
    p.add_argument("--positive", nargs="+", required=True)
    p.add_argument("--negative", nargs="+", required=True)
    p.add_argument("--output", "-o", required=True, help="model .bin path")
    p.add_argument("--epoch", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from olmoflow.data.steps.quality import train_quality_classifier

    print(train_quality_classifier(args.positive, args.negative, args.output, epoch=args.epoch, seed=args.seed))
    return 0


SUBCOMMANDS = {"curate": _curate, "demo-corpus": _demo_corpus, "train-quality": _train_quality}


def main(argv: list[str]) -> int:
    """``olmoflow data <curate|demo-corpus|train-quality> ...``"""
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: olmoflow data {curate,demo-corpus,train-quality} ...\n\n"
              "  curate         run a curation recipe (default: Dolma-3-style) over documents\n"
              "  demo-corpus    write the offline demo corpus (code, prose, math + math_eval)\n"
              "  train-quality  train a fastText quality classifier from positive/negative JSONL")
        return 0
    if argv[0] not in SUBCOMMANDS:
        raise OlmoflowError(f"unknown data command {argv[0]!r} (choose from {', '.join(SUBCOMMANDS)})")
    return SUBCOMMANDS[argv[0]](argv[1:])


def tokenize_main(argv: list[str]) -> int:
    """``olmoflow tokenize --input DIR_OR_FILES --tokenizer TOKDIR --output DIR [--workers N]``"""
    p = argparse.ArgumentParser(prog="olmoflow tokenize", description="tokenize Dolma JSONL into token shards")
    p.add_argument("--input", "-i", nargs="+", required=True)
    p.add_argument("--tokenizer", "-t", required=True, help="directory with tokenizer.json")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", "-q", action="store_true")
    args = p.parse_args(argv)
    from olmoflow.data.tokenize import tokenize

    meta = tokenize(args.input, args.tokenizer, args.output, workers=args.workers, quiet=args.quiet)
    print(f"tokenized {meta['n_docs']} docs, {meta['n_tokens']} tokens -> {args.output}")
    if meta["quarantined"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in meta["quarantined_by_reason"].items())
        print(f"skipped {meta['quarantined']} bad input records ({reasons}); see "
              f"{Path(args.output) / 'quarantine.jsonl'}", file=sys.stderr)
    return 0


def mix_main(argv: list[str]) -> int:
    """``olmoflow mix --input source=DIR ... --output DIR (--ratios a=0.3,b=0.7 | --tokens ...) --total-tokens N``"""
    p = argparse.ArgumentParser(prog="olmoflow mix", description="mix token datasets to target ratios")
    p.add_argument("--input", "-i", nargs="+", required=True, help="source=DIR (token dataset)")
    p.add_argument("--output", "-o", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ratios", help="e.g. code=0.3,prose=0.7")
    g.add_argument("--tokens", help="e.g. code=100000,prose=200000")
    p.add_argument("--total-tokens", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", "-q", action="store_true")
    args = p.parse_args(argv)
    from olmoflow.data.mix import mix, parse_mapping

    inputs = parse_mapping(args.input, kind=str)
    ratios = parse_mapping(args.ratios) if args.ratios else None
    tokens = parse_mapping(args.tokens, kind=int) if args.tokens else None
    info = mix(inputs, args.output, ratios=ratios, tokens=tokens, total_tokens=args.total_tokens,
               seed=args.seed, quiet=args.quiet)
    print(f"mixed {info['total_tokens']} tokens -> {args.output} ({info['achieved_ratios']})")
    return 0
