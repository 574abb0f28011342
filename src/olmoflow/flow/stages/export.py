"""Stage ``export``: the final model in transformers format (olmoflow.model.hf.export_hf) + a sample.

Config: ``dtype`` (float32 | bfloat16 | float16), ``sample_prompt`` (greedy sample written to
``sample.json`` for the report; empty or null to skip), ``sample_tokens``. Inputs: ``model`` (a
training run artifact, checkpoint or model dir) and ``tokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from olmoflow.flow.registry import ReleaseFiles, StageConfig, StageContext, register_stage
from olmoflow.flow.stages._common import model_dir, need


class ExportConfig(StageConfig):
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    #: greedy sample written to sample.json for the report ("" or null: no sample)
    sample_prompt: str = "def "
    sample_tokens: int = Field(48, ge=1)

    @field_validator("sample_prompt", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return "" if v is None else v


def sample(model_path: Path, tok_dir: Path, prompt: str, max_new_tokens: int, seed: int) -> dict:
    """Greedy continuation of ``prompt`` with the exported model (what the demo prints); it stops at the
    end of a document or of a chat turn."""
    from olmoflow.inference import generate
    from olmoflow.model import load
    from olmoflow.tokenizer import Tok

    tok = Tok.from_dir(tok_dir)
    model = load(model_path).eval()
    [res] = generate(model, [tok.encode(prompt)], max_new_tokens=max_new_tokens, temperature=0.0,
                     stop_token_ids=tok.stop_ids, seed=seed, tokenizer=tok)
    return {"prompt": prompt, "completion": tok.decode(res.token_ids), "max_new_tokens": max_new_tokens,
            "finish_reason": res.finish_reason}


#: the export is the bundle's model/ (it replaces a training stage's native weights); its tokenizer
#: files are the bundle's tokenizer/ when the flow has no tokenizer stage
RELEASE = (ReleaseFiles(".", "model", mode="replace"), ReleaseFiles("tokenizer*", "tokenizer/", mode="fill"))


@register_stage("export", description="export to HF/transformers format (olmoflow.model.hf)", config=ExportConfig,
                release=RELEASE, libraries=("torch", "safetensors", "tokenizers"))
def run(config: ExportConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.model.hf import export_hf

    src = model_dir(need(inputs, "model", ctx.stage, "a training run, checkpoint or model dir"))
    tok = inputs.get("tokenizer")
    export_hf(src, out_dir, tokenizer_dir=tok, dtype=config.dtype)
    cfg = json.loads((out_dir / "config.json").read_text())
    out = {"model_type": cfg.get("model_type"), "bytes": sum(p.stat().st_size for p in out_dir.iterdir())}
    if config.sample_prompt and tok is not None:
        s = sample(out_dir, Path(tok), config.sample_prompt, config.sample_tokens, ctx.seed)
        (out_dir / "sample.json").write_text(json.dumps(s, indent=2) + "\n")
        out["sample_chars"] = len(s["completion"])
    return out
