"""Stage ``mix``: token datasets -> one mixed token dataset (olmoflow.data.mix.mix).

Config: ``ratios`` + ``total_tokens``, or per-source ``tokens`` (optionally rescaled by
``total_tokens``). Inputs: token dataset dirs. An input named after a source of the mix is used
for that source; any other input contributes every source listed in its ``meta.json`` (so one
tokenize output holding code, prose and math can be mixed directly). Its output is a token
dataset, reported and released like tokenize's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import field_validator, model_validator

from olmoflow.errors import OlmoflowError
from olmoflow.flow import estimate as est
from olmoflow.flow.registry import StageConfig, StageContext, register_stage
from olmoflow.flow.stages.tokenize import DATA_FILES, TOKEN_DATASETS


def _count(v: Any) -> Any:
    """Token counts may be written as ``3e5`` (YAML reads that as a string) or ``3.0e5``."""
    return int(float(v)) if isinstance(v, str | float) else v


class MixConfig(StageConfig):
    #: source -> share of the mix (with total_tokens)
    ratios: dict[str, float] | None = None
    #: source -> tokens taken from it
    tokens: dict[str, int] | None = None
    total_tokens: int | None = None

    @field_validator("total_tokens", mode="before")
    @classmethod
    def _total(cls, v: Any) -> Any:
        return _count(v)

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens(cls, v: Any) -> Any:
        return {k: _count(x) for k, x in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _one_of(self) -> MixConfig:
        if (self.ratios is None) == (self.tokens is None):
            raise ValueError("give exactly one of 'ratios' (with 'total_tokens') or 'tokens'")
        if self.ratios is not None and not self.total_tokens:
            raise ValueError("key 'total_tokens': required with 'ratios'")
        return self

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def estimate(config: dict) -> dict:
    total = config.get("total_tokens") or sum((config.get("tokens") or {}).values()) or None
    return {"tokens": float(total)} if total else est.estimate(config)


def source_inputs(config: MixConfig, inputs: dict[str, Path]) -> dict[str, str]:
    wanted = set((config.ratios or config.tokens or {}).keys())
    out: dict[str, str] = {}
    for name, path in inputs.items():
        if name in wanted:
            out[name] = str(path)
            continue
        meta_path = Path(path) / "meta.json"
        if not meta_path.is_file():
            raise OlmoflowError(f"mix input {name!r}: {path} is not a token dataset (no meta.json)")
        for src in json.loads(meta_path.read_text()).get("sources", {}):
            out.setdefault(src, str(path))
    return out


@register_stage("mix", description="mix token datasets to target ratios (olmoflow.data)", config=MixConfig,
                report=(TOKEN_DATASETS,), release=DATA_FILES, libraries=("numpy",), estimate=estimate)
def run(config: MixConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.data.mix import mix

    info = mix(source_inputs(config, inputs), out_dir, ratios=config.ratios, tokens=config.tokens,
               total_tokens=config.total_tokens, seed=ctx.seed, quiet=True)
    return {"total_tokens": info["total_tokens"], "achieved_ratios": info["achieved_ratios"],
            "repetition": {k: v["repetition"] for k, v in info["sources"].items()}}
