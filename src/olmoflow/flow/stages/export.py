"""Stage ``export``: the final model in transformers format (olmoflow.model.hf.export_hf) + a sample.

Config: ``dtype`` (float32 | bfloat16 | float16), ``sample_prompt`` (greedy sample written to
``sample.json`` for the report; empty or null to skip), ``sample_tokens``. Inputs: ``model`` (a
training run artifact, checkpoint or model dir) and ``tokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path

from olmoflow.flow.registry import StageContext, register_stage
from olmoflow.flow.stages._common import model_dir, need

KEYS = ("dtype", "sample_prompt", "sample_tokens")


def resolve(config: dict) -> dict:
    from olmoflow.config import ConfigError

    bad = set(config) - set(KEYS)
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} (allowed: {', '.join(KEYS)})")
    dtype = config.get("dtype", "float32")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"key 'dtype': {dtype!r} is not one of float32, bfloat16, float16")
    prompt = config.get("sample_prompt", "def ")
    return {"dtype": dtype, "sample_prompt": "" if prompt is None else str(prompt),
            "sample_tokens": int(config.get("sample_tokens", 48))}


def sample(model_path: Path, tok_dir: Path, prompt: str, max_new_tokens: int, seed: int) -> dict:
    """Greedy continuation of ``prompt`` with the exported model (what the demo prints)."""
    from olmoflow.inference import generate
    from olmoflow.model import load
    from olmoflow.tokenizer import Tok

    tok = Tok.from_dir(tok_dir)
    model = load(model_path).eval()
    [res] = generate(model, [tok.encode(prompt)], max_new_tokens=max_new_tokens, temperature=0.0,
                     stop_token_ids=[tok.eos_id], seed=seed, tokenizer=tok)
    return {"prompt": prompt, "completion": tok.decode(res.token_ids), "max_new_tokens": max_new_tokens,
            "finish_reason": res.finish_reason}


@register_stage("export", description="export to HF/transformers format (olmoflow.model.hf)", resolve_config=resolve)
def run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.model.hf import export_hf

    src = model_dir(need(inputs, "model", ctx.stage, "a training run, checkpoint or model dir"))
    tok = inputs.get("tokenizer")
    export_hf(src, out_dir, tokenizer_dir=tok, dtype=config["dtype"])
    cfg = json.loads((out_dir / "config.json").read_text())
    out = {"model_type": cfg.get("model_type"), "bytes": sum(p.stat().st_size for p in out_dir.iterdir())}
    if config["sample_prompt"] and tok is not None:
        s = sample(out_dir, Path(tok), config["sample_prompt"], config["sample_tokens"], ctx.seed)
        (out_dir / "sample.json").write_text(json.dumps(s, indent=2) + "\n")
        out["sample_chars"] = len(s["completion"])
    return out
