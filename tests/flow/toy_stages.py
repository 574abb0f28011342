"""Test-only stage types: tiny, fast, deterministic stand-ins with the same shapes as the real ones.

Loaded by flow files through ``plugins: [path/to/toy_stages.py]`` so that subprocess runs of
``olmoflow run`` see them too. Their artifacts have the built-in types' file layout, so they reuse
the built-in report sections and release rules (a plugin stage type declares its own the same way).
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from olmoflow.flow.registry import ReleaseFiles, ResumePoint, StageContext, register_stage
from olmoflow.flow.stages import evaluate, pretrain
from olmoflow.flow.stages.curate import FUNNEL

WORDS = "the cat sat on a mat while dogs ran far away from big red barns near old green hills".split()


@register_stage("toy_source", description="random word documents")
def toy_source(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    rng = random.Random(ctx.seed * 1000 + int(config.get("salt", 0)))
    n = int(config.get("n_docs", 20))
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 15))) for _ in range(n)]
    if "seed_text" in inputs:  # an external raw file mixed in
        docs += inputs["seed_text"].read_text().splitlines()
    (out_dir / "docs.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                                                for i, t in enumerate(docs)))
    return {"docs": len(docs)}


@register_stage("toy_curate", description="drop long documents, write stats.json", report=(FUNNEL,),
                release=(ReleaseFiles("stats.json", "data/{stage}/"),))
def toy_curate(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    docs = [json.loads(x) for x in (inputs["docs"] / "docs.jsonl").read_text().splitlines()]
    max_words = int(config.get("max_words", 10))
    kept = [d for d in docs if len(d["text"].split()) <= max_words]
    (out_dir / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in kept))
    words_in = sum(len(d["text"].split()) for d in docs)
    words_out = sum(len(d["text"].split()) for d in kept)
    stats = {"steps": [{"name": "length_filter", "docs_in": len(docs), "docs_out": len(kept),
                        "tokens_in": words_in, "tokens_out": words_out}]}
    (out_dir / "stats.json").write_text(json.dumps(stats))
    return {"docs_kept": len(kept), "docs_in": len(docs)}


@register_stage("toy_vocab", description="word vocabulary")
def toy_vocab(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    words = sorted({w for line in (inputs["docs"] / "docs.jsonl").read_text().splitlines()
                    for w in json.loads(line)["text"].split()})
    (out_dir / "vocab.json").write_text(json.dumps(words))
    return {"vocab_size": len(words)}


@register_stage("toy_train", description="fake training with checkpoints", fork_input="init_from",
                volatile_files=("timing.json",), report=(pretrain.LOSS,), release=pretrain.RELEASE)
def toy_train(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    steps = int(config.get("steps", 4))
    every = int(config.get("checkpoint_every", 2))
    weight = 0.0
    if inputs.get("init_from") is not None:
        init = inputs["init_from"]
        wfile = init / "weights.json" if (init / "weights.json").is_file() else init / "final" / "weights.json"
        weight = json.loads(wfile.read_text())["w"]
    n_words = len(json.loads((inputs["vocab"] / "vocab.json").read_text()))
    n_docs = len((inputs["data"] / "docs.jsonl").read_text().splitlines())
    rng = random.Random(ctx.seed)
    start, lines = 0, []
    if ctx.resume_from is not None:  # (toy_train_resumable) continue exactly: weight, rng, metrics
        start, weight = ctx.resume_from.step, json.loads((ctx.resume_from.checkpoint / "weights.json").read_text())["w"]
        for _ in range(start):
            rng.random()
        lines = (out_dir / "metrics.jsonl").read_text().splitlines(keepends=True)[:start]
    fail_at = config.get("fail_at_step") or int(os.environ.get("TOY_FAIL_AT_STEP", 0))  # env: same stage key
    with open(out_dir / "metrics.jsonl", "w") as f:
        f.writelines(lines)
        for step in range(start + 1, steps + 1):
            weight += rng.random() + n_words / 100 + n_docs / 1000
            f.write(json.dumps({"step": step, "loss": round(10.0 / (step + weight), 6), "lr": 1e-3}) + "\n")
            f.flush()
            if step % every == 0 or step == steps:
                ck = out_dir / "checkpoints" / f"step{step}"
                ck.mkdir(parents=True, exist_ok=True)
                (ck / "weights.json").write_text(json.dumps({"w": weight, "step": step}))
            time.sleep(float(config.get("sleep_per_step", 0)))
            if fail_at == step:
                raise RuntimeError(f"toy failure at step {step}")
    (out_dir / "final").mkdir(exist_ok=True)
    (out_dir / "final" / "weights.json").write_text(json.dumps({"w": weight, "step": steps}))
    (out_dir / "timing.json").write_text(json.dumps({"wall": time.time()}))  # volatile: not hashed
    ctx.log("toy_train_done", steps=steps)
    return {"final_loss": round(10.0 / (steps + weight), 6), "steps": steps, "fork": bool(ctx.fork_origin)}


def toy_resume_point(config: dict, out_dir: Path) -> ResumePoint | None:
    steps = sorted(int(p.parent.name[4:]) for p in (out_dir / "checkpoints").glob("step*/weights.json"))
    if not steps:
        return None
    return ResumePoint(step=steps[-1], total=int(config.get("steps", 4)),
                       checkpoint=out_dir / "checkpoints" / f"step{steps[-1]}")


register_stage("toy_train_resumable", description="toy_train that resumes from its checkpoints",
               fork_input="init_from", volatile_files=("timing.json",), resume_point=toy_resume_point,
               report=(pretrain.LOSS,), release=pretrain.RELEASE)(toy_train)


@register_stage("toy_eval", description="score checkpoints", report=(evaluate.EVALUATION,), release=evaluate.RELEASE)
def toy_eval(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    model = inputs["model"]
    sweep = []
    for ck in sorted((model / "checkpoints").iterdir(), key=lambda p: int(p.name[4:])):
        w = json.loads((ck / "weights.json").read_text())
        sweep.append({"step": w["step"], "acc": round(min(1.0, w["w"] / 10), 4)})
    final = json.loads((model / "final" / "weights.json").read_text())["w"]
    (out_dir / "sweep.json").write_text(json.dumps(sweep))
    (out_dir / "sample.json").write_text(json.dumps({"prompt": "the cat", "completion": " sat on a mat",
                                                     "max_new_tokens": 4}))
    return {"acc": round(min(1.0, final / 10), 4)}


@register_stage("toy_tokens", description="random token dataset (docs/formats.md) for a real pretrain stage")
def toy_tokens(config: dict, inputs: dict[str, Path], out_dir: Path, ctx: StageContext) -> dict:
    import numpy as np

    from olmoflow.data.tokens import ShardWriter, dtype_for, write_meta

    vocab, n_docs = int(config.get("vocab_size", 256)), int(config.get("n_docs", 200))
    rng = np.random.default_rng(int(config.get("seed", ctx.seed)))
    docs = [np.append(rng.integers(2, vocab, size=int(rng.integers(5, 60))), 0) for _ in range(n_docs)]  # EOS 0
    with ShardWriter(out_dir, "web-00000", "web", dtype_for(vocab)) as w:
        for i, d in enumerate(docs):
            w.add(d, f"toy-{i}")
    write_meta(out_dir, [w.entry], vocab, 0, "toy")
    return {"n_tokens": w.n_tokens}
