"""Stage types: one registry dict, filled by the ``@register_stage("type")`` decorator.

A stage type is a function ``run(config, inputs, out_dir, ctx) -> metrics`` that reads input
artifacts (paths), writes its output artifact into ``out_dir`` and returns a dict of metrics. Its
registry entry carries everything else the flow needs to know about it, so adding a stage type is
one file (built-ins: one module each in ``olmoflow.flow.stages``; others: a ``plugins:`` file):

- ``config``: its typed config class (a :class:`StageConfig`; validated before anything runs),
- ``report``: its sections of REPORT.md (:class:`ReportSection`),
- ``release``: which files of its artifact go into a release bundle (:class:`ReleaseFiles`),
- ``libraries``: the packages whose versions shape its output (part of the cache key),
- and hooks for the dry-run estimate, resuming, forking and volatile files.

Built-in wrappers import the package they wrap only when the stage runs (a config class that needs
one is registered as a function returning it), so a flow that does not use a stage never needs
its extras.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from olmoflow.config import Config, validate
from olmoflow.errors import OlmoflowError
from olmoflow.flow.env import OUTPUT_LIBRARIES
from olmoflow.io import append_jsonl

__all__ = [
    "STAGES",
    "ReleaseFiles",
    "ReportSection",
    "ResumePoint",
    "StageArtifact",
    "StageConfig",
    "StageContext",
    "StageFn",
    "StageType",
    "get_stage_type",
    "load_builtin_stages",
    "load_plugins",
    "refuse_runner_keys",
    "register_stage",
]

class StageConfig(Config):
    """Base of stage configs: unknown keys fail with their key path (and a did-you-mean).

    ``resolved()`` is what the runner hashes into the cache key and records in the manifest
    (defaults filled in); override it when a config expands into more (curate: the full recipe)."""

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def refuse_runner_keys(data: Any, keys: tuple[str, ...]) -> Any:
    """For a stage config's ``mode="before"`` validator: the keys the runner fills from inputs (paths,
    the artifact dir) may not be set in a flow file; the error names the input to use instead."""
    if isinstance(data, dict):
        for k in keys:
            if k in data:
                raise ValueError(f"key '{k}' is set by the runner; give it as an input instead")
    return data


@dataclass(frozen=True)
class StageArtifact:
    """A completed stage of a run, as report sections and release rules see it."""

    name: str
    """The stage's name in the flow file."""
    dir: Path
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ReportSection:
    """A section of REPORT.md that a stage type contributes.

    ``render(artifacts, workdir) -> markdown lines`` gets every completed stage of the run whose type
    uses this renderer (in flow order; plots go to ``workdir/report/``). Sections with the same
    ``title`` are one heading (e.g. curate's funnel and tokenize's token counts under "Data funnel");
    a title whose stages did not complete shows "not run". ``order`` sorts headings.
    """

    title: str
    render: Callable[[list[StageArtifact], Path], list[str]]
    order: int = 50


@dataclass(frozen=True)
class ReleaseFiles:
    """Files of a stage's artifact that go into a release bundle.

    ``src``: a glob relative to the artifact (a wildcard selects files; a plain name may also be a
    directory; ``"."`` is the whole artifact). ``dest``: where in the bundle, ``{stage}`` replaced by
    the stage name: ending in ``/``, a directory the matches go into (under their own names); else
    the new path of the one match (a directory's contents are copied there). ``mode``: ``add``
    (default); ``replace``: the destination holds one stage's files, a later stage's replace an
    earlier's (``model``: an export replaces a training stage's native weights); ``fill``: only if
    nothing is there yet. Examples: ``ReleaseFiles("final", "model", mode="replace")``,
    ``ReleaseFiles("stats.json", "data/{stage}/")``.
    """

    src: str
    dest: str
    mode: Literal["add", "replace", "fill"] = "add"

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
        append_jsonl(self.log_path, {"time": round(time.time(), 3), "stage": self.stage, "event": event, **fields})


StageFn = Callable[[Any, dict, Path, StageContext], "dict | None"]


