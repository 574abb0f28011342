"""Curation recipes: a YAML list of steps, validated completely before any work starts.

A recipe names each step by its type (``step: minhash_dedup``) plus that step's settings. Errors
name the key path (``steps.3.min_score``) and the allowed values. Overrides address a step by its
name (``langid.min_score=0.5``), by index (``steps.2.min_score=0.5``), or a top-level key (``seed=1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from olmoflow.config import Config, ConfigError, apply_overrides, config_hash, parse_overrides, read_yaml
from olmoflow.data.steps import STEPS, Step, StepConfig, step_class

DEFAULT_RECIPE = "default_recipe.yaml"


class RecipeHeader(Config):
    name: str = "custom"
    seed: int = 0
    max_doc_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    files_per_shard: int = Field(default=256, ge=1)
    steps: list[dict[str, Any]]


@dataclass
class Recipe:
    """A validated recipe: header fields plus typed step configs (enabled steps only)."""

    name: str
    seed: int
    max_doc_bytes: int
    files_per_shard: int
    steps: list[StepConfig]
    source: str = "recipe"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "seed": self.seed, "max_doc_bytes": self.max_doc_bytes,
            "files_per_shard": self.files_per_shard,
            "steps": [s.model_dump(mode="json") for s in self.steps],
        }

    def hash(self) -> str:
        return config_hash(self.to_dict())

    def build(self) -> list[Step]:
        """Instantiate the steps (cheap: heavy resources load lazily in ``Step.setup``)."""
        return [step_class(c.step)(c) for c in self.steps]


def _errors(e: ValidationError, prefix: str, source: str) -> str:
    parts = []
    for err in e.errors():
        key = ".".join([prefix, *[str(p) for p in err["loc"]]]) if err["loc"] else prefix
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{source}: key '{key}': {msg}")
    return "; ".join(parts)


def _apply_step_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Route ``stepname.key=value`` overrides into the steps list; the rest go to the top level."""
    steps = data.get("steps")
    names = {}
    if isinstance(steps, list):
        for i, s in enumerate(steps):
            if isinstance(s, dict):
                names[str(s.get("name") or s.get("step"))] = i
    rest = []
    for item, (path, value) in zip(overrides, parse_overrides(overrides)):
        if len(path) >= 2 and path[0] in names:
            node = steps[names[path[0]]]  # type: ignore[index]
            for part in path[1:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        elif len(path) >= 3 and path[0] == "steps" and path[1].isdigit() and isinstance(steps, list):
            idx = int(path[1])
            if idx >= len(steps):
                raise ConfigError(f"override {item!r}: recipe has only {len(steps)} steps")
            node = steps[idx]
            for part in path[2:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        else:
            rest.append(item)
    return apply_overrides(data, rest)


def default_recipe_path() -> Path:
    return Path(str(resources.files("olmoflow.data").joinpath(DEFAULT_RECIPE)))


def load_recipe(
    path: str | Path | dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    decontaminate: list[str] | tuple[str, ...] = (),
) -> Recipe:
    """Load and fully validate a recipe (default: the packaged Dolma-3-style recipe).

    ``decontaminate`` eval files are given to the recipe's ``decontaminate`` step (one is added
    after ``normalize`` if the recipe has none).
    """
    if isinstance(path, dict):
        data, source = dict(path), "recipe"
    else:
        p = Path(path) if path is not None else default_recipe_path()
        data, source = read_yaml(p), str(p)
    import copy

    data = copy.deepcopy(data)
    data = _apply_step_overrides(data, list(overrides))
    try:
        header = RecipeHeader.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_errors(e, "", source).replace("key '.", "key '")) from None
    configs: list[StepConfig] = []
    seen = set()
    for i, raw in enumerate(header.steps):
        key = f"steps.{i}"
        if not isinstance(raw, dict) or "step" not in raw:
            raise ConfigError(f"{source}: key '{key}.step': missing (each step needs 'step: <type>')")
        kind = raw["step"]
        if kind not in STEPS:
            raise ConfigError(
                f"{source}: key '{key}.step': unknown step {kind!r} (known: {', '.join(sorted(STEPS))})"
            )
        cls = step_class(kind).Config
        try:
            cfg = cls.model_validate(raw)
        except ValidationError as e:
            raise ConfigError(_errors(e, key, source)) from None
        name = cfg.name or cfg.step
        if name in seen:
            raise ConfigError(f"{source}: key '{key}.name': duplicate step name {name!r} (set a unique 'name')")
        seen.add(name)
        if cfg.enabled:
            configs.append(cfg)
    if decontaminate:
        files = [str(Path(f)) for f in decontaminate]
        for f in files:
            if not Path(f).is_file():
                raise ConfigError(f"decontamination file not found: {f}")
        decon = [c for c in configs if c.step == "decontaminate"]
        if decon:
            for c in decon:
                c.eval_files = list(c.eval_files) + files  # type: ignore[attr-defined]
        else:
            cfg = step_class("decontaminate").Config.model_validate({"step": "decontaminate", "eval_files": files})
            at = next((i + 1 for i, c in enumerate(configs) if c.step == "normalize"), 0)
            configs.insert(at, cfg)
    return Recipe(header.name, header.seed, header.max_doc_bytes, header.files_per_shard, configs, source)
