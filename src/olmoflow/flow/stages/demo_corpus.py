"""Stage ``demo_corpus``: the offline demo corpus (olmoflow.data.demo.build_demo_corpus).

Output: ``docs/{code,prose,math}.jsonl`` (training documents), ``eval/math_eval.jsonl`` (held-out
arithmetic items, used by curate's decontamination and by evaluate) and ``eval/heldout.jsonl``
(the last ``heldout_per_source`` documents of every source, removed from ``docs/``, cut to
``heldout_max_chars``, sources interleaved: per-source perplexity on text the model never saw).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from olmoflow.flow.registry import StageConfig, StageContext, register_stage
from olmoflow.io import read_jsonl, write_jsonl


class DemoCorpusConfig(StageConfig):
    max_docs_per_source: int | None = Field(None, ge=1)
    n_math: int = Field(2000, ge=0)
    n_math_eval: int = Field(200, ge=0)
    max_code_file_bytes: int = Field(24_000, ge=1)
    max_code_files: int = Field(250, ge=0)
    #: documents per source held out of docs/ for perplexity
    heldout_per_source: int = Field(20, ge=0)
    heldout_max_chars: int = Field(4000, ge=1)
    #: evaluation items written into math documents on purpose (the decontamination claim's plant)
    plant_eval_items: int = Field(0, ge=0)


# the code documents are the interpreter's own standard library sources
@register_stage("demo_corpus", description="offline demo corpus: stdlib code, docs prose, synthetic math",
                config=DemoCorpusConfig, libraries=("python",))
def run(config: DemoCorpusConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.data.demo import build_demo_corpus

    k, max_chars = config.heldout_per_source, config.heldout_max_chars
    res = build_demo_corpus(out_dir / "docs", seed=ctx.seed, max_docs_per_source=config.max_docs_per_source,
                            n_math=config.n_math, n_math_eval=config.n_math_eval,
                            max_code_file_bytes=config.max_code_file_bytes, max_code_files=config.max_code_files,
                            plant_eval_items=config.plant_eval_items)
    (out_dir / "eval").mkdir()
    eval_path = Path(res["eval"])
    eval_path.rename(out_dir / "eval" / eval_path.name)
    n_eval = len(read_jsonl(out_dir / "eval" / eval_path.name))
    held_by_src, docs = {}, {}
    for src in sorted(res["files"]):
        path = out_dir / "docs" / f"{src}.jsonl"
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        keep, held = (lines[:-k], lines[-k:]) if 0 < k < len(lines) else (lines, [])
        path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")
        held_by_src[src] = [json.loads(ln) for ln in held]
        docs[src] = len(keep)
    # round-robin over sources, so an eval `limit` still covers every source
    heldout = [lst[i] for i in range(k) for lst in held_by_src.values() if i < len(lst)]
    write_jsonl(out_dir / "eval" / "heldout.jsonl",
                ({"id": d["id"], "text": d["text"][:max_chars], "source": d.get("source") or "unknown"} for d in heldout))
    return {"docs": docs, "heldout_docs": len(heldout), "eval_items": n_eval}
