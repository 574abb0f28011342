"""Helpers shared by the built-in stage wrappers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from olmoflow.artifacts import model_dir  # noqa: F401 (one rule for "the model in an artifact")
from olmoflow.errors import OlmoflowError


def need(inputs: dict[str, Path], name: str, stage: str, what: str) -> Path:
    """The input ``name`` or a one-line error saying what the stage expects there."""
    p = inputs.get(name)
    if p is None:
        raise OlmoflowError(f"stage {stage!r}: needs an input {name!r} ({what})")
    return Path(p)


def files_in(path: Path) -> list[str]:
    """``path`` itself if a file, else every document file under it (sorted, as ``olmoflow.data``
    lists them: recursively, any Dolma suffix such as ``.json.gz`` or ``.parquet``; only
    ``documents/`` of a curate output), leaving out the ``manifest.json`` of an artifact dir."""
    from olmoflow.data.documents import list_doc_files

    path = Path(path)
    if path.is_file():
        return [str(path)]
    return [str(p) for p in list_doc_files(path) if p != path / "manifest.json"]


def plain(result: Any) -> dict[str, Any]:
    """A stage function's return value as a flat-ish metrics dict."""
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    if hasattr(result, "model_dump"):
        return result.model_dump(mode="json")
    return {"result": str(result)}
