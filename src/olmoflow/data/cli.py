"""``olmoflow data ...``, ``olmoflow tokenize`` and ``olmoflow mix``.

Each command fills one typed config (the classes below): ``--config FILE`` (YAML with any of its
fields), then the flags given on the command line, then (where the command takes them)
``key=value`` overrides. A wrong key or value fails before any work, naming it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from olmoflow.config import Config, config_from_args
from olmoflow.errors import OlmoflowError

__all__ = ["CurateCommand", "DemoCorpusCommand", "MixCommand", "TokenizeCommand", "TrainQualityCommand", "main",
           "mix_main", "tokenize_main"]


class CurateCommand(Config):
    """``olmoflow data curate``."""

    #: document files or directories
    input: list[str] = Field(min_length=1)
    output: str
    #: recipe YAML (None: the packaged Dolma-3-style recipe)
    recipe: str | None = None
    #: eval item files to decontaminate against
    decontaminate: list[str] = Field(default_factory=list)
    workers: int = Field(2, ge=1)
    executor: Literal["local", "ray"] = "local"
    #: keep intermediate shards
    keep_work: bool = False
    #: recipe overrides (``langid.min_score=0.5``); those on the command line are added after these
    overrides: list[str] = Field(default_factory=list)


class DemoCorpusCommand(Config):
    """``olmoflow data demo-corpus``."""

    output: str
    seed: int = 0
    max_docs_per_source: int | None = Field(None, ge=1)


class TrainQualityCommand(Config):
    """``olmoflow data train-quality``."""

    positive: list[str] = Field(min_length=1)
    negative: list[str] = Field(min_length=1)
    #: model .bin path
    output: str
    epoch: int = Field(10, ge=1)
    seed: int = 0


class TokenizeCommand(Config):
    """``olmoflow tokenize``."""

    input: list[str] = Field(min_length=1)
    #: directory with tokenizer.json
    tokenizer: str
    output: str
    workers: int = Field(2, ge=1)
    batch_size: int = Field(512, ge=1)


class MixCommand(Config):
    """``olmoflow mix``: ``ratios`` (with ``total_tokens``) or ``tokens`` per source."""

    #: source -> token dataset dir
    input: dict[str, str] = Field(min_length=1)
    output: str
    ratios: dict[str, float] | None = None
    tokens: dict[str, int] | None = None
    total_tokens: int | None = Field(None, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _one_of(self) -> MixCommand:
        if (self.ratios is None) == (self.tokens is None):
            raise ValueError("give exactly one of 'ratios' (--ratios) or 'tokens' (--tokens)")
        return self


def _split_overrides(*lists: list[str] | None) -> tuple[list[list[str] | None], list[str]]:
    """``key=value`` items swallowed by ``nargs`` flags (``--input a b key=v``) are overrides, not paths."""
    moved = [a for lst in lists for a in (lst or []) if "=" in a and not Path(a).exists()]
    return [[a for a in lst if a not in moved] if lst is not None else None for lst in lists], moved


def _curate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="olmoflow data curate", description="curate documents with a recipe")
    p.add_argument("--config", help="YAML with any CurateCommand field (flags win over it)")
    p.add_argument("--input", "-i", nargs="+", help="files or directories")
    p.add_argument("--output", "-o")
    p.add_argument("--recipe", help="recipe YAML (default: packaged Dolma-3-style recipe)")
    p.add_argument("--decontaminate", nargs="*", metavar="EVAL.jsonl")
    p.add_argument("--workers", type=int, help="default 2")
    p.add_argument("--executor", choices=["local", "ray"], help="default local")
    p.add_argument("--keep-work", action="store_true", default=None, help="keep intermediate shards")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("overrides", nargs="*", help="recipe overrides, e.g. langid.min_score=0.5")
    args, extra = p.parse_known_args(argv)
    (args.input, args.decontaminate), moved = _split_overrides(args.input, args.decontaminate)
    recipe_overrides = moved + list(args.overrides) + [a for a in extra if "=" in a and not a.startswith("-")]
    bad = [a for a in extra if a not in recipe_overrides]
    if bad:
        p.error(f"unrecognized arguments: {' '.join(bad)}")
    cfg = config_from_args(CurateCommand, args)
    from olmoflow.data.curate import curate

    s = curate(cfg.input, cfg.output, recipe=cfg.recipe, decontaminate=cfg.decontaminate, workers=cfg.workers,
               executor=cfg.executor, overrides=cfg.overrides + recipe_overrides, quiet=args.quiet,
               keep_work=cfg.keep_work)
    a = s["accounting"]
    print(f"curated {a['docs_in']} docs: kept {a['kept']}, removed {a['removed']}, quarantined "
          f"{a['quarantined']} ({'balanced' if a['balanced'] else 'NOT balanced'}); "
          f"report: {Path(cfg.output) / 'report.md'}")
    return 0 if a["balanced"] else 1


def _demo_corpus(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="olmoflow data demo-corpus", description="build the offline demo corpus")
    p.add_argument("--config", help="YAML with any DemoCorpusCommand field")
    p.add_argument("--output", "-o")
    p.add_argument("--seed", type=int)
    p.add_argument("--max-docs-per-source", type=int)
    p.add_argument("overrides", nargs="*", help="key=value overrides (e.g. seed=1)")
    args = p.parse_args(argv)
    cfg = config_from_args(DemoCorpusCommand, args, args.overrides)
    from olmoflow.data.demo import build_demo_corpus

    print(json.dumps(build_demo_corpus(cfg.output, cfg.seed, cfg.max_docs_per_source), indent=1))
    return 0


def _train_quality(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="olmoflow data train-quality", description="train a fastText quality classifier")
    p.add_argument("--config", help="YAML with any TrainQualityCommand field")
    p.add_argument("--positive", nargs="+")
    p.add_argument("--negative", nargs="+")
    p.add_argument("--output", "-o", help="model .bin path")
    p.add_argument("--epoch", type=int, help="default 10")
    p.add_argument("--seed", type=int)
    args = p.parse_args(argv)
    cfg = config_from_args(TrainQualityCommand, args)
    from olmoflow.data.steps.quality import train_quality_classifier

    print(train_quality_classifier(cfg.positive, cfg.negative, cfg.output, epoch=cfg.epoch, seed=cfg.seed))
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
    """``olmoflow tokenize --input DIR_OR_FILES --tokenizer TOKDIR --output DIR [--workers N] [key=value ...]``"""
    p = argparse.ArgumentParser(prog="olmoflow tokenize", description="tokenize Dolma JSONL into token shards")
    p.add_argument("--config", help="YAML with any TokenizeCommand field")
    p.add_argument("--input", "-i", nargs="+")
    p.add_argument("--tokenizer", "-t", help="directory with tokenizer.json")
    p.add_argument("--output", "-o")
    p.add_argument("--workers", type=int, help="default 2")
    p.add_argument("--batch-size", type=int, help="default 512")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value overrides (e.g. workers=4)")
    args = p.parse_args(argv)
    (args.input,), moved = _split_overrides(args.input)
    cfg = config_from_args(TokenizeCommand, args, moved + args.overrides)
    from olmoflow.data.tokenize import tokenize

    meta = tokenize(cfg.input, cfg.tokenizer, cfg.output, workers=cfg.workers, quiet=args.quiet,
                    batch_size=cfg.batch_size)
    print(f"tokenized {meta['n_docs']} docs, {meta['n_tokens']} tokens -> {cfg.output}")
    if meta["quarantined"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in meta["quarantined_by_reason"].items())
        print(f"skipped {meta['quarantined']} bad input records ({reasons}); see "
              f"{Path(cfg.output) / 'quarantine.jsonl'}", file=sys.stderr)
    return 0


def mix_main(argv: list[str]) -> int:
    """``olmoflow mix --input source=DIR ... --output DIR (--ratios a=0.3,b=0.7 | --tokens ...) --total-tokens N``"""
    p = argparse.ArgumentParser(prog="olmoflow mix", description="mix token datasets to target ratios")
    p.add_argument("--config", help="YAML with any MixCommand field (input, ratios and tokens as mappings)")
    p.add_argument("--input", "-i", nargs="+", help="source=DIR (token dataset)")
    p.add_argument("--output", "-o")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ratios", help="e.g. code=0.3,prose=0.7")
    g.add_argument("--tokens", help="e.g. code=100000,prose=200000")
    p.add_argument("--total-tokens", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--quiet", "-q", action="store_true")
    args = p.parse_args(argv)
    from olmoflow.data.mix import mix, parse_mapping

    mappings: dict[str, Any] = {"input": parse_mapping(args.input, kind=str) if args.input else None,
                                "ratios": parse_mapping(args.ratios) if args.ratios else None,
                                "tokens": parse_mapping(args.tokens, kind=int) if args.tokens else None}
    cfg = config_from_args(MixCommand, argparse.Namespace(**{**vars(args), **mappings}))
    info = mix(cfg.input, cfg.output, ratios=cfg.ratios, tokens=cfg.tokens, total_tokens=cfg.total_tokens,
               seed=cfg.seed, quiet=args.quiet)
    print(f"mixed {info['total_tokens']} tokens -> {cfg.output} ({info['achieved_ratios']})")
    return 0
