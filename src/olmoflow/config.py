"""Typed configs from YAML with dotted ``key.path=value`` overrides.

Every stage config is a pydantic model with ``extra="forbid"`` so a misspelt key fails at load
time with its full key path, never deep inside a run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from olmoflow.errors import OlmoflowError

__all__ = [
    "Config",
    "ConfigError",
    "apply_overrides",
    "config_hash",
    "load_config",
    "parse_overrides",
    "read_yaml",
]


class ConfigError(OlmoflowError, ValueError):
    """A config could not be loaded; the message names the file and key path."""


class Config(BaseModel):
    """Base class for all olmoflow configs: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


C = TypeVar("C", bound=BaseModel)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file (and line) on a parse error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """Parse ``a.b.c=value`` strings; values are parsed as YAML scalars/lists (``lr=3e-4``, ``x=[1,2]``)."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and raw.strip()[:1] not in {"'", '"'}:  # YAML 1.1 reads "3e-4" as a string; users mean a number
            try:
                value = float(value) if value.strip().lower() not in {"nan", "inf", "-inf"} else value
            except ValueError:
                pass
        out.append((key.split("."), value))
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied (intermediate mappings are created)."""
    data = json.loads(json.dumps(data, default=str)) if data else {}
    for path, value in parse_overrides(overrides):
        set_path(data, path, value)
    return data


def set_path(node: dict[str, Any], keys: list[str], value: Any, label: list[str] | None = None) -> None:
    """Set ``node[k0][k1]...[kn] = value``, creating mappings on the way; ``label`` names the full
    override path in errors when ``keys`` is only its tail."""
    label = label or keys
    offset = len(label) - len(keys)
    for i, part in enumerate(keys[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {'.'.join(label)}: {'.'.join(label[: offset + i + 1])} is not a mapping")
        node = nxt
    node[keys[-1]] = value


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: key '{key}': {msg}")
    return "; ".join(lines)


def validate(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Validate ``data`` into ``cls``, raising ConfigError naming every bad key path."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def load_config(
    cls: type[C],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> C:
    """Load ``cls`` from an optional YAML file on top of ``base``, then apply dotted overrides."""
    data: dict[str, Any] = dict(base or {})
    source = "config"
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
        source = str(path)
    data = apply_overrides(data, overrides or [])
    return validate(cls, data, source)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_hash(cfg: BaseModel | dict[str, Any]) -> str:
    """Stable sha256 (hex, 16 chars) of a resolved config."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
