"""Stage types: one registry dict, filled by the ``@register_stage("type")`` decorator.

A stage type is a function ``run(config, inputs, out_dir, ctx) -> metrics`` that reads input
artifacts (paths), writes its output artifact into ``out_dir`` and returns a dict of metrics. The
built-in types live one per module in ``olmoflow.flow.stages``; each wraps the real stage function
of its package and imports that package only when the stage runs, so a flow that does not use a
stage never needs its extras. Flow files can add their own types with ``plugins:``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError

__all__ = [
    "STAGES",
    "ResumePoint",
    "StageContext",
    "StageFn",
    "StageType",
    "get_stage_type",
    "load_builtin_stages",
    "load_plugins",
    "register_stage",
]


@dataclass(frozen=True)
class ResumePoint:
    """Where an interrupted run of a resumable stage continues: its latest complete checkpoint."""

    step: int
    """The checkpoint's step (training continues with step + 1)."""
    total: int | None
    """The run's total steps, when known (for the "resuming from step N (of M)" line)."""
    checkpoint: Path


@dataclass
class StageContext:
    """What a running stage may know about the run besides its config and inputs."""

    stage: str
    """Name of the stage in the flow file (e.g. ``pretrain``)."""
    seed: int
    """The flow seed; stages derive all randomness from it."""
    workdir: Path
    quiet: bool = False
    """Stages must not draw progress bars when set."""
    fork_origin: dict[str, Any] | None = None
    """Where a forked flow started from (``olmoflow fork``), else None."""
    log_path: Path | None = None
    resume_from: ResumePoint | None = None
    """Set when ``out_dir`` holds this stage's interrupted earlier run (same cache key) and the stage
    type has a ``resume_point`` hook: continue from that checkpoint instead of starting over."""
    extra: dict[str, Any] = field(default_factory=dict)

    def log(self, event: str, **fields: Any) -> None:
        """Append one JSON line ``{time, stage, event, ...}`` to the run's ``log.jsonl``."""
        if self.log_path is None:
            return
        rec = {"time": round(time.time(), 3), "stage": self.stage, "event": event, **fields}
        with open(self.log_path, "a") as f:
            f.write(json.dumps(rec, default=str) + "\n")


StageFn = Callable[[dict, dict, Path, StageContext], "dict | None"]


@dataclass
class StageType:
    """A registered stage type."""

    name: str
    fn: StageFn | None
    description: str = ""
    planned: bool = False
    """Declared but not implemented: dry-runs plan it, real runs refuse with a clear message."""
    fork_input: str | None = None
    """The input that ``olmoflow fork`` points at a checkpoint (e.g. ``init_from``)."""
    volatile_files: tuple[str, ...] = ()
    """Glob patterns (relative to the artifact) left out of the content hash (timings, logs)."""
    volatile_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Glob of JSON / JSON-lines files -> top-level keys left out of the hash (e.g. tokens_per_s)."""
    estimate: Callable[[dict], dict] | None = None
    """``config -> {"tokens": D, "params": N, ...}`` for the dry-run plan (GPU-hours = 6·N·D)."""
    resolve_config: Callable[[dict], dict] | None = None
    """Validate a config and fill defaults (fails before anything runs); identity when None."""
    resume_point: Callable[[dict, Path], ResumePoint | None] | None = None
    """``(config, leftover out_dir) -> latest complete checkpoint or None`` for stage types that can
    continue an interrupted run (training); None: an interrupted run is wiped and redone."""


STAGES: dict[str, StageType] = {}


def register_stage(
    name: str,
    *,
    description: str = "",
    fork_input: str | None = None,
    volatile_files: tuple[str, ...] | list[str] = (),
    volatile_keys: dict[str, tuple[str, ...]] | None = None,
    estimate: Callable[[dict], dict] | None = None,
    resolve_config: Callable[[dict], dict] | None = None,
    resume_point: Callable[[dict, Path], ResumePoint | None] | None = None,
) -> Callable[[StageFn], StageFn]:
    """Decorator registering ``fn`` as stage type ``name`` (re-registering replaces it)."""

    def deco(fn: StageFn) -> StageFn:
        STAGES[name] = StageType(
            name=name,
            fn=fn,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            fork_input=fork_input,
            volatile_files=tuple(volatile_files),
            volatile_keys=dict(volatile_keys or {}),
            estimate=estimate,
            resolve_config=resolve_config,
            resume_point=resume_point,
        )
        return fn

    return deco


def register_planned(name: str, description: str, estimate: Callable[[dict], dict] | None = None,
                     fork_input: str | None = None) -> None:
    """Declare a stage type that flows may use in plans but that cannot run yet."""
    STAGES[name] = StageType(name=name, fn=None, description=description, planned=True,
                             estimate=estimate, fork_input=fork_input)


def load_builtin_stages() -> None:
    """Import ``olmoflow.flow.stages`` (cheap: wrappers import their packages lazily)."""
    importlib.import_module("olmoflow.flow.stages")


def load_plugins(plugins: list[str], base_dir: Path) -> None:
    """Import plugin modules that register extra stage types.

    Each entry is a module name (``mypkg.stages``) or a ``.py`` path relative to ``base_dir``.
    """
    for i, spec in enumerate(plugins):
        if spec.endswith(".py"):
            path = Path(spec)
            if not path.is_absolute():
                path = base_dir / path
            if not path.is_file():
                raise OlmoflowError(f"plugin file not found: {path}")
            mod_name = f"olmoflow_plugin_{abs(hash(str(path.resolve())))}_{i}"
            if mod_name in sys.modules:
                continue
            s = importlib.util.spec_from_file_location(mod_name, path)
            assert s is not None and s.loader is not None
            mod = importlib.util.module_from_spec(s)
            sys.modules[mod_name] = mod
            s.loader.exec_module(mod)
        else:
            try:
                importlib.import_module(spec)
            except ImportError as e:
                raise OlmoflowError(f"plugin module {spec!r} could not be imported: {e}") from None


def get_stage_type(name: str) -> StageType:
    """Look up a stage type, naming the known ones when it does not exist."""
    load_builtin_stages()
    if name not in STAGES:
        known = ", ".join(sorted(STAGES))
        raise OlmoflowError(f"unknown stage type {name!r} (known: {known})")
    return STAGES[name]
