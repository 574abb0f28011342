"""Flow files: parse and validate the YAML that lists a flow's stages.

```yaml
name: tiny
seed: 0
stages:
  corpus:   {type: demo_corpus, config: {n_docs: 400}}
  curate:   {type: curate, inputs: {docs: "${stages.corpus}"}}
  pretrain: {type: pretrain, inputs: {data: "${stages.mix}", init_from: "${stages.other}/checkpoints/step100"}}
```

An input is ``${stages.NAME}`` (the output artifact of stage NAME), optionally followed by a
``/sub/path`` inside it, the mapping form ``{stage: NAME, path: sub/path}``, or anything else: an
external path (relative to the flow file's directory). ``scheme://`` strings are kept as
references that a dry-run can print but a real run cannot read.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olmoflow.config import ConfigError, parse_overrides, read_yaml, set_path

__all__ = ["FlowSpec", "InputRef", "StageSpec", "load_flow", "parse_flow", "toposort"]

_TOP_KEYS = {"name", "description", "seed", "plugins", "fork", "stages", "variants"}
_STAGE_KEYS = {"type", "config", "inputs", "description"}
_REF = re.compile(r"^\$\{stages\.([A-Za-z0-9_\-]+)\}(?:/(.*))?$")
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class InputRef:
    """One stage input: another stage's artifact (``stage``) or an external ``path``."""

    stage: str | None = None
    subpath: str = ""
    path: str | None = None
    """External path as written (resolved against the flow file's directory when relative)."""

    @property
    def is_uri(self) -> bool:
        return self.path is not None and "://" in self.path

    def describe(self) -> str:
        if self.stage is not None:
            return "${stages." + self.stage + "}" + (f"/{self.subpath}" if self.subpath else "")
        return str(self.path)


@dataclass
class StageSpec:
    name: str
    type: str
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, InputRef] = field(default_factory=dict)
    description: str = ""

    @property
    def deps(self) -> list[str]:
        """Names of the stages this stage reads from, in input order, without repeats."""
        return list(dict.fromkeys(r.stage for r in self.inputs.values() if r.stage is not None))


@dataclass
class FlowSpec:
    name: str
    seed: int
    stages: dict[str, StageSpec]
    base_dir: Path
    source: str = "<flow>"
    description: str = ""
    plugins: list[str] = field(default_factory=list)
    fork: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    #: the named variant applied at load (``variants: {NAME: [overrides]}`` in the flow file)
    variant: str | None = None


def _parse_input(value: Any, where: str) -> InputRef:
    if isinstance(value, dict):
        extra = set(value) - {"stage", "path"}
        if "stage" not in value or extra:
            raise ConfigError(f"{where}: an input mapping needs 'stage' (and optional 'path'), got {sorted(value)}")
        return InputRef(stage=str(value["stage"]), subpath=str(value.get("path") or "").strip("/"))
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: an input must be '${{stages.NAME}}', {{stage: NAME}} or a path, got {value!r}")
    m = _REF.match(value.strip())
    if m:
        return InputRef(stage=m.group(1), subpath=(m.group(2) or "").strip("/"))
    if value.startswith("${"):
        raise ConfigError(f"{where}: cannot parse reference {value!r} (expected '${{stages.NAME}}[/sub/path]')")
    return InputRef(path=value)


def variant_overrides(data: dict[str, Any], variant: str | None, source: str) -> list[str]:
    """The overrides a named variant stands for (``variants: {quick: ["pretrain.steps=20", ...]}``):
    a smaller or different run of the same flow, applied before the command line's overrides."""
    variants = data.get("variants") or {}
    if not isinstance(variants, dict) or not all(
            isinstance(v, list) and all(isinstance(o, str) for o in v) for v in variants.values()):
        raise ConfigError(f"{source}: key 'variants': expected a mapping of name -> list of 'stage.key=value'")
    if variant is None:
        return []
    if variant not in variants:
        raise ConfigError(f"{source}: no variant {variant!r} (variants: {', '.join(variants) or 'none'})")
    return list(variants[variant])


