"""Stage ``mix``: token datasets -> one mixed token dataset (olmoflow.data.mix.mix).

Config: ``ratios`` + ``total_tokens``, or per-source ``tokens`` (optionally rescaled by
``total_tokens``). Inputs: token dataset dirs. An input named after a source of the mix is used
for that source; any other input contributes every source listed in its ``meta.json`` (so one
tokenize output holding code, prose and math can be mixed directly).
"""

from __future__ import annotations

import json
from pathlib import Path

from olmoflow.errors import OlmoflowError
from olmoflow.flow import estimate as est
from olmoflow.flow.registry import StageContext, register_stage

KEYS = ("ratios", "tokens", "total_tokens")


def resolve(config: dict) -> dict:
    from olmoflow.config import ConfigError

    bad = set(config) - set(KEYS)
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} (allowed: {', '.join(KEYS)})")
    if ("ratios" in config) == ("tokens" in config):
        raise ConfigError("give exactly one of 'ratios' (with 'total_tokens') or 'tokens'")
    if "ratios" in config and not config.get("total_tokens"):
        raise ConfigError("key 'total_tokens': required with 'ratios'")
    out = {k: config[k] for k in KEYS if k in config}
    if "total_tokens" in out:
        out["total_tokens"] = int(float(out["total_tokens"]))
    if "tokens" in out:
        out["tokens"] = {k: int(float(v)) for k, v in out["tokens"].items()}
    return out


def estimate(config: dict) -> dict:
    total = config.get("total_tokens") or sum((config.get("tokens") or {}).values()) or None
    return {"tokens": float(total)} if total else est.estimate(config)


def source_inputs(config: dict, inputs: dict[str, Path]) -> dict[str, str]:
    wanted = set((config.get("ratios") or config.get("tokens") or {}).keys())
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


@register_stage("mix", description="mix token datasets to target ratios (olmoflow.data)", resolve_config=resolve,
                estimate=estimate)
def run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.data.mix import mix

    info = mix(source_inputs(config, inputs), out_dir, ratios=config.get("ratios"), tokens=config.get("tokens"),
               total_tokens=config.get("total_tokens"), seed=ctx.seed, quiet=True)
    return {"total_tokens": info["total_tokens"], "achieved_ratios": info["achieved_ratios"],
            "repetition": {k: v["repetition"] for k, v in info["sources"].items()}}
