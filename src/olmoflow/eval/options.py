"""How to evaluate: the one definition of evaluation options.

``evaluate()``, the checkpoint sweep, ``olmoflow eval``, the flow's ``evaluate`` stage and the
trainer's in-loop evaluation (``TrainConfig.in_loop_eval``) all take an :class:`EvalOptions`
(or its fields as keyword arguments), so an option is added, defaulted and validated once.

    opts = eval_options(["arith_rc", "gsm8k"], limit=100, shots=5)
    evaluate("runs/x/model", opts)            # same as evaluate("runs/x/model", [...], limit=100, shots=5)
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from olmoflow.config import Config, validate

__all__ = ["EvalOptions", "eval_options"]


def _as_list(v: Any) -> Any:
    """``None`` -> [], ``"a,b"`` -> ["a", "b"]; lists pass through."""
    if v is None:
        return []
    if isinstance(v, str):
        return [t.strip() for t in v.split(",") if t.strip()]
    return v


class EvalOptions(Config):
    """Tasks and settings of one evaluation (of one model, or of every checkpoint of a run)."""

    #: task specs: registered names (``arc_easy``, ``hellaswag:mc:5shot``) or ``FORMAT:PATH.jsonl``
    tasks: list[str] = Field(default_factory=list)
    #: Dolma JSONL files scored for per-source bits per byte (each becomes a ``ppl:PATH`` task)
    ppl_data: list[str] = Field(default_factory=list)
    #: items per task (per subject for subject-grouped tasks); None = all
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    #: few-shot examples for every rc / mc / gen task whose spec does not say ``:Nshot`` (None: task default)
    shots: int | None = Field(None, ge=0)
    #: sampling seed for generative tasks
    seed: int = 0
    #: tokenizer directory (None: next to the model, or in a parent directory)
    tokenizer: str | None = None
    #: context length (None: the model's)
    max_length: int | None = Field(None, ge=1)
    #: torch device (cpu, cuda, cuda:1, ...)
    device: str = "cpu"
    #: score each context once for all its answers (faster; not bit-identical across batch sizes)
    share_prefix: bool = False

    @field_validator("tasks", "ppl_data", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return _as_list(v)

    def task_specs(self) -> list[str]:
        """``tasks`` plus one ``ppl:PATH`` task per ``ppl_data`` file."""
        return [*self.tasks, *(f"ppl:{p}" for p in self.ppl_data)]


def eval_options(tasks: EvalOptions | list[str] | str | None = None, /, **fields: Any) -> EvalOptions:
    """An :class:`EvalOptions` from task specs (a list, or ``"a,b"``) and field values, or a copy of
    ``tasks`` (an EvalOptions) with ``fields`` (``tasks=`` included) replaced. An unknown or invalid
    field is a ConfigError naming it (with a did-you-mean)."""
    if isinstance(tasks, EvalOptions):  # (a subclass, e.g. in-loop eval's, may add fields of its own)
        own = {k: v for k, v in tasks.model_dump().items() if k in EvalOptions.model_fields}
        return validate(EvalOptions, {**own, **fields}, "eval options")
    data = {"tasks": tasks, **fields} if tasks is not None else dict(fields)
    return validate(EvalOptions, data, "eval options")