def parse_flow(data: dict[str, Any], source: str = "<flow>", base_dir: Path | None = None,
               overrides: list[str] | None = None, variant: str | None = None) -> FlowSpec:
    """Validate a flow mapping (after applying a variant's and then the given ``stage.key=value``
    overrides) into a FlowSpec."""
    overrides = variant_overrides(data, variant, source) + list(overrides or [])
    data = apply_flow_overrides(data, overrides, source)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
    stages_raw = data.get("stages")
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise ConfigError(f"{source}: 'stages' must be a non-empty mapping of name -> {{type, config, inputs}}")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{source}: key 'seed': expected an integer, got {seed!r}")
    plugins = data.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError(f"{source}: key 'plugins': expected a list of module names or .py paths")
    fork = data.get("fork") or {}
    if not isinstance(fork, dict) or set(fork) - {"stage", "input"}:
        raise ConfigError(f"{source}: key 'fork': expected {{stage: NAME, input: INPUT_NAME}}")

    stages: dict[str, StageSpec] = {}
    for name, body in stages_raw.items():
        where = f"{source}: stages.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: stage names may use letters, digits, '_' and '-' only")
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: expected a mapping with 'type', 'config', 'inputs'")
        bad = set(body) - _STAGE_KEYS
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {sorted(bad)} (allowed: {sorted(_STAGE_KEYS)})")
        if "type" not in body:
            raise ConfigError(f"{where}.type: required (a stage type name)")
        if not isinstance(body["type"], str):
            raise ConfigError(f"{where}.type: expected a stage type name (a string), got {body['type']!r}")
        config = body.get("config") or {}
        if not isinstance(config, dict):
            raise ConfigError(f"{where}.config: expected a mapping")
        inputs_raw = body.get("inputs") or {}
        if not isinstance(inputs_raw, dict):
            raise ConfigError(f"{where}.inputs: expected a mapping of input name -> reference")
        inputs = {str(k): _parse_input(v, f"{where}.inputs.{k}") for k, v in inputs_raw.items()}
        stages[name] = StageSpec(name=name, type=body["type"], config=copy.deepcopy(config),
                                 inputs=inputs, description=str(body.get("description") or ""))
    for st in stages.values():
        for k, ref in st.inputs.items():
            if ref.stage is not None and ref.stage not in stages:
                raise ConfigError(f"{source}: stages.{st.name}.inputs.{k}: unknown stage {ref.stage!r} "
                                  f"(stages: {', '.join(stages)})")
    if fork and fork.get("stage") not in stages:
        raise ConfigError(f"{source}: fork.stage: unknown stage {fork.get('stage')!r}")
    spec = FlowSpec(name=str(data.get("name") or Path(source).stem), seed=seed, stages=stages,
                    base_dir=base_dir or Path.cwd(), source=source,
                    description=str(data.get("description") or ""), plugins=list(plugins),
                    fork={str(k): str(v) for k, v in fork.items()}, raw=data, variant=variant)
    toposort(spec)  # cycle check up front
    return spec


def apply_flow_overrides(data: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Apply CLI overrides: ``seed=N``, ``STAGE.key.path=v`` (config), ``STAGE.inputs.X=ref``."""
    data = copy.deepcopy(data)
    stages = data.get("stages") or {}
    if isinstance(stages, dict):  # a YAML anchor shared by two stages must not carry one's override to the other
        stages = data["stages"] = {k: copy.deepcopy(v) for k, v in stages.items()}
    for path, value in parse_overrides(overrides):
        if path == ["seed"] or path == ["name"]:
            data[path[0]] = value
            continue
        head = path[0]
        if head not in stages:
            raise ConfigError(f"override {'.'.join(path)}={value!r}: no stage {head!r} in {source} "
                              f"(stages: {', '.join(stages)}; or use seed=N)")
        if len(path) < 2:
            raise ConfigError(f"override {head}={value!r}: use {head}.KEY=VALUE")
        body = stages[head]
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: stages.{head}: expected a mapping with 'type', 'config', 'inputs'")
        if not isinstance(body.get("config") or {}, dict):
            raise ConfigError(f"{source}: stages.{head}.config: expected a mapping")
        if path[1] in ("inputs", "type") and len(path) >= (3 if path[1] == "inputs" else 2):
            node, keys = body, path[1:]
        else:
            node, keys = body.setdefault("config", {}) or {}, path[1:]
            body["config"] = node
        set_path(node, keys, value, label=path)
    return data


def load_flow(path: str | Path, overrides: list[str] | None = None, variant: str | None = None) -> FlowSpec:
    """Read and validate a flow file; relative external inputs resolve against its directory."""
    path = Path(path)
    data = read_yaml(path)  # also refuses duplicate keys (a copy-pasted stage would vanish)
    return parse_flow(data, source=str(path), base_dir=path.resolve().parent, overrides=overrides,
                      variant=variant)


def toposort(spec: FlowSpec) -> list[str]:
    """Stage names in dependency order (file order among ready stages); clear error on a cycle."""
    indeg = {n: len(s.deps) for n, s in spec.stages.items()}
    users: dict[str, list[str]] = {n: [] for n in spec.stages}
    for n, s in spec.stages.items():
        for d in s.deps:
            users[d].append(n)
    order: list[str] = []
    ready = [n for n in spec.stages if indeg[n] == 0]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for u in users[n]:
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
        ready.sort(key=list(spec.stages).index)
    if len(order) != len(spec.stages):
        left = [n for n in spec.stages if n not in order]
        cycle = _find_cycle(spec, left)
        raise ConfigError(f"{spec.source}: stages form a cycle: {' -> '.join(cycle)}")
    return order


def _find_cycle(spec: FlowSpec, nodes: list[str]) -> list[str]:
    """One concrete cycle among ``nodes`` (for the error message)."""
    path: list[str] = []
    seen: set[str] = set()

    def visit(n: str) -> list[str] | None:
        if n in path:
            return path[path.index(n):] + [n]
        if n in seen:
            return None
        seen.add(n)
        path.append(n)
        for d in spec.stages[n].deps:
            if d in nodes and (c := visit(d)):
                return c
        path.pop()
        return None

    for n in nodes:
        if c := visit(n):
            return list(reversed(c))
    return nodes


def descendants(spec: FlowSpec, name: str) -> set[str]:
    """Every stage that reads (directly or not) from ``name``."""
    out: set[str] = set()
    frontier = [name]
    while frontier:
        cur = frontier.pop()
        for n, s in spec.stages.items():
            if cur in s.deps and n not in out:
                out.add(n)
                frontier.append(n)
    return out
