"""Typed configs from YAML with dotted ``key.path=value`` overrides.

Every stage config is a pydantic model with ``extra="forbid"`` so a misspelt key fails at load
time with its full key path, never deep inside a run.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from olmoflow.errors import OlmoflowError
from olmoflow.io import sha256_json

__all__ = [
    "Config",
    "ConfigError",
    "apply_overrides",
    "config_from_args",
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
    """Read a YAML mapping, naming the file (and line) on a parse error or a duplicate key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 ({e.reason})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_duplicate_keys(root, path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def _check_duplicate_keys(root: yaml.Node | None, path: Path) -> None:
    """Fail on a key given twice in one mapping: YAML would silently keep the last value."""
    seen: set[int] = set()

    def walk(node: Any, where: list[str]) -> None:
        if id(node) in seen:  # an alias of a node already checked
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in node.value:
                key = str(k.value) if isinstance(k, yaml.ScalarNode) else None
                if key is not None and key != "<<":
                    if key in first:
                        raise ConfigError(f"{path}:{k.start_mark.line + 1}: {'.'.join([*where, key])}: "
                                          f"duplicate key (first at line {first[key]})")
                    first[key] = k.start_mark.line + 1
                walk(v, [*where, key or "?"])
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, [*where, str(i)])

    walk(root, [])


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
        out.append((key.split("."), _parse_value(raw)))
    return out


_NULLS = {"", "~", "null", "Null", "NULL"}


def _parse_value(raw: str) -> Any:
    """A command-line value: a YAML scalar or flow collection (``[1, 2]``, ``{k: v}``); text that YAML
    would read as block syntax (``Q: hi`` as a mapping, ``- a`` as a list), cut at a comment
    (``v1 #rc``) or as a base-60 number (``1:30``) stays the string as typed."""
    if raw == "":
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    s = raw.strip()
    if s[:1] not in {"[", "{", "'", '"', "!", "&", "*", "|", ">"}:  # a plain scalar was meant
        if (isinstance(value, dict | list) or (value is None and s not in _NULLS)
                or (isinstance(value, str) and value != s)
                or (isinstance(value, int | float) and not isinstance(value, bool) and ":" in s)):
            return raw
    if isinstance(value, str) and s[:1] not in {"'", '"', "!"}:  # YAML 1.1 reads "3e-4" as a string; users mean a number
        try:
            value = float(value) if value.strip().lower() not in {"nan", "inf", "-inf"} else value
        except ValueError:
            pass
    return value


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


def _format_validation_error(err: ValidationError, source: str, cls: type[BaseModel] | None = None) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + _key_hint(cls, e["loc"])
        lines.append(f"{source}: key '{key}': {msg}")
    return "; ".join(lines)


def _key_hint(cls: type[BaseModel] | None, loc: tuple) -> str:
    """`` (did you mean 'x'?)`` for a misspelt key, else `` (allowed: ...)``; "" if unknown."""
    model = _model_at(cls, loc[:-1]) if cls is not None else None
    if model is None or not loc:
        return ""
    names = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), names, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(names)})"


def _model_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The config class that holds the keys at ``loc`` (through nested, optional and list fields)."""
    def model_in(tp: Any) -> type[BaseModel] | None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
        for arg in get_args(tp):
            found = model_in(arg)
            if found is not None:
                return found
        return None

    model: type[BaseModel] | None = cls
    for part in loc:
        if isinstance(part, int):  # an item of a list field: ``model`` is already the item's class
            continue
        field = model.model_fields.get(str(part)) if model is not None else None
        model = model_in(field.annotation) if field is not None else None
        if model is None:
            return None
    return model


def validate(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Validate ``data`` into ``cls``, raising ConfigError naming every bad key path."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source, cls)) from None


def load_config(
    cls: type[C],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
) -> C:
    """Load ``cls`` from an optional YAML file on top of ``base``, then command-line ``flags`` (those
    not None: a flag given on the command line beats the file), then dotted ``key=value`` overrides."""
    data: dict[str, Any] = dict(base or {})
    source = "config"
    if path is not None:
        data = _deep_merge(data, read_yaml(path))
        source = str(path)
    data.update({k: v for k, v in (flags or {}).items() if v is not None})
    data = apply_overrides(data, overrides or [])
    return validate(cls, data, source)


def config_from_args(cls: type[C], args: Any, overrides: list[str] | None = None) -> C:
    """A command's typed config: ``args.config`` (a YAML file, if the command has ``--config``), then
    every argparse flag named like a field of ``cls`` that was given (not None), then ``overrides``.
    Give flags ``default=None`` so the config class, not argparse, holds the defaults."""
    flags = {k: getattr(args, k) for k in cls.model_fields if hasattr(args, k)}
    return load_config(cls, getattr(args, "config", None), overrides, flags=flags)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_hash(cfg: BaseModel | dict[str, Any]) -> str:
    """Stable sha256 (hex, 16 chars) of a resolved config."""
    return sha256_json(cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg, 16)
