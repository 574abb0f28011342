"""The artifact store: ``WORKDIR/artifacts/<stage>-<cache key>/`` directories with manifests.

A stage writes straight into its final directory; the runner then writes ``manifest.json`` and,
last, an atomic ``COMPLETE`` marker holding the artifact id. Only directories with the marker
count as artifacts, so a stage that fails or is killed leaves nothing marked complete, and the next
run wipes the leftover directory and redoes it. (Writing in place rather than renaming a temp
directory keeps any paths a stage records inside its output valid.)

Exception: for a resumable stage type (training) the runner writes ``.stage.json`` (stage, type,
full cache key) into the directory when the stage starts; a later run keeps a leftover whose record
matches the stage's key and lets the stage continue from its checkpoints. The record is removed
once the artifact is complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from olmoflow.artifacts import (
    COMPLETE,
    MANIFEST,
    find_artifact,
    find_artifact_root,
    is_complete,
    read_manifest,
)
from olmoflow.errors import OlmoflowError
from olmoflow.io import atomic_write_json, atomic_write_text

__all__ = ["COMPLETE", "MANIFEST", "ArtifactStore", "find_artifact_root", "is_complete", "read_manifest"]

STAGE_RECORD = ".stage.json"  # in an unfinished dir of a resumable stage: which stage run writes it
KEY_LEN = 16


class ArtifactStore:
    """Artifacts of one workdir, addressable by (stage, cache key) or by artifact id (prefix)."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.root = self.workdir / "artifacts"

    def dir_for(self, stage: str, key: str) -> Path:
        return self.root / f"{stage}-{key[:KEY_LEN]}"

    def lookup(self, stage: str, key: str) -> Path | None:
        """The complete artifact cached under this key, or None."""
        d = self.dir_for(stage, key)
        return d if is_complete(d) else None

    def prepare(self, stage: str, key: str, record: dict[str, Any] | None = None) -> Path:
        """A fresh, empty output directory for a stage about to run (wipes an incomplete leftover).

        ``record`` (resumable stages: stage, type, cache key) is written to ``.stage.json`` so that a
        later run can tell whether a leftover of this directory is its own interrupted run.
        """
        d = self.dir_for(stage, key)
        if d.exists():
            if is_complete(d):
                raise OlmoflowError(f"{d}: already complete; refusing to overwrite")
            shutil.rmtree(d)
        d.mkdir(parents=True)
        if record is not None:
            atomic_write_json(d / STAGE_RECORD, record, indent=None)
        return d

    def set_aside(self, artifact_dir: Path) -> Path:
        """Move a complete artifact out of the way (``artifacts/.replaced-<name>``) before its stage is
        forced to run again; :meth:`restore` puts it back if that run fails."""
        aside = self.root / f".replaced-{artifact_dir.name}"
        if aside.exists():
            shutil.rmtree(aside)
        artifact_dir.rename(aside)
        return aside

    def restore(self, aside: Path, artifact_dir: Path) -> None:
        """Undo :meth:`set_aside` (the failed run's leftover directory is removed)."""
        if artifact_dir.exists():
            shutil.rmtree(artifact_dir)
        aside.rename(artifact_dir)

    def leftover_record(self, d: Path) -> dict[str, Any] | None:
        """The ``.stage.json`` record of an unfinished directory (None: none, or unreadable)."""
        try:
            rec = json.loads((Path(d) / STAGE_RECORD).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return rec if isinstance(rec, dict) else None

    def leftovers(self, stage: str) -> list[Path]:
        """Unfinished directories (any cache key) whose record names ``stage``: interrupted runs."""
        if not self.root.is_dir():
            return []
        return sorted(d for d in self.root.glob(f"{stage}-*") if d.is_dir() and not is_complete(d)
                      and (self.leftover_record(d) or {}).get("stage") == stage)

    def complete(self, artifact_dir: Path, manifest: dict[str, Any]) -> None:
        """Write the manifest, then the COMPLETE marker (atomically, last)."""
        atomic_write_json(artifact_dir / MANIFEST, manifest)
        atomic_write_text(artifact_dir / COMPLETE, manifest["id"] + "\n")
        (artifact_dir / STAGE_RECORD).unlink(missing_ok=True)

    def all(self) -> list[Path]:
        """Every complete artifact directory in this workdir."""
        if not self.root.is_dir():
            return []
        return sorted(d for d in self.root.iterdir() if d.is_dir() and is_complete(d))

    def find(self, ref: str) -> Path:
        """Resolve an artifact id, unique id prefix (>= 4 chars), or ``stage-key`` directory name
        (:func:`olmoflow.artifacts.find_artifact` in this workdir)."""
        return find_artifact(ref, [self.workdir])
