"""In-loop evaluation: a callable a trainer invokes after each step.

    cb = EvalCallback(["arith_rc", "ppl:heldout.jsonl"], every_n_steps=100, tokenizer="tok/")
    for step in ...:
        train_step()
        cb(step, model, run_dir)   # every 100 steps: appends a line to run_dir/eval.jsonl

It knows nothing about the trainer: it takes the step number, a module whose ``forward(input_ids)``
returns logits (unwrapped or FSDP/DDP-wrapped; ``.module`` is used when present) and the run
directory. The model is put in eval mode under ``torch.no_grad`` and restored afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from olmoflow.errors import OlmoflowError
from olmoflow.eval.tasks import Task

__all__ = ["EvalCallback"]


class EvalCallback:
    """Run ``tasks`` (and per-source perplexity on ``ppl_data`` files) every ``every_n_steps``."""

    def __init__(
        self,
        tasks: list[str | Task],
        every_n_steps: int,
        ppl_data: list[str | Path] | str | Path | None = None,
        limit: int | None = 50,
        batch_size: int = 8,
        tokenizer: Any = None,
        seed: int = 0,
        quiet: bool = True,
        max_length: int | None = None,
        share_prefix: bool = False,
    ):
        from olmoflow.eval.evaluator import resolve_tasks

        if every_n_steps < 1:
            raise OlmoflowError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if isinstance(ppl_data, str | Path):
            ppl_data = [ppl_data]
        specs = list(tasks) + [f"ppl:{p}" for p in (ppl_data or [])]
        self.tasks = resolve_tasks(specs)  # a bad task name fails now, not at step N
        self.every_n_steps = every_n_steps
        self.limit, self.batch_size, self.seed, self.quiet = limit, batch_size, seed, quiet
        self.max_length = max_length
        self.share_prefix = share_prefix
        self._tokenizer = tokenizer

    def _tok(self, run_dir: Path):
        from olmoflow.eval.evaluator import find_tokenizer
        from olmoflow.tokenizer import Tok

        if self._tokenizer is None:
            self._tokenizer = find_tokenizer(run_dir)
        if isinstance(self._tokenizer, str | Path):
            self._tokenizer = Tok.from_dir(self._tokenizer)
        return self._tokenizer

    def __call__(
        self, step: int, model: torch.nn.Module, run_dir: str | Path, force: bool = False
    ) -> dict[str, Any] | None:
        """Evaluate at multiples of ``every_n_steps`` (or when ``force``); returns the logged record (else None)."""
        if not force and step % self.every_n_steps != 0:
            return None
        from olmoflow.eval.evaluator import evaluate_lm
        from olmoflow.eval.lm import HarnessLM

        run_dir = Path(run_dir)
        inner = getattr(model, "module", model)
        was_training = inner.training
        try:
            inner.eval()
            lm = HarnessLM(inner, self._tok(run_dir), batch_size=self.batch_size, max_length=self.max_length,
                           device=next(inner.parameters()).device, share_prefix=self.share_prefix)
            with torch.no_grad():
                res = evaluate_lm(lm, self.tasks, limit=self.limit, seed=self.seed, quiet=self.quiet)
        finally:
            inner.train(was_training)
        record = {"step": step,
                  "metrics": {name: r["metrics"] for name, r in res.items()},
                  "primary": {name: r["primary_metric"] for name, r in res.items()}}
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return record
