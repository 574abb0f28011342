"""Evaluation in the OLMES style: RC/MC multiple choice, generative tasks with answer extraction,
code with pass@k in a sandbox, per-source perplexity; a batched harness over native or HF
checkpoints, in-loop evaluation, checkpoint sweeps and an lm-evaluation-harness adapter.

    from olmoflow.eval import evaluate
    res = evaluate("runs/x/model", ["arc_easy", "gsm8k"], limit=100, out="eval.json")

See docs/eval.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate", "EvalCallback", "HarnessLM", "get_task", "list_tasks", "run_python"]


def __getattr__(name: str) -> Any:  # lazy: keep `import olmoflow.eval` light
    if name == "evaluate":
        from olmoflow.eval.evaluator import evaluate

        return evaluate
    if name == "EvalCallback":
        from olmoflow.eval.callback import EvalCallback

        return EvalCallback
    if name == "HarnessLM":
        from olmoflow.eval.lm import HarnessLM

        return HarnessLM
    if name in ("get_task", "list_tasks"):
        from olmoflow.eval import tasks

        return getattr(tasks, name)
    if name == "run_python":
        from olmoflow.eval.sandbox import run_python

        return run_python
    raise AttributeError(name)
