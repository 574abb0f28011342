"""Stage ``demo_corpus``: the offline demo corpus (olmoflow.data.demo.build_demo_corpus).

Output: ``docs/{code,prose,math}.jsonl`` (training documents) and ``eval/math_eval.jsonl`` (held-out
arithmetic items, used by curate's decontamination and by evaluate).
"""

from __future__ import annotations

from pathlib import Path

from olmoflow.flow.registry import StageContext, register_stage

KEYS = ("max_docs_per_source", "n_math", "n_math_eval", "max_code_file_bytes", "max_code_files")


def resolve(config: dict) -> dict:
    from olmoflow.config import ConfigError

    bad = set(config) - set(KEYS)
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} (allowed: {', '.join(KEYS)})")
    return dict(config)


@register_stage("demo_corpus", description="offline demo corpus: stdlib code, docs prose, synthetic math",
                resolve_config=resolve)
def run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.data.demo import build_demo_corpus

    res = build_demo_corpus(out_dir / "docs", seed=ctx.seed, **config)
    (out_dir / "eval").mkdir()
    eval_path = Path(res["eval"])
    eval_path.rename(out_dir / "eval" / eval_path.name)
    n_eval = sum(1 for line in (out_dir / "eval" / eval_path.name).read_text().splitlines() if line.strip())
    return {"docs": res["docs"], "bytes": res["bytes"], "eval_items": n_eval}
