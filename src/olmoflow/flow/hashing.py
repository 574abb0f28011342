"""Content hashes: artifact ids, cache keys and fingerprints of external inputs.

Artifact ids must not depend on where the workdir lives, nor on timings or host: they hash file
contents (text files with the workdir's absolute path replaced by a placeholder) plus the stable
manifest fields, never the volatile ones.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path
from typing import Any

from olmoflow.io import canonical_json, sha256_bytes, sha256_file, sha256_json

__all__ = ["hash_path", "hash_tree"]

#: files that are never part of an artifact's content hash (written by the runner itself)
RUNNER_FILES = ("manifest.json", "COMPLETE", ".stage.json")
_TEXT_SUFFIXES = {".json", ".jsonl", ".txt", ".md", ".yaml", ".yml", ".csv", ".tsv", ".cfg", ".toml"}
_MAX_NORMALIZED = 16 << 20  # text files larger than this are hashed as raw bytes


def _drop_keys(data: bytes, keys: tuple[str, ...], jsonl: bool) -> bytes:
    """JSON (or JSON lines) with top-level ``keys`` removed, re-serialised canonically."""
    def clean(obj: Any) -> Any:
        return {k: v for k, v in obj.items() if k not in keys} if isinstance(obj, dict) else obj

    try:
        if jsonl:
            lines = [canonical_json(clean(json.loads(x))) for x in data.decode().splitlines() if x.strip()]
            return "\n".join(lines).encode()
        return canonical_json(clean(json.loads(data))).encode()
    except (UnicodeDecodeError, json.JSONDecodeError):
        return data


def _file_digest(path: Path, replace: list[tuple[bytes, bytes]], drop: tuple[str, ...] = ()) -> str:
    """sha256 of a file; small text files first get ``drop`` keys removed and ``replace`` applied."""
    if (replace or drop) and path.suffix in _TEXT_SUFFIXES and path.stat().st_size <= _MAX_NORMALIZED:
        data = path.read_bytes()
        if drop:
            data = _drop_keys(data, drop, path.suffix == ".jsonl")
        for old, new in replace:
            data = data.replace(old, new)
        return sha256_bytes(data)
    return sha256_file(path)


def hash_tree(
    root: Path,
    exclude: tuple[str, ...] = (),
    normalize: dict[str, str] | None = None,
    volatile_keys: dict[str, tuple[str, ...]] | None = None,
) -> tuple[str, dict[str, str]]:
    """sha256 over every file under ``root`` (relative path + content digest, sorted).

    ``exclude`` holds glob patterns on relative POSIX paths. ``normalize`` maps strings (e.g.
    the workdir's absolute path) to placeholders in small text files before hashing, so an
    artifact that records a path does not change id when the workdir moves. ``volatile_keys``
    maps glob patterns of JSON / JSON-lines files to top-level keys left out (e.g. throughput).
    Returns (hex digest, {relative path: file digest}).
    """
    replace = sorted(((k.encode(), v.encode()) for k, v in (normalize or {}).items() if k),
                     key=lambda kv: -len(kv[0]))
    files: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, pat) for pat in exclude):
            continue
        drop = tuple(k for pat, keys in (volatile_keys or {}).items() if fnmatch.fnmatch(rel, pat) for k in keys)
        files[rel] = _file_digest(p, replace, drop)
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel].encode() + b"\n")
    return h.hexdigest(), files


def _stat_key(path: Path) -> str:
    """Cheap identity of a file or tree (paths, sizes, mtimes) to reuse a content hash."""
    if path.is_file():
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    rows = [(p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()]
    return sha256_json(rows)


def hash_path(path: Path, cache: dict[str, Any] | None = None) -> str:
    """Content fingerprint (sha256) of an external input: a file or a directory tree.

    With ``cache`` (a dict persisted by the caller), a path whose sizes and mtimes are unchanged
    reuses its previous hash instead of reading every byte again (large corpora).
    """
    path = Path(path)
    key = str(path.resolve())
    stat = _stat_key(path) if cache is not None else ""
    if cache is not None and cache.get(key, {}).get("stat") == stat:
        return cache[key]["sha256"]
    digest = _file_digest(path, []) if path.is_file() else hash_tree(path)[0]
    if cache is not None:
        cache[key] = {"stat": stat, "sha256": digest}
    return digest
