"""The flow runner: plan stages in dependency order, skip cached ones, run the rest.

Cache key of a stage = sha256(stage type, resolved config, input artifact ids, seed, versions of
olmoflow and of the libraries the stage type names as shaping its output). A stage
whose key has a complete artifact in the workdir is skipped; changing one stage's config changes
its key, so it reruns, and its descendants rerun only if its output content (artifact id) changed.
A training stage killed mid-run continues from its latest complete checkpoint when the flow is
re-run with the same key (see ``Runner._output_dir``); every other stage starts over.
Every event goes to ``WORKDIR/log.jsonl``; ``WORKDIR/flow.json`` records which artifact each stage
of the last run produced (the report card and release bundle read it).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import shutil
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from olmoflow.config import ConfigError
from olmoflow.errors import OlmoflowError
from olmoflow.flow import estimate as est
from olmoflow.flow.env import code_version, environment, library_versions
from olmoflow.flow.hashing import RUNNER_FILES, hash_path, hash_tree
from olmoflow.flow.registry import ResumePoint, StageContext, StageType, get_stage_type, load_plugins
from olmoflow.flow.spec import FlowSpec, InputRef, descendants, toposort
from olmoflow.flow.store import COMPLETE, ArtifactStore, find_artifact_root, read_manifest
from olmoflow.io import atomic_write_json, sha256_json
from olmoflow.progress import make_console

__all__ = ["ResolvedInput", "RunResult", "StagePlan", "StageFailed", "run_flow"]

STATE_FILE = "flow.json"
LOG_FILE = "log.jsonl"
HASH_CACHE = ".input-hashes.json"  # external input path -> (stat fingerprint, sha256)


class StageFailed(OlmoflowError):
    """A stage raised or was interrupted; nothing was marked complete."""


@dataclass
class ResolvedInput:
    name: str
    kind: str  # "artifact" | "external" | "uri" | "pending"
    path: Path | None = None
    id: str | None = None
    stage: str | None = None
    subpath: str = ""
    ref: str = ""

    def key_part(self) -> dict[str, Any]:
        """What enters the cache key: ids and sub paths, never absolute paths."""
        return {"kind": self.kind, "id": self.id, "subpath": self.subpath}

    def manifest(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "id": self.id, "ref": self.ref,
                             "path": str(self.path) if self.path else None}
        if self.stage:
            d["stage"] = self.stage
        if self.subpath:
            d["subpath"] = self.subpath
        return d


@dataclass
class StagePlan:
    name: str
    type: str
    config: dict[str, Any]
    inputs: dict[str, ResolvedInput] = field(default_factory=dict)
    key: str | None = None
    status: str = "pending"  # cached | run | planned | failed | pending
    artifact_dir: Path | None = None
    artifact_id: str | None = None
    wall_s: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=dict)
    """olmoflow's and the output-shaping libraries' versions (part of the cache key)."""
    optional: dict[str, str | None] = field(default_factory=dict)
    """The stage type's optional pieces: None if available, else why not (availability is in the key)."""


@dataclass
class RunResult:
    workdir: Path
    order: list[str]
    stages: dict[str, StagePlan]

    @property
    def executed(self) -> list[str]:
        return [n for n in self.order if self.stages[n].status == "run"]

    @property
    def cached(self) -> list[str]:
        return [n for n in self.order if self.stages[n].status == "cached"]

    def ids(self) -> dict[str, str | None]:
        return {n: self.stages[n].artifact_id for n in self.order}


def _console(quiet: bool) -> Console:
    """stdout console (``olmoflow.progress.make_console``: not cut at 80 columns when not a terminal)."""
    return make_console(quiet=quiet, highlight=False)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _jsonable(x: Any) -> Any:
    """Metrics to plain JSON (numpy / torch scalars become numbers)."""
    def default(o: Any) -> Any:
        if hasattr(o, "item"):
            try:
                return o.item()
            except (ValueError, TypeError):
                pass
        if hasattr(o, "tolist"):
            return o.tolist()
        return str(o)

    return json.loads(json.dumps(x, default=default))


class _Logger:
    def __init__(self, path: Path | None):
        self.path = path

    def __call__(self, event: str, **fields: Any) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), "event": event, **fields}, default=str) + "\n")


def _stage_type(spec: FlowSpec, name: str) -> StageType:
    """The registered type of stage ``name``; an unknown one is an error naming the file and key."""
    try:
        return get_stage_type(spec.stages[name].type)
    except OlmoflowError as e:
        raise OlmoflowError(f"{spec.source}: stages.{name}.type: {e}") from None


