"""Release bundle: everything needed to use, inspect and reproduce the model of a flow workdir.

```
OUT/
  README.md            generated model card
  model/               final weights in HF format (export stage), else native final checkpoint
  tokenizer/           tokenizer.json + tokenizer_config.json
  configs/flow.yaml    the resolved flow (overrides applied); configs/<stage>.json: resolved configs
  manifests/           every stage's manifest.json
  data/                curation stats, token dataset meta.json, decontamination reports
  reports/             REPORT.md and its plots, evaluation results
  logs/                log.jsonl, training metrics.jsonl
  checkpoints.json     intermediate checkpoints (step, location, artifact id) -- not copied
  release.json         sha256 of every file in the bundle
```

Which files of a stage's artifact go where is declared by its stage type (registry ``release``:
``ReleaseFiles`` rules, applied in flow order); configs, manifests, the report, logs and the
checkpoint list are the same for every stage.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from olmoflow.errors import OlmoflowError
from olmoflow.flow.hashing import RUNNER_FILES
from olmoflow.flow.registry import STAGES, ReleaseFiles
from olmoflow.flow.report import (
    flat,
    incomplete_stages,
    load_state,
    register_run_stage_types,
    stage_artifacts,
    write_report,
)
from olmoflow.io import sha256_file

__all__ = ["make_release"]

_SKIP = {*RUNNER_FILES, "error.txt"}  # the runner's own files, and a failed attempt's traceback


def _copy_tree(src: Path, dst: Path) -> None:
    for p in sorted(src.rglob("*")):
        if p.is_file() and p.name not in _SKIP:
            t = dst / p.relative_to(src)
            t.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, t)


def _checkpoints(arts: dict[str, tuple[Path, dict]], workdir: Path) -> list[dict[str, Any]]:
    """Intermediate checkpoints of every training-like stage: dirs named step-N / stepN."""
    out = []
    for name, (d, m) in arts.items():
        for ck in sorted(d.rglob("*")):
            match = re.fullmatch(r"step[-_]?(\d+)", ck.name)
            if ck.is_dir() and match:
                out.append({"stage": name, "artifact_id": m["id"], "step": int(match.group(1)),
                            "path": str(ck.relative_to(workdir)),
                            "bytes": sum(f.stat().st_size for f in ck.rglob("*") if f.is_file())})
    return sorted(out, key=lambda c: (c["stage"], c["step"]))


def _apply_rule(rule: ReleaseFiles, name: str, d: Path, tmp: Path) -> None:
    """Copy the files of artifact ``d`` (stage ``name``) that ``rule`` selects into the bundle ``tmp``."""
    dest = tmp / rule.dest.format(stage=name)
    into = rule.dest.endswith("/")
    wildcard = any(c in rule.src for c in "*?[")
    if rule.src == ".":
        matches = [d]
    else:  # a wildcard selects files; a plain name may be a directory
        matches = sorted(p for p in d.glob(rule.src) if p.name not in _SKIP and (p.is_file() or not wildcard))
    if not matches or (rule.mode == "fill" and dest.exists()):
        return
    if not into and len(matches) > 1:
        raise OlmoflowError(f"release rule {rule}: {len(matches)} files match but the destination is one file")
    if rule.mode == "replace" and dest.exists():
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    for m in matches:
        target = dest / m.name if into else dest
        if m.is_dir():
            _copy_tree(m, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(m, target)


def _weights_format(model: Path) -> str | None:
    """``hf`` for a transformers export (config.json names its architectures), ``native`` otherwise."""
    if not model.is_dir() or not any(model.iterdir()):
        return None
    cfg = model / "config.json"
    try:
        return "hf" if cfg.is_file() and "architectures" in json.loads(cfg.read_text()) else "native"
    except json.JSONDecodeError:
        return "native"


def _eval_lines(arts: dict[str, tuple[Path, dict]]) -> list[str]:
    rows = []
    for n, (_d, m) in arts.items():
        st = STAGES.get(m.get("type", ""))
        if st is not None and any(sec.title == "Evaluation" for sec in st.report):
            for k, v in flat({k: v for k, v in (m.get("metrics") or {}).items() if k != "skipped"}).items():
                if isinstance(v, float):
                    rows.append(f"| {n} | {k} | {v:.4g} |")
    return ["| stage | metric | value |", "|---|---|---|", *rows, ""] if rows else ["Not evaluated.", ""]


def _model_card(state: dict, arts: dict[str, tuple[Path, dict]], weights: str | None,
                ckpts: list[dict], out: Path) -> str:
    name = state.get("flow") or "olmoflow-model"
    lines = [f"# {name}", "",
             f"A language model trained end to end with olmoflow (flow `{name}`, seed {state.get('seed')}). "
             "Every artifact of the run -- data, configs, checkpoints, logs -- is listed in this bundle so the "
             "model can be reproduced, inspected, or forked from any checkpoint.", ""]
    cfg_path = out / "model" / "config.json"
    lines += ["## Model", ""]
    if cfg_path.is_file():
        c = json.loads(cfg_path.read_text())
        c = c.get("model", c)
        keys = ("model_type", "architectures", "vocab_size", "hidden_size", "d_model", "num_hidden_layers",
                "n_layers", "num_attention_heads", "n_heads", "num_key_value_heads", "intermediate_size",
                "max_position_embeddings", "max_seq_len", "sliding_window", "rope_theta")
        lines += [f"- {k}: {c[k]}" for k in keys if k in c]
    else:
        lines.append("- weights: not exported")
    lines.append("")
    if weights == "hf":
        lines += ["Load with transformers:", "", "```python",
                  "from transformers import AutoModelForCausalLM, AutoTokenizer",
                  'tok = AutoTokenizer.from_pretrained("model")',
                  'model = AutoModelForCausalLM.from_pretrained("model")', "```", ""]
    elif weights:
        lines += ["Weights are in olmoflow's native format: `olmoflow.model.load('model')`.", ""]
    lines += ["## Training", ""]
    for n, (_d, m) in arts.items():
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in list((m.get("metrics") or {}).items())[:5]
                            if isinstance(v, int | float | str))
        lines.append(f"- **{n}** ({m['type']}, {m.get('wall_s', 0):.1f} s): {metrics or '-'}")
    lines += ["", f"Intermediate checkpoints: {len(ckpts)} (see `checkpoints.json`).", "",
              "## Reproduce", "", "```", "olmoflow run configs/flow.yaml", "```", "",
              "Artifact ids are content hashes: the same flow, inputs and seed give the same ids "
              "(see `manifests/`).", "",
              "## Evaluation", "", *_eval_lines(arts), "Full results and the checkpoint sweep: `reports/`.", "",
              "## Limitations", "",
              "Trained by an automated flow; check the report card for the data actually used and the "
              "evaluation results before relying on it. Small models produced by the demo flow are for "
              "testing the pipeline, not for use.", "", "## License", "", "Apache-2.0", ""]
    return "\n".join(lines)


def make_release(workdir: Path, out: Path, force: bool = False) -> Path:
    """Build the release bundle of ``workdir``'s last run in ``out`` (see module docstring)."""
    workdir, out = Path(workdir).resolve(), Path(out).resolve()
    state = load_state(workdir)
    register_run_stage_types(state)
    arts = stage_artifacts(workdir, state)
    if not arts:
        raise OlmoflowError(f"{workdir}: no completed stages to release")
    missing = incomplete_stages(workdir, state)
    if missing:
        raise OlmoflowError(f"{workdir}: the last run did not complete every stage ({', '.join(missing)}); "
                            "rerun the flow before releasing it")
    if out == workdir or out in workdir.parents or (workdir / "artifacts") in out.parents:
        raise OlmoflowError(f"--out {out}: would delete or write into the workdir {workdir} or its "
                            "artifacts; choose another directory")
    if out.exists():
        if not force:
            raise OlmoflowError(f"{out} exists; pass --force to replace it")
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    (tmp / "configs").mkdir()
    (tmp / "configs" / "flow.yaml").write_text(yaml.safe_dump(state.get("resolved_flow") or {}, sort_keys=False))
    (tmp / "manifests").mkdir()
    for n, (d, m) in arts.items():
        (tmp / "configs" / f"{n}.json").write_text(json.dumps(m.get("config"), indent=2, sort_keys=True) + "\n")
        shutil.copy2(d / "manifest.json", tmp / "manifests" / f"{n}.manifest.json")
        st = STAGES.get(m.get("type", ""))
        if st is None:
            raise OlmoflowError(f"stage {n!r}: stage type {m.get('type')!r} is not registered (a plugin of the "
                                "flow that cannot be loaded?); cannot tell which of its files to release")
        for rule in st.release:
            _apply_rule(rule, n, d, tmp)
    weights = _weights_format(tmp / "model")

    write_report(workdir)
    (tmp / "reports").mkdir(exist_ok=True)
    shutil.copy2(workdir / "REPORT.md", tmp / "reports" / "REPORT.md")
    if (workdir / "report").is_dir():
        _copy_tree(workdir / "report", tmp / "reports" / "report")
    if (workdir / "log.jsonl").is_file():
        (tmp / "logs").mkdir(exist_ok=True)
        shutil.copy2(workdir / "log.jsonl", tmp / "logs" / "log.jsonl")
    ckpts = _checkpoints(arts, workdir)
    (tmp / "checkpoints.json").write_text(json.dumps({"workdir": str(workdir), "checkpoints": ckpts}, indent=2) + "\n")
    (tmp / "README.md").write_text(_model_card(state, arts, weights, ckpts, tmp))

    files = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            files[p.relative_to(tmp).as_posix()] = sha256_file(p)
    index = {"format": "olmoflow-release-v1", "flow": state.get("flow"), "seed": state.get("seed"),
             "weights": weights,
             "artifacts": {n: m["id"] for n, (_, m) in arts.items()}, "files": files}
    (tmp / "release.json").write_text(json.dumps(index, indent=2) + "\n")
    tmp.rename(out)
    return out
