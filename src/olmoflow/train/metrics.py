"""Run logging: one JSON line per step in ``metrics.jsonl``, events in ``log.jsonl``, optional
TensorBoard, and a rich progress bar (loss, tok/s, ETA). Only rank 0 writes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["MetricsWriter", "make_progress", "read_metrics", "truncate_metrics"]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl (a torn last line, from a killed run, is ignored)."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Keep only records with ``step <= last_step`` (resuming rewinds the log to the checkpoint)."""
    p = Path(path)
    if not p.is_file():
        return
    from olmoflow.io import write_jsonl

    write_jsonl(p, [r for r in read_metrics(p) if r.get("step", 0) <= last_step])


class MetricsWriter:
    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = False):
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._tb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")
        self._log = open(self.run_dir / "log.jsonl", "a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except ImportError:
                self.event("warning", message="tensorboard requested but not installed; skipping")

    def rewind(self, last_step: int) -> None:
        """Drop metrics (and in-loop eval records, ``eval.jsonl``) after ``last_step`` (on resume)
        and keep appending after it: the steps after the checkpoint run, and are logged, again."""
        if not self.enabled:
            return
        self._metrics.close()
        truncate_metrics(self.run_dir / "metrics.jsonl", last_step)
        truncate_metrics(self.run_dir / "eval.jsonl", last_step)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")

    def step(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float):
                    self._tb.add_scalar(f"train/{k}", v, record["step"])

    def event(self, kind: str, **fields: Any) -> None:
        if not self.enabled:
            return
        self._log.write(json.dumps({"time": time.time(), "event": kind, **fields}) + "\n")
        self._log.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self._metrics.close()
        self._log.close()
        if self._tb is not None:
            self._tb.close()


def make_progress(disable: bool):
    """The training loop's bar: step, loss, tokens/s and ETA (the objective's name as description)."""
    from olmoflow.progress import progress_bar

    return progress_bar(quiet=disable, fields=("loss {task.fields[loss]}", "{task.fields[tok_s]} tok/s"), stderr=False)
