"""Stage ``soup``: the uniform (or weighted) mean of the weights of several runs of one model
(``olmoflow.train.soup``).

Inputs: every input except ``tokenizer`` and ``val`` is an ingredient (a training run artifact,
checkpoint or model dir); ``val`` (a token dataset, optional) scores the soup and every ingredient
on the same held-out sequences. Config: ``weights`` (input name -> weight; default uniform),
``seq_len`` / ``max_seqs`` of the held-out loss. Output: ``final/`` (an ordinary model dir, as a
training run's: sft / evaluate / export / long_context take it), ``soup.json`` (lineage: every
ingredient's path, weight and weights' sha256) and ``heldout.json``.
Report: the soup's held-out loss next to each ingredient's and their mean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from olmoflow.errors import OlmoflowError
from olmoflow.flow.registry import (
    ReleaseFiles,
    ReportSection,
    StageArtifact,
    StageConfig,
    StageContext,
    register_stage,
)
from olmoflow.flow.stages._common import model_dir


class SoupConfig(StageConfig):
    #: input name -> weight (normalised to sum 1); None: uniform
    weights: dict[str, float] | None = None
    #: held-out loss (with input ``val``): window length (None: the first ingredient's training seq_len)
    seq_len: int | None = Field(None, gt=1)
    max_seqs: int = Field(64, ge=1)


def soup_section(arts: list[StageArtifact], workdir: Path) -> list[str]:
    lines = ["Uniform weight averages of runs of one model; held-out loss on the same sequences "
             "(`val` input) for the soup and each ingredient.", ""]
    for a in arts:
        path = a.dir / "heldout.json"
        if not path.is_file():
            continue
        h = json.loads(path.read_text())
        lines += [f"{a.name}:", "", "| model | held-out loss |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in h["ingredients"].items()]
        lines += [f"| mean of ingredients | {h['ingredients_mean']:.4f} |", f"| **soup** | **{h['soup']:.4f}** |", "",
                  f"soup <= mean of ingredients: {'yes' if h['soup'] <= h['ingredients_mean'] else 'NO'} "
                  f"({h['soup'] - h['ingredients_mean']:+.4f}; {h['tokens']} tokens)", ""]
    return lines


SOUP = ReportSection("Model soup", soup_section, order=22)


@register_stage("soup", description="average the weights of several runs of one model (model souping)",
                config=SoupConfig, report=(SOUP,), libraries=("torch", "safetensors"),
                release=(ReleaseFiles("final", "model", mode="replace"), ReleaseFiles("soup.json", "logs/{stage}.soup.json")))
def run(config: SoupConfig, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict[str, Any]:
    from olmoflow.train.anneal import heldout_loss, trained_context
    from olmoflow.train.soup import soup

    names = [k for k in sorted(inputs) if k not in ("tokenizer", "val")]
    if len(names) < 2:
        raise OlmoflowError(f"stage {ctx.stage!r}: needs at least two ingredient inputs, got {names}")
    if config.weights is not None:
        unknown = sorted(set(config.weights) - set(names))
        if unknown:
            raise OlmoflowError(f"stage {ctx.stage!r}: key 'weights' names {unknown}, which are not inputs ({names})")
    weights = [config.weights.get(n, 0.0) for n in names] if config.weights is not None else None
    dirs = [model_dir(inputs[n]) for n in names]
    rec = soup(dirs, out_dir / "final", weights)
    wd = Path(ctx.workdir).resolve()
    for ing, name in zip(rec["ingredients"], names):  # workdir-relative: the artifact must not depend on it
        p = Path(ing["path"]).resolve()
        ing.update(input=name, path=str(p.relative_to(wd)) if p.is_relative_to(wd) else str(p))
    # the context the ingredients were trained at (what a long_context stage extends)
    rec["seq_len"] = trained_context(inputs[names[0]])
    (out_dir / "soup.json").write_text(json.dumps(rec, indent=1) + "\n")
    (out_dir / "final" / "soup.json").unlink()
    out: dict[str, Any] = {"ingredients": len(names), "method": rec["method"]}
    if inputs.get("val") is not None:
        seq = config.seq_len or trained_context(inputs[names[0]]) or 128
        per = {n: heldout_loss(d, inputs["val"], seq, config.max_seqs) for n, d in zip(names, dirs)}
        mine = heldout_loss(out_dir / "final", inputs["val"], seq, config.max_seqs)
        held = {"soup": mine["loss"], "ingredients": {n: v["loss"] for n, v in per.items()},
                "ingredients_mean": sum(v["loss"] for v in per.values()) / len(per), "tokens": mine["tokens"],
                "seq_len": seq}
        (out_dir / "heldout.json").write_text(json.dumps(held, indent=1) + "\n")
        out.update(heldout_loss=held["soup"], ingredients_mean_loss=held["ingredients_mean"])
    return out