def _designate_fork(spec: FlowSpec, order: list[str], fork_stage: str | None) -> tuple[str, str]:
    """Which stage/input ``olmoflow fork`` points at the checkpoint."""
    name = fork_stage or spec.fork.get("stage")
    if name:
        if name not in spec.stages:
            raise OlmoflowError(f"fork: no stage {name!r} in {spec.source} (stages: {', '.join(spec.stages)})")
        inp = spec.fork.get("input") if spec.fork.get("stage") == name else None
        inp = inp or _stage_type(spec, name).fork_input
        if not inp:
            raise OlmoflowError(f"fork: stage {name!r} (type {spec.stages[name].type}) takes no checkpoint "
                                "input; set fork: {stage: NAME, input: INPUT} in the flow file")
        return name, inp
    for n in order:
        inp = _stage_type(spec, n).fork_input
        if inp:
            return n, inp
    raise OlmoflowError(f"fork: no stage in {spec.source} can start from a checkpoint "
                        "(none of its stage types has a checkpoint input)")


def apply_fork(spec: FlowSpec, origin: Path, fork_stage: str | None = None) -> dict[str, Any]:
    """Point the designated stage's checkpoint input at ``origin``; return the fork record."""
    origin = Path(origin).resolve()
    if not origin.exists():
        raise OlmoflowError(f"fork: {origin} does not exist")
    order = toposort(spec)
    name, inp = _designate_fork(spec, order, fork_stage)
    spec.stages[name].inputs[inp] = InputRef(path=str(origin))
    raw_stage = spec.raw.setdefault("stages", {}).setdefault(name, {})
    raw_stage["inputs"] = {**(raw_stage.get("inputs") or {}), inp: str(origin)}  # the resolved flow shows it
    record: dict[str, Any] = {"from": str(origin), "stage": name, "input": inp}
    root = find_artifact_root(origin)
    if root is not None:
        record["artifact_id"] = (root[0] / COMPLETE).read_text().strip()
        record["artifact_stage"] = read_manifest(root[0]).get("stage")
        record["subpath"] = root[1]
    return record


