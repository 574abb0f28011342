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

from pathlib import Path
from typing import Any

import torch

from olmoflow.errors import OlmoflowError
from olmoflow.eval.options import EvalOptions, eval_options
from olmoflow.io import append_jsonl

__all__ = ["EvalCallback"]


class EvalCallback:
    """Evaluate every ``every_n_steps`` with ``tasks``: an :class:`EvalOptions` (e.g. a training
    config's ``in_loop_eval``) or task specs plus its fields as keywords (``ppl_data`` files for
    per-source perplexity, ``limit`` (default 50 here), ``batch_size``, ``shots``, ``seed``, ...).
    ``tokenizer`` may also be a loaded ``Tok``."""

    def __init__(
        self,
        tasks: EvalOptions | list[str] | str,
        every_n_steps: int,
        tokenizer: Any = None,
        quiet: bool = True,
        **options: Any,
    ):
        from olmoflow.eval.evaluator import resolve_tasks

        if every_n_steps < 1:
            raise OlmoflowError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if not isinstance(tasks, EvalOptions):
            options.setdefault("limit", 50)
        if isinstance(tokenizer, str | Path):
            options["tokenizer"], tokenizer = str(tokenizer), None
        if isinstance(options.get("ppl_data"), Path):
            options["ppl_data"] = [str(options["ppl_data"])]
        self.options = eval_options(tasks, **options)
        self.tasks = resolve_tasks(self.options.task_specs(), self.options.shots)  # a bad task fails now, not at step N
        self.every_n_steps = every_n_steps
        self.quiet = quiet
        self._tokenizer = tokenizer if tokenizer is not None else self.options.tokenizer

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
            o = self.options
            lm = HarnessLM(inner, self._tok(run_dir), batch_size=o.batch_size, max_length=o.max_length,
                           device=next(inner.parameters()).device, share_prefix=o.share_prefix)
            with torch.no_grad():
                res = evaluate_lm(lm, self.tasks, limit=o.limit, seed=o.seed, quiet=self.quiet)
        finally:
            inner.train(was_training)
        record = {"step": step,
                  "metrics": {name: r["metrics"] for name, r in res.items()},
                  "primary": {name: r["primary_metric"] for name, r in res.items()}}
        append_jsonl(run_dir / "eval.jsonl", record)
        return record
