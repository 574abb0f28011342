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

__all__ = ["COMPLETE", "MANIFEST", "artifact_of", "default_workdirs", "find_artifact", "find_artifact_root", "find_tokenizer",
           "is_complete", "model_dir", "read_manifest", "resolve_model"]

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


# ---- using artifacts from the command line: by id, as a model, with their tokenizer ---------------

#: shortest id prefix accepted where a command takes an artifact
MIN_PREFIX = 4
TOKENIZER_FILE = "tokenizer.json"
#: environment variable naming extra workdirs (``os.pathsep``-separated) to look artifact ids up in
WORKDIR_ENV = "OLMOFLOW_WORKDIR"


def model_dir(path: str | Path) -> Path:
    """A model directory from a training run artifact (its ``final/``), a checkpoint, or a model dir."""
    path = Path(path)
    if (path / "final").is_dir() and not (path / "model.safetensors").is_file():
        return path / "final"
    return path


def default_workdirs(cwd: str | Path | None = None) -> list[Path]:
    """Where an artifact id given on the command line is looked up: the workdirs named in
    ``$OLMOFLOW_WORKDIR``, the current directory, and the directories one level below it and below
    its ``runs/`` (``olmoflow run``'s default ``runs/<flow>``, ``olmoflow demo``'s
    ``olmoflow-demo-<time>``) — each only if it holds an ``artifacts/`` directory."""
    import os

    base = Path(cwd) if cwd is not None else Path.cwd()
    cands = [Path(p) for p in os.environ.get(WORKDIR_ENV, "").split(os.pathsep) if p]
    cands.append(base)
    for parent in (base, base / "runs"):
        if parent.is_dir():
            cands += sorted(d for d in parent.iterdir() if d.is_dir() and not d.name.startswith("."))
    seen: set[Path] = set()
    out = []
    for d in cands:
        r = d.resolve()
        if r not in seen and (d / "artifacts").is_dir():
            seen.add(r)
            out.append(d)
    return out


def find_artifact(ref: str, workdirs: list[Path] | None = None) -> Path:
    """The complete artifact named ``ref`` in ``workdirs`` (default :func:`default_workdirs`): its
    full id, a unique prefix of it (>= 4 characters, as shown in the run's tables), or its
    directory name (``stage-key``). An unknown or ambiguous ref is a one-line OlmoflowError; an
    ambiguous prefix lists the candidates."""
    ref = ref.strip()
    dirs = default_workdirs() if workdirs is None else [Path(w) for w in workdirs]
    hits: dict[str, list[Path]] = {}
    for wd in dirs:
        root = wd / "artifacts"
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if not (d.is_dir() and is_complete(d)):
                continue
            aid = (d / COMPLETE).read_text().strip()
            if d.name == ref or aid == ref or (len(ref) >= MIN_PREFIX and aid.startswith(ref)):
                hits.setdefault(aid, []).append(d)
    where = ", ".join(str(w) for w in dirs) or "(no workdir with an artifacts/ directory here)"
    if not hits:
        short = f" (a prefix needs at least {MIN_PREFIX} characters)" if len(ref) < MIN_PREFIX else ""
        raise OlmoflowError(f"no artifact {ref!r}{short} in {where}")
    if len(hits) > 1:
        cands = "; ".join(f"{aid[:12]} ({read_manifest(ds[0]).get('stage')}, {ds[0]})" for aid, ds in sorted(hits.items()))
        raise OlmoflowError(f"artifact id prefix {ref!r} is ambiguous: {cands}")
    return next(iter(hits.values()))[0]  # one id; the same artifact in several workdirs is the same content


def _looks_like_ref(ref: str) -> bool:
    """An artifact id / prefix / directory name rather than a mistyped path."""
    return "/" not in ref and not ref.startswith((".", "~"))


def resolve_model(ref: str | Path, workdirs: list[Path] | None = None) -> Path:
    """The model directory a command-line ``--model`` names: a path (a training run artifact stands
    for its ``final/`` checkpoint), or an artifact id / unique id prefix / directory name looked up
    with :func:`find_artifact`. A path that does not exist and is no known id is an error."""
    p = Path(ref).expanduser()
    if not p.exists():
        if not _looks_like_ref(str(ref)):
            raise OlmoflowError(f"{p}: no such file or directory")
        try:
            p = find_artifact(str(ref), workdirs)
        except OlmoflowError as e:
            if str(e).startswith("no artifact"):
                raise OlmoflowError(f"{ref}: no such path, and {e}") from None
            raise
    return model_dir(p)


def _tokenizer_in(d: Path) -> Path | None:
    """``d`` (or ``d/tokenizer``) if it holds tokenizer.json; ``d``'s parent if ``d`` is that file."""
    if d.is_file():
        return d.parent if d.name == TOKENIZER_FILE else None
    for cand in (d, d / "tokenizer"):
        if (cand / TOKENIZER_FILE).is_file():
            return cand
    return None


def find_tokenizer(model_path: str | Path) -> Path:
    """The tokenizer directory of a model, by one rule used by every command that loads a model:

    1. ``tokenizer.json`` in the model directory or its ``tokenizer/`` (HF exports, release bundles),
       then in the directories above it up to the artifact it lies in (or 3 levels outside one);
    2. else, for a model inside a flow artifact (any checkpoint of pretrain/SFT/DPO/RLVR/...), the
       artifact's lineage: its inputs, breadth first (``tokenizer`` inputs first), found by the path
       their manifest recorded or by id in the same workdir.
    """
    p = Path(model_path).resolve()
    start = p if p.is_dir() else p.parent
    root = find_artifact_root(start)
    ups = [start, *start.parents]
    limit = ups.index(root[0]) + 1 if root is not None else 4
    for d in ups[:limit]:
        found = _tokenizer_in(d)
        if found is not None:
            return found
    if root is not None:
        found = _tokenizer_from_lineage(root[0])
        if found is not None:
            return found
    raise OlmoflowError(f"{model_path}: no tokenizer.json next to the model, in its parent directories or in the "
                        "inputs of the artifact it belongs to; pass --tokenizer DIR")


def _tokenizer_from_lineage(artifact: Path) -> Path | None:
    """Breadth-first over the artifact's inputs (and theirs) for a tokenizer."""
    index: dict[str, Path] | None = None
    queue, seen = [artifact], {artifact.resolve()}
    while queue:
        d = queue.pop(0)
        try:
            inputs = read_manifest(d).get("inputs") or {}
        except OlmoflowError:
            continue
        for name, inp in sorted(inputs.items(), key=lambda kv: kv[0] != "tokenizer"):
            path = Path(inp["path"]) if inp.get("path") else None
            if inp.get("kind") == "artifact" and (path is None or not path.exists()):
                if index is None:  # the workdir was moved: look the id up beside this artifact
                    index = {(a / COMPLETE).read_text().strip(): a for a in d.parent.iterdir()
                             if a.is_dir() and is_complete(a)}
                hit = index.get(inp.get("id") or "")
                path = (hit / inp["subpath"] if inp.get("subpath") else hit) if hit is not None else None
            if path is None or not path.exists():
                continue
            if name == "tokenizer" or inp.get("kind") != "artifact":
                found = _tokenizer_in(path)
                if found is not None:
                    return found
            up = find_artifact_root(path)
            if up is not None and up[0].resolve() not in seen:
                found = _tokenizer_in(up[0]) if name != "tokenizer" else None
                if found is not None:
                    return found
                seen.add(up[0].resolve())
                queue.append(up[0])
    return None