@contextlib.contextmanager
def _workdir_lock(workdir: Path):
    """One run per workdir at a time (an OS lock: released even if the process is killed)."""
    import fcntl

    f = open(workdir / ".lock", "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise OlmoflowError(f"{workdir} is in use by another olmoflow run (pid {f.read().strip() or '?'})") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield
    finally:
        f.close()


class Runner:
    """Plans and runs one flow in one workdir."""

    def __init__(self, spec: FlowSpec, workdir: Path, *, quiet: bool = False, dry_run: bool = False,
                 fork: dict[str, Any] | None = None, console: Console | None = None, force: Iterable[str] = ()):
        self.spec = spec
        self.workdir = Path(workdir).resolve()
        self.quiet = quiet
        self.dry_run = dry_run
        self.fork = fork
        self.store = ArtifactStore(self.workdir)
        self.console = console or _console(quiet)
        self.log = _Logger(None if dry_run else self.workdir / LOG_FILE)
        load_plugins(spec.plugins, spec.base_dir)
        self.order = toposort(spec)
        self.types: dict[str, StageType] = {n: _stage_type(spec, n) for n in self.order}
        self.fork_affected = (descendants(spec, fork["stage"]) | {fork["stage"]}) if fork else set()
        self.forced = forced_stages(spec, force)
        self.hash_cache: dict[str, Any] = {}
        cache_file = self.workdir / HASH_CACHE
        if cache_file.is_file():
            try:
                self.hash_cache = json.loads(cache_file.read_text())
            except json.JSONDecodeError:
                self.hash_cache = {}

    # ---- planning -------------------------------------------------------------------------
    def _resolve_config(self, name: str) -> dict[str, Any]:
        st, raw = self.types[name], copy.deepcopy(self.spec.stages[name].config)
        try:
            return _jsonable(st.resolve_config(raw))
        except OlmoflowError as e:  # (a ConfigError stays one)
            cls = ConfigError if isinstance(e, ConfigError) else OlmoflowError
            raise cls(f"{self.spec.source}: stages.{name}.config: {e}") from None

    def _resolve_input(self, name: str, inp: str, ref: InputRef, plans: dict[str, StagePlan]) -> ResolvedInput:
        r = ResolvedInput(name=inp, kind="pending", ref=ref.describe(), subpath=ref.subpath)
        if ref.stage is not None:
            up = plans[ref.stage]
            r.stage = ref.stage
            if up.artifact_dir is not None and up.artifact_id is not None:
                r.kind, r.id = "artifact", up.artifact_id
                r.path = up.artifact_dir / ref.subpath if ref.subpath else up.artifact_dir
                if not self.dry_run and not r.path.exists():
                    raise OlmoflowError(f"{self.spec.source}: stages.{name}.inputs.{inp}: {ref.describe()} -> "
                                        f"{r.path} does not exist in stage {ref.stage!r}'s output")
            return r
        assert ref.path is not None
        if ref.is_uri:
            r.kind, r.id = "uri", sha256_json(ref.path)
            return r
        p = Path(ref.path).expanduser()
        p = (p if p.is_absolute() else self.spec.base_dir / p).resolve()
        r.path = p
        if not p.exists():
            if self.dry_run:
                r.kind = "missing"
                return r
            raise OlmoflowError(f"{self.spec.source}: stages.{name}.inputs.{inp}: path not found: {p}")
        root = find_artifact_root(p)
        if root is not None:  # a path into another artifact (e.g. a checkpoint): keep the lineage
            r.kind, r.id, r.subpath = "artifact", (root[0] / COMPLETE).read_text().strip(), root[1]
            r.stage = read_manifest(root[0]).get("stage")
        else:
            r.kind, r.id = "external", hash_path(p, self.hash_cache)
        return r

    def _cache_key(self, plan: StagePlan) -> str | None:
        if any(i.kind in ("pending", "missing") for i in plan.inputs.values()):
            return None
        parts = {"type": plan.type, "config": plan.config, "seed": self.spec.seed,
                 "inputs": {k: v.key_part() for k, v in sorted(plan.inputs.items())}, "versions": plan.versions}
        if plan.optional:  # (only then: stages without optional pieces keep their keys)
            parts["optional_available"] = {k: why is None for k, why in sorted(plan.optional.items())}
        return sha256_json(parts)

    def _check_optional(self, plan: StagePlan, st: StageType) -> None:
        """Ask the stage type which optional pieces are available; name the missing ones."""
        if st.optional is None:
            return
        paths = {k: r.path for k, r in plan.inputs.items()}
        plan.optional = dict(st.optional(st.typed_config(plan.config), paths, self.workdir))
        for piece, why in plan.optional.items():
            if why is not None:
                self._say(f"stage {plan.name}: optional {piece} skipped: {why} (make it available and run again: "
                          "the stage then runs again to include it)")
                self.log("stage_optional_missing", stage=plan.name, piece=piece, reason=why)

    # ---- running --------------------------------------------------------------------------
    def run(self) -> RunResult:
        if not self.dry_run:
            for n in self.order:
                if self.types[n].planned:
                    raise OlmoflowError(f"stage {n!r}: stage type {self.types[n].name!r} is not implemented "
                                        "yet (planned); run with --dry-run to see the plan")
        plans: dict[str, StagePlan] = {}
        for n in self.order:
            st = self.types[n]
            plans[n] = StagePlan(name=n, type=self.spec.stages[n].type, config=self._resolve_config(n),
                                 versions=library_versions(st.libraries))
            try:
                plans[n].estimate = (st.estimate or est.estimate)(plans[n].config)
            except Exception:  # noqa: BLE001 - estimates are best effort
                plans[n].estimate = {}
        if self.dry_run:
            return self._dry_run(plans)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with _workdir_lock(self.workdir):
            return self._run_all(plans)

    def _run_all(self, plans: dict[str, StagePlan]) -> RunResult:
        t_run = time.time()
        self.log("run_start", flow=self.spec.name, source=self.spec.source, seed=self.spec.seed,
                 stages=self.order, fork=self.fork)
        self.console.print(f"[bold]olmoflow run[/bold] {self.spec.name}: {len(self.order)} stages, "
                           f"seed {self.spec.seed}, workdir {self.workdir}")
        state = {"flow": self.spec.name, "source": self.spec.source, "seed": self.spec.seed,
                 "started": _now(), "order": self.order, "fork": self.fork, "resolved_flow": self.spec.raw,
                 "stages": {}}
        try:
            for i, n in enumerate(self.order, 1):
                self._run_stage(i, plans[n], plans)
                state["stages"][n] = self._state_entry(plans[n])
                atomic_write_json(self.workdir / STATE_FILE, state)
        finally:
            state["ended"] = _now()
            for n in self.order:
                state["stages"].setdefault(n, self._state_entry(plans[n]))
            atomic_write_json(self.workdir / STATE_FILE, state)
        result = RunResult(self.workdir, self.order, plans)
        if self.hash_cache:
            atomic_write_json(self.workdir / HASH_CACHE, self.hash_cache, indent=1)
        self.log("run_end", executed=result.executed, cached=result.cached, wall_s=round(time.time() - t_run, 3))
        self._summary(result)
        return result

    def _state_entry(self, p: StagePlan) -> dict[str, Any]:
        return {"type": p.type, "status": p.status, "key": p.key, "id": p.artifact_id, "wall_s": p.wall_s,
                "artifact": str(p.artifact_dir.relative_to(self.workdir)) if p.artifact_dir else None}

    def _run_stage(self, i: int, plan: StagePlan, plans: dict[str, StagePlan]) -> None:
        n, st = plan.name, self.types[plan.name]
        spec = self.spec.stages[n]
        plan.inputs = {k: self._resolve_input(n, k, ref, plans) for k, ref in spec.inputs.items()}
        for k, r in plan.inputs.items():
            if r.kind == "uri":
                raise OlmoflowError(f"{self.spec.source}: stages.{n}.inputs.{k}: {r.ref} is a remote reference; "
                                    "download it and give a local path")
        self._check_optional(plan, st)
        plan.key = self._cache_key(plan)
        assert plan.key is not None
        tag = f"[{i}/{len(self.order)}] [bold]{n}[/bold] ({plan.type})"
        cached = self.store.lookup(n, plan.key)
        if cached is not None and n in self.forced:  # --force: run again; the old artifact is kept until it succeeds
            aside = self.store.set_aside(cached)
            self._say(f"stage {n}: forced to run again (--force); {self._rel(cached)} is replaced when it succeeds")
            self.log("stage_force", stage=n, key=plan.key)
            try:
                self._execute(tag, plan, st)
            except BaseException:
                self.store.restore(aside, cached)
                raise
            shutil.rmtree(aside, ignore_errors=True)
            return
        if cached is not None:
            m = read_manifest(cached)
            plan.status, plan.artifact_dir, plan.artifact_id = "cached", cached, m["id"]
            plan.metrics, plan.wall_s = m.get("metrics", {}), m.get("wall_s")
            self.log("stage_skip", stage=n, key=plan.key, artifact=m["id"])
            self.console.print(f"{tag} [green]cached[/green] {m['id'][:12]}")
            return
        self._execute(tag, plan, st)

    def _execute(self, tag: str, plan: StagePlan, st: StageType) -> None:
        """Run one stage into its output directory and mark the artifact complete."""
        n = plan.name
        out, resume = self._output_dir(plan, st)
        fork = self.fork if n in self.fork_affected else None
        ctx = StageContext(stage=n, seed=self.spec.seed, workdir=self.workdir, quiet=self.quiet,
                           fork_origin=fork, log_path=self.workdir / LOG_FILE, resume_from=resume,
                           extra={"optional": dict(plan.optional)} if plan.optional else {})
        started, t0 = _now(), time.time()
        self.log("stage_start", stage=n, type=plan.type, key=plan.key, dir=str(out),
                 resume_from_step=resume.step if resume else None)
        self.console.print(f"{tag} [yellow]running[/yellow] -> {out.relative_to(self.workdir)}")
        try:
            metrics = st.fn(st.typed_config(plan.config), {k: r.path for k, r in plan.inputs.items()}, out, ctx)
        except BaseException as e:
            tb = traceback.format_exc()
            (out / "error.txt").write_text(tb)
            plan.status = "failed"
            self.log("stage_fail", stage=n, key=plan.key, error=f"{type(e).__name__}: {e}", traceback=tb)
            if isinstance(e, KeyboardInterrupt | SystemExit):
                raise
            self.console.print(f"{tag} [red]failed[/red] after {time.time() - t0:.1f}s")
            detail = str(e) if isinstance(e, OlmoflowError) else f"{type(e).__name__}: {e}"
            raise StageFailed(f"stage {n!r} ({plan.type}) failed: {detail} (traceback: {out / 'error.txt'})") from e
        wall = time.time() - t0
        plan.metrics = _jsonable(metrics or {})
        manifest = self._manifest(plan, st, fork, started, wall, out, resume)
        self.store.complete(out, manifest)
        plan.status, plan.artifact_dir, plan.artifact_id, plan.wall_s = "run", out, manifest["id"], manifest["wall_s"]
        self.log("stage_end", stage=n, key=plan.key, artifact=manifest["id"], wall_s=manifest["wall_s"],
                 metrics=plan.metrics)
        self.console.print(f"{tag} [green]done[/green] in {wall:.1f}s -> {manifest['id'][:12]}")

    def _output_dir(self, plan: StagePlan, st: StageType) -> tuple[Path, ResumePoint | None]:
        """The stage's output directory, and the checkpoint to resume from, if any.

        A stage type with a ``resume_point`` hook (training) continues an interrupted run whose
        leftover directory records this stage's cache key and holds a complete checkpoint: a run
        killed at step 900 of 1000 loses at most the steps since its last checkpoint. A leftover of
        another key (config, inputs or seed changed) is never resumed. Every other stage starts over
        in an empty directory.
        """
        n, key = plan.name, plan.key
        assert key is not None
        if st.resume_point is None:
            return self.store.prepare(n, key), None
        record = {"stage": n, "type": plan.type, "cache_key": key}
        d = self.store.dir_for(n, key)
        for other in self.store.leftovers(n):
            if other != d:  # kept: re-running with its config resumes it; deleting it frees the space
                self._say(f"stage {n}: not resuming {self._rel(other)} (an interrupted run with another config, "
                          "inputs or seed; kept: delete it to free its space)")
        if d.is_dir():
            if self.store.leftover_record(d) != record:
                self._say(f"stage {n}: {self._rel(d)} was not written by this stage's config, inputs and seed "
                          "(its .stage.json is missing or names another key); removing it and starting from step 0")
            elif (point := st.resume_point(st.typed_config(plan.config), d)) is not None:
                (d / "error.txt").unlink(missing_ok=True)  # the previous attempt's, if it raised
                of = f" (of {point.total})" if point.total is not None else ""
                self._say(f"stage {n}: resuming from step {point.step}{of} in {self._rel(d)} "
                          f"({point.checkpoint.relative_to(d).as_posix()})")
                self.log("stage_resume", stage=n, key=key, step=point.step, total=point.total,
                         checkpoint=str(point.checkpoint))
                return d, point
            else:
                self._say(f"stage {n}: the interrupted run in {self._rel(d)} left no complete checkpoint; "
                          "starting from step 0")
        return self.store.prepare(n, key, record), None

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.workdir).as_posix()

    def _say(self, line: str) -> None:
        """One plain line (no markup, never wrapped: paths stay whole and greppable)."""
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _manifest(self, plan: StagePlan, st: StageType, fork: dict[str, Any] | None, started: str,
                  wall: float, out: Path, resume: ResumePoint | None = None) -> dict[str, Any]:
        content, files = hash_tree(out, exclude=RUNNER_FILES + ("error.txt",) + st.volatile_files,
                                   normalize={str(out): "${ARTIFACT}", str(self.workdir): "${WORKDIR}"},
                                   volatile_keys=st.volatile_keys)
        stable = {"stage": plan.name, "type": plan.type, "config": plan.config, "seed": self.spec.seed,
                  "cache_key": plan.key, "inputs": {k: v.key_part() for k, v in sorted(plan.inputs.items())},
                  "content": content}
        return {
            "format": "olmoflow-artifact-v1",
            "id": sha256_json(stable),
            "stage": plan.name,
            "type": plan.type,
            "flow": self.spec.name,
            "config": plan.config,
            "config_hash": sha256_json(plan.config, 16),
            "cache_key": plan.key,
            "seed": self.spec.seed,
            "versions": plan.versions,
            "inputs": {k: v.manifest() for k, v in plan.inputs.items()},
            "fork_origin": fork,
            "optional_missing": {k: why for k, why in plan.optional.items() if why is not None},
            # not in the id: a resumed run's artifact is the same as an uninterrupted run's
            "resumed_from_step": resume.step if resume else None,
            "metrics": plan.metrics,
            "content": {"sha256": content, "files": len(files),
                        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())},
            "code_version": code_version(),
            "started": started,
            "ended": _now(),
            "wall_s": round(wall, 3),
            "environment": environment(),
        }

    # ---- output ---------------------------------------------------------------------------
    def _summary(self, result: RunResult) -> None:
        t = Table(title=f"flow {self.spec.name}", show_lines=False)
        for col in ("stage", "type", "status", "wall s", "artifact"):
            t.add_column(col)
        for n in result.order:
            p = result.stages[n]
            t.add_row(n, p.type, p.status, f"{p.wall_s:.1f}" if p.wall_s is not None else "-",
                      (p.artifact_id or "-")[:12])
        self.console.print(t)
        self.console.print(f"{len(result.executed)} stage(s) run, {len(result.cached)} cached; "
                           f"log: {self.workdir / LOG_FILE}")

    def _dry_run(self, plans: dict[str, StagePlan]) -> RunResult:
        """Resolve what can be resolved without running anything and print the plan."""
        for n in self.order:
            p = plans[n]
            p.inputs = {k: self._resolve_input(n, k, ref, plans) for k, ref in self.spec.stages[n].inputs.items()}
            if self.types[n].planned:
                p.status = "planned"
                continue
            if not any(r.kind in ("pending", "missing") for r in p.inputs.values()):
                self._check_optional(p, self.types[n])
            p.key = self._cache_key(p)
            hit = self.store.lookup(n, p.key) if p.key else None
            if hit is not None and n not in self.forced:
                p.status, p.artifact_dir, p.artifact_id = "cached", hit, read_manifest(hit)["id"]
            else:
                p.status = "run"
        print_plan(self.console, self.spec, self.order, plans, self.types)
        return RunResult(self.workdir, self.order, plans)


