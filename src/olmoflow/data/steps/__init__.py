"""Curation steps, one module per step family. ``STEPS`` maps a recipe ``step:`` name to its class."""

from __future__ import annotations

import importlib

from olmoflow.data.steps.base import Context, Filter, GlobalStep, Step, StepConfig

#: recipe step name -> "module:Class" (imported lazily so heavy deps load only when used)
STEPS: dict[str, str] = {
    "normalize": "olmoflow.data.steps.normalize:Normalize",
    "langid": "olmoflow.data.steps.langid:LangId",
    "gopher_quality": "olmoflow.data.steps.filters:GopherQuality",
    "gopher_repetition": "olmoflow.data.steps.filters:GopherRepetition",
    "c4": "olmoflow.data.steps.filters:C4Filter",
    "fineweb": "olmoflow.data.steps.filters:FineWebFilter",
    "dclm_sentences": "olmoflow.data.steps.filters:SentenceFilter",
    "length": "olmoflow.data.steps.filters:LengthFilter",
    "pii": "olmoflow.data.steps.pii:PiiMask",
    "exact_dedup": "olmoflow.data.steps.dedup_exact:ExactDedup",
    "minhash_dedup": "olmoflow.data.steps.dedup_minhash:MinHashDedup",
    "substring_dedup": "olmoflow.data.steps.dedup_substring:SubstringDedup",
    "decontaminate": "olmoflow.data.steps.decontaminate:Decontaminate",
    "quality": "olmoflow.data.steps.quality:QualityScore",
    "upsample": "olmoflow.data.steps.upsample:QualityUpsample",
    "fim": "olmoflow.data.steps.fim:FimTransform",
}


def step_class(name: str) -> type[Step]:
    """The Step class for a recipe step name (KeyError if unknown)."""
    mod, cls = STEPS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


__all__ = ["STEPS", "Context", "Filter", "GlobalStep", "Step", "StepConfig", "step_class"]