@dataclass
class StageType:
    """A registered stage type."""

    name: str
    fn: StageFn | None
    description: str = ""
    planned: bool = False
    """Declared but not implemented: dry-runs plan it, real runs refuse with a clear message."""
    config: type[BaseModel] | Callable[[], type[BaseModel]] | None = None
    """The typed config: a StageConfig class, or a function returning it (called on first use, for a
    class that needs a heavy import); the stage function receives an instance. None: an untyped
    plugin, whose function receives the raw dict."""
    report: tuple[ReportSection, ...] = ()
    release: tuple[ReleaseFiles, ...] = ()
    libraries: tuple[str, ...] = OUTPUT_LIBRARIES
    """Packages whose versions shape the output: their versions are part of the cache key."""
    fork_input: str | None = None
    """The input that ``olmoflow fork`` points at a checkpoint (e.g. ``init_from``)."""
    volatile_files: tuple[str, ...] = ()
    """Glob patterns (relative to the artifact) left out of the content hash (timings, logs)."""
    volatile_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Glob of JSON / JSON-lines files -> top-level keys left out of the hash (e.g. tokens_per_s)."""
    estimate: Callable[[dict], dict] | None = None
    """``resolved config -> {"tokens": D, "params": N, ...}`` for the dry-run plan (GPU-hours = 6·N·D)."""
    resume_point: Callable[[Any, Path], ResumePoint | None] | None = None
    """``(config, leftover out_dir) -> latest complete checkpoint or None`` for stage types that can
    continue an interrupted run (training); None: an interrupted run is wiped and redone."""
    optional: Callable[[Any, dict[str, Path | None], Path], dict[str, str | None]] | None = None
    """``(config, input paths, workdir) -> {piece: None if available, else why not}`` for stage types
    with optional parts (evaluate's ``optional_tasks``). Which pieces are available is part of the
    cache key (installing one later makes the stage run again); missing ones are named on the
    console, in the manifest (``optional_missing``) and in REPORT.md. The stage receives the answer
    in ``ctx.extra["optional"]``."""

    def config_class(self) -> type[BaseModel] | None:
        """The config class (calling the function it was registered as, the first time)."""
        if self.config is not None and not isinstance(self.config, type):
            self.config = self.config()
        return self.config

    def resolve_config(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate a flow file's config and return it resolved (defaults filled): what is hashed
        and recorded. Raises ConfigError naming the key path (did-you-mean for a misspelt key)."""
        cls = self.config_class()
        if cls is None:
            return dict(raw)
        cfg = validate(cls, dict(raw), f"stage type {self.name!r}")
        return cfg.resolved() if isinstance(cfg, StageConfig) else cfg.model_dump(mode="json")

    def typed_config(self, resolved: dict[str, Any]) -> Any:
        """The config object the stage function receives for a resolved config (raw dict if untyped)."""
        cls = self.config_class()
        return dict(resolved) if cls is None else validate(cls, dict(resolved), f"stage type {self.name!r}")


STAGES: dict[str, StageType] = {}


def register_stage(
    name: str,
    *,
    config: type[BaseModel] | Callable[[], type[BaseModel]] | None = None,
    report: tuple[ReportSection, ...] | list[ReportSection] = (),
    release: tuple[ReleaseFiles, ...] | list[ReleaseFiles] = (),
    libraries: tuple[str, ...] | list[str] = OUTPUT_LIBRARIES,
    description: str = "",
    fork_input: str | None = None,
    volatile_files: tuple[str, ...] | list[str] = (),
    volatile_keys: dict[str, tuple[str, ...]] | None = None,
    estimate: Callable[[dict], dict] | None = None,
    resume_point: Callable[[Any, Path], ResumePoint | None] | None = None,
    optional: Callable[[Any, dict[str, Path | None], Path], dict[str, str | None]] | None = None,
) -> Callable[[StageFn], StageFn]:
    """Decorator registering ``fn`` as stage type ``name`` (re-registering replaces it)."""

    def deco(fn: StageFn) -> StageFn:
        STAGES[name] = StageType(
            name=name,
            fn=fn,
            description=description or (fn.__doc__ or "").strip().split("\n")[0],
            config=config,
            report=tuple(report),
            release=tuple(release),
            libraries=tuple(libraries),
            fork_input=fork_input,
            volatile_files=tuple(volatile_files),
            volatile_keys=dict(volatile_keys or {}),
            estimate=estimate,
            resume_point=resume_point,
            optional=optional,
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
