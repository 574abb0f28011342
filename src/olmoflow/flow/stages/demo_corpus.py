"""Stage ``demo_corpus``: the offline demo corpus (olmoflow.data.demo.build_demo_corpus).

Output: ``docs/{code,prose,math}.jsonl`` (training documents), ``eval/math_eval.jsonl`` (held-out
arithmetic items, used by curate's decontamination and by evaluate) and ``eval/heldout.jsonl``
(the last ``heldout_per_source`` documents of every source, removed from ``docs/``, cut to
``heldout_max_chars``, sources interleaved: per-source perplexity on text the model never saw).
"""

from __future__ import annotations

import json
from pathlib import Path

from olmoflow.flow.registry import StageContext, register_stage

KEYS = ("max_docs_per_source", "n_math", "n_math_eval", "max_code_file_bytes", "max_code_files", "heldout_per_source",
        "heldout_max_chars")


def resolve(config: dict) -> dict:
    from olmoflow.config import ConfigError

    bad = set(config) - set(KEYS)
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} (allowed: {', '.join(KEYS)})")
    return {"heldout_per_source": 20, "heldout_max_chars": 4000, **config}


@register_stage("demo_corpus", description="offline demo corpus: stdlib code, docs prose, synthetic math",
                resolve_config=resolve)
def run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.data.demo import build_demo_corpus

    config = dict(config)
    k = int(config.pop("heldout_per_source"))
    max_chars = int(config.pop("heldout_max_chars"))
    res = build_demo_corpus(out_dir / "docs", seed=ctx.seed, **config)
    (out_dir / "eval").mkdir()
    eval_path = Path(res["eval"])
    eval_path.rename(out_dir / "eval" / eval_path.name)
    n_eval = sum(1 for line in (out_dir / "eval" / eval_path.name).read_text().splitlines() if line.strip())
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
    with open(out_dir / "eval" / "heldout.jsonl", "w", encoding="utf-8") as f:
        for d in heldout:
            text = d["text"][:max_chars]
            f.write(json.dumps({"id": d["id"], "text": text, "source": d.get("source") or "unknown"}) + "\n")
    return {"docs": docs, "heldout_docs": len(heldout), "eval_items": n_eval}
