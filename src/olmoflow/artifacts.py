"""What marks a directory as a flow artifact, readable by any package without importing the flow.

An artifact directory holds ``manifest.json`` (stage, config, inputs, id, ...) and, written last,
``COMPLETE`` (its id). ``olmoflow.flow.store`` writes them; eval (provenance of a scored model)
and the flow runner and lineage read them through the functions here, so eval never imports flow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError

__all__ = ["COMPLETE", "MANIFEST", "artifact_of", "find_artifact_root", "is_complete", "read_manifest"]

MANIFEST = "manifest.json"
COMPLETE = "COMPLETE"


def read_manifest(artifact_dir: str | Path) -> dict[str, Any]:
    """The ``manifest.json`` of an artifact directory (OlmoflowError if absent or corrupt)."""
    path = Path(artifact_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OlmoflowError(f"{artifact_dir}: not an artifact (no {MANIFEST})") from None
    except json.JSONDecodeError as e:
        raise OlmoflowError(f"{path}: corrupt manifest ({e})") from None


def is_complete(artifact_dir: str | Path) -> bool:
    """True if the directory is a finished artifact (manifest written and COMPLETE marker present)."""
    return (Path(artifact_dir) / COMPLETE).is_file() and (Path(artifact_dir) / MANIFEST).is_file()


def find_artifact_root(path: str | Path) -> tuple[Path, str] | None:
    """If ``path`` lies inside a complete artifact, return (artifact dir, sub path), else None."""
    path = Path(path).resolve()
    for cand in [path, *path.parents]:
        if is_complete(cand):
            return cand, path.relative_to(cand).as_posix() if cand != path else ""
    return None


def artifact_of(path: str | Path) -> dict[str, Any] | None:
    """``{artifact_id, artifact_dir, artifact_subpath, stage, config_hash}`` of the complete
    artifact that ``path`` lies in (e.g. a checkpoint inside a pretrain run), else None."""
    found = find_artifact_root(path)
    if found is None:
        return None
    root, sub = found
    man = read_manifest(root)
    return {"artifact_id": man.get("id"), "artifact_dir": str(root), "artifact_subpath": sub,
            "stage": man.get("stage"), "config_hash": man.get("config_hash")}
