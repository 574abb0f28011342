"""Helpers shared by the built-in stage wrappers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError


def need(inputs: dict[str, Path], name: str, stage: str, what: str) -> Path:
    """The input ``name`` or a one-line error saying what the stage expects there."""
    p = inputs.get(name)
    if p is None:
        raise OlmoflowError(f"stage {stage!r}: needs an input {name!r} ({what})")
    return Path(p)


def model_dir(path: Path) -> Path:
    """A model directory from a training run artifact (its ``final/``), a checkpoint, or a model dir."""
    path = Path(path)
    if (path / "final").is_dir() and not (path / "model.safetensors").is_file():
        return path / "final"
    return path


def files_in(path: Path, suffixes: tuple[str, ...] = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json")) -> list[str]:
    """``path`` itself if a file, else the document files directly inside it (sorted)."""
    path = Path(path)
    if path.is_file():
        return [str(path)]
    return sorted(str(p) for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes))


def plain(result: Any) -> dict[str, Any]:
    """A stage function's return value as a flat-ish metrics dict."""
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="json")
    return {"result": str(result)}
