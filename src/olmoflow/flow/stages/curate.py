"""Stage ``curate``: a curation recipe over documents (olmoflow.data.curate.curate).

Config: ``recipe`` (an inline recipe mapping; default: the packaged Dolma-3-style recipe),
``overrides`` (``["langid.min_score=0.5", ...]``), ``workers``, ``executor``. The resolved config
holds the full recipe, so editing the recipe reruns the stage. Inputs: ``docs`` (a Dolma JSONL
file or directory) and optional ``decontaminate`` (eval items: a JSONL file or a directory of them).
Output: ``documents/`` (kept docs), ``removed/``, ``quarantine/``, ``stats.json``, ``report.md``.
"""

from __future__ import annotations

from pathlib import Path

from olmoflow.flow.registry import StageContext, register_stage
from olmoflow.flow.stages._common import files_in, need

KEYS = ("recipe", "overrides", "workers", "executor")


def resolve(config: dict) -> dict:
    from olmoflow.config import ConfigError
    from olmoflow.data.recipe import load_recipe

    bad = set(config) - set(KEYS)
    if bad:
        raise ConfigError(f"unknown key(s) {sorted(bad)} (allowed: {', '.join(KEYS)})")
    recipe = config.get("recipe")
    if recipe is not None and not isinstance(recipe, dict):
        raise ConfigError("key 'recipe': give the recipe inline as a mapping (or leave it out for the default)")
    rec = load_recipe(recipe, list(config.get("overrides") or []))
    return {"recipe": rec.to_dict(), "workers": int(config.get("workers", 2)),
            "executor": str(config.get("executor", "local"))}


@register_stage("curate", description="curate documents (olmoflow.data.curate)", resolve_config=resolve,
                volatile_files=("_work/*", "timing.json", "report.md"),
                volatile_keys={"stats.json": ("run_hash", "seconds")})
def run(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    from olmoflow.data.curate import curate

    docs = need(inputs, "docs", ctx.stage, "Dolma JSONL documents")
    decon = files_in(inputs["decontaminate"]) if inputs.get("decontaminate") is not None else []
    summary = curate(files_in(docs), out_dir, recipe=config["recipe"],
                     decontaminate=decon, workers=config["workers"], executor=config["executor"],
                     quiet=ctx.quiet)
    acc = summary.get("accounting", {})
    out = {"docs_in": acc.get("docs_in"), "docs_kept": acc.get("kept"), "docs_removed": acc.get("removed"),
           "quarantined": acc.get("quarantined"), "balanced": acc.get("balanced")}
    if "decontamination" in summary:
        out["decontaminated_docs"] = summary["decontamination"].get("n_docs_removed")
        out["eval_items_matched"] = summary["decontamination"].get("n_items_matched")
    return out
