"""``evaluate``: load a model, run tasks, write a results file with provenance, print a table."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from olmoflow.artifacts import artifact_of, find_tokenizer
from olmoflow.errors import OlmoflowError
from olmoflow.eval.lm import HarnessLM
from olmoflow.eval.options import EvalOptions, eval_options
from olmoflow.eval.runners import n_requests, run_task
from olmoflow.eval.tasks import Task, get_task
from olmoflow.io import sha256_file

_SHOTS = re.compile(r":\d+shot$")

__all__ = ["evaluate", "evaluate_lm", "load_model_and_tokenizer", "find_tokenizer", "model_provenance",
           "print_table", "resolve_tasks"]


def load_model_and_tokenizer(model_path: str | Path, tokenizer: str | Path | None = None, device: str = "cpu"):
    """(model in fp32 eval mode on ``device``, olmoflow ``Tok``) for a native or HF model directory."""
    from olmoflow.model import load
    from olmoflow.tokenizer import Tok

    p = Path(model_path)
    if not p.exists():
        raise OlmoflowError(f"{p}: no such model path")
    model = load(p, device=device, dtype=torch.float32)
    tok = Tok.from_dir(tokenizer or find_tokenizer(p))
    return model, tok


def model_provenance(model_path: str | Path) -> dict[str, Any]:
    """Where the model came from: path, weights hash, and its artifact id / manifest if any."""
    p = Path(model_path).resolve()
    d = p if p.is_dir() else p.parent
    weights = d / "model.safetensors"
    small = weights.is_file() and weights.stat().st_size <= 2 << 30  # larger: not worth reading twice
    info: dict[str, Any] = {"path": str(model_path), "weights_sha256": sha256_file(weights) if small else None}
    info.update(artifact_of(d) or {})
    if "artifact_id" not in info and (d / "manifest.json").is_file():
        try:
            man = json.loads((d / "manifest.json").read_text())
            info["manifest"] = str(d / "manifest.json")
            info["artifact_id"] = man.get("id") or man.get("artifact_id")
        except (OSError, json.JSONDecodeError):
            pass
    return info


def resolve_tasks(tasks: list[str | Task], shots: int | None = None) -> list[Task]:
    """Task objects for specs; a bad spec fails before any model work starts. ``shots`` sets the
    few-shot count of every rc / mc / gen task whose spec does not give one (``:Nshot``)."""
    if not tasks:
        raise OlmoflowError("no tasks given")
    out = []
    for t in tasks:
        task = t if isinstance(t, Task) else get_task(t)
        if shots is not None and isinstance(t, str) and task.kind in ("rc", "mc", "gen") and not _SHOTS.search(t):
            task = replace(task, num_shots=shots, name=f"{task.name}:{shots}shot")
        out.append(task)
    return out


def limit_docs(docs: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` docs; of each subject for a subject-grouped task (MMLU, MATH), as OLMES
    applies a limit to each of the subtasks a suite expands to, so a limited ``mmlu`` still covers
    every subject and its macro average stays one over all subjects."""
    if not any("subject" in d for d in docs):
        return docs[:limit]
    seen: dict[Any, int] = {}
    out = []
    for d in docs:
        s = d.get("subject")
        if seen.get(s, 0) < limit:
            seen[s] = seen.get(s, 0) + 1
            out.append(d)
    return out


def evaluate_lm(
    lm: HarnessLM, tasks: list[str | Task], limit: int | None = None, seed: int = 0, quiet: bool = False,
) -> dict[str, dict[str, Any]]:
    """Run ``tasks`` on an already-built ``HarnessLM``; returns ``{task name: result}``."""
    from olmoflow.progress import progress_bar

    loaded = []
    for task in resolve_tasks(tasks):
        docs, pool = task.load()
        if limit is not None:
            docs = limit_docs(docs, limit)
        loaded.append((task, docs, pool))
    out: dict[str, dict[str, Any]] = {}
    progress = progress_bar(quiet=quiet, unit="requests")
    with progress:
        for task, docs, pool in loaded:
            bar = progress.add_task(task.name, total=n_requests(task, docs))
            metrics, items = run_task(task, lm, docs, pool, seed=seed,
                                      progress=lambda n, bar=bar: progress.advance(bar, n))
            out[task.name] = {
                "config": task.config(), "config_hash": task.config_hash(), "n_items": len(docs),
                "primary_metric": task.primary_metric, "metrics": metrics, "items": items,
            }
    return out


def print_table(results: dict[str, dict[str, Any]], title: str = "olmoflow eval", quiet: bool = False) -> None:
    """A rich table: task, metric, value, items (primary metric in bold)."""
    from rich.table import Table

    from olmoflow.progress import make_console

    if quiet:
        return
    table = Table()
    for col in ("task", "metric", "value", "n"):
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    for name, r in results.items():
        for k, v in r["metrics"].items():
            style = "bold" if k == r["primary_metric"] else ""
            table.add_row(name, k, f"{v:.4f}", str(r["n_items"]), style=style)
    console = make_console()
    console.print(title, soft_wrap=True, markup=False, highlight=False)  # (a title would wrap at the table's width)
    console.print(table)


def evaluate(
    model_path: str | Path,
    tasks: EvalOptions | list[str] | str,
    out: str | Path | None = None,
    quiet: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate the model at ``model_path`` (native or HF dir) with ``tasks``: an :class:`EvalOptions`,
    or task specs plus EvalOptions fields as keywords (``limit=100, batch_size=8, shots=5, seed=0,
    tokenizer=..., max_length=..., device=..., share_prefix=..., ppl_data=[...]``).

    Returns (and writes to ``out`` as JSON) ``{"model": provenance, "seed", "batch_size", "limit",
    "tasks": {name: {"config", "config_hash", "n_items", "primary_metric", "metrics", "items"}}}``.
    The file has no timestamps: same model + tasks + seed give a byte-identical file on CPU.
    ``share_prefix`` runs each item's context once for all its answers (faster few-shot
    multiple choice; scores agree to ~1e-5 but are no longer bit-identical across batch sizes).
    """
    from olmoflow import __version__

    opts = eval_options(tasks, **options)
    specs = resolve_tasks(opts.task_specs(), opts.shots)  # fail on a bad task name before loading anything
    model, tok = load_model_and_tokenizer(model_path, opts.tokenizer, device=opts.device)
    lm = HarnessLM(model, tok, batch_size=opts.batch_size, max_length=opts.max_length, device=opts.device,
                   share_prefix=opts.share_prefix)
    task_results = evaluate_lm(lm, specs, limit=opts.limit, seed=opts.seed, quiet=quiet)
    result = {
        "olmoflow_version": __version__,
        "model": model_provenance(model_path),
        "tokenizer": str(opts.tokenizer or find_tokenizer(model_path)),
        "seed": opts.seed, "batch_size": opts.batch_size, "limit": opts.limit, "max_length": lm.max_length,
        "device": str(opts.device), "share_prefix": lm.share_prefix,
        "tasks": task_results,
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    print_table(task_results, title=f"olmoflow eval: {model_path}", quiet=quiet)
    return result