def _fmt_num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suf}{unit}"
    return f"{x:.3g}{unit}"


def print_plan(console: Console, spec: FlowSpec, order: list[str], plans: dict[str, StagePlan],
               types: dict[str, StageType]) -> None:
    """The dry-run table: stage, type, inputs, status, tokens, params, estimated H100 GPU-hours."""
    t = Table(title=f"plan: {spec.name} (seed {spec.seed}) — dry run, nothing executed")
    for col in ("#", "stage", "type", "inputs", "status", "tokens", "params", "GPU-h (H100)"):
        t.add_column(col, overflow="fold")
    total = 0.0
    for i, n in enumerate(order, 1):
        p = plans[n]
        e = p.estimate or {}
        status = {"planned": "[magenta]planned (not implemented)[/magenta]", "cached": "[green]cached[/green]",
                  "run": "[yellow]would run[/yellow]"}.get(p.status, p.status)
        ins = ", ".join(f"{k}: {r.stage + ('/' + r.subpath if r.subpath else '') if r.stage else r.ref}"
                        for k, r in p.inputs.items()) or "-"
        gh = e.get("gpu_hours")
        total += gh or 0.0
        t.add_row(str(i), n, p.type, ins, status, _fmt_num(e.get("tokens")), _fmt_num(e.get("params")),
                  f"{gh:,.0f}" if gh is not None else "-")
    console.print(t)
    console.print(f"estimated total: {total:,.0f} H100 GPU-hours "
                  f"(6·N·D / ({est.H100_BF16_FLOPS / 1e12:.0f} TFLOP/s bf16 × MFU {est.MFU}))")
    missing = [f"{n}.{k}: {r.path}" for n in order for k, r in plans[n].inputs.items() if r.kind == "missing"]
    if missing:
        console.print("[yellow]inputs not found locally:[/yellow] " + "; ".join(missing))


def forced_stages(spec: FlowSpec, force: Iterable[str]) -> set[str]:
    """The stages ``--force STAGE`` runs again: each named stage and every stage reading from it."""
    out: set[str] = set()
    for name in force:
        if name not in spec.stages:
            raise OlmoflowError(f"--force {name}: no stage {name!r} in {spec.source} (stages: {', '.join(spec.stages)})")
        out |= {name} | descendants(spec, name)
    return out


def run_flow(spec: FlowSpec, workdir: Path, *, quiet: bool = False, dry_run: bool = False,
             fork_from: Path | None = None, fork_stage: str | None = None,
             console: Console | None = None, force: Iterable[str] = ()) -> RunResult:
    """Run (or with ``dry_run`` only plan) ``spec`` in ``workdir``; see the module docstring.
    ``force``: stages to run again although cached, with their dependents (``olmoflow run --force``)."""
    load_plugins(spec.plugins, spec.base_dir)
    fork = apply_fork(spec, fork_from, fork_stage) if fork_from is not None else None
    return Runner(spec, workdir, quiet=quiet, dry_run=dry_run, fork=fork, console=console, force=force).run()
