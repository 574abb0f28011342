"""Small file helpers used everywhere: atomic writes, JSON lines, sha256 digests.

One place for each, importable from any package (stdlib only, no torch/numpy), so that flow, data,
train and eval write files and hash things the same way:

- ``atomic_write_bytes/text/json``: write to a temp file in the same directory, fsync, then
  ``os.replace`` it over the target, so a reader (or a crash) never sees half a file.
- ``read_jsonl`` / ``write_jsonl`` / ``append_jsonl``: one JSON object per line; ``.gz`` read and
  written transparently; a bad line is an OlmoflowError naming file and line (or skipped, for logs
  whose last line may be cut by a kill).
- ``canonical_json`` / ``sha256_json``: the canonical JSON form (sorted keys, no whitespace) and
  its sha256; ``sha256_file`` / ``sha256_bytes``: content digests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from olmoflow.errors import OlmoflowError

__all__ = [
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "canonical_json",
    "JsonlWriter",
    "iter_jsonl",
    "json_line",
    "iter_records",
    "read_jsonl",
    "sha256_bytes",
    "sha256_file",
    "sha256_json",
    "write_jsonl",
]

_CHUNK = 1 << 20


# ------------------------------------------------------------------------------- atomic writes
def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` via a temp file + ``os.replace``: readers see the old or the new file.

    The parent directory is created. ``fsync`` (default) flushes the data to disk before the
    rename, so a machine crash cannot leave a renamed but empty file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, fsync: bool = True) -> None:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2, fsync: bool = True) -> None:
    """Write ``data`` as JSON (sorted keys, trailing newline; ``default=str``) atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=True, default=str) + "\n", fsync=fsync)


# ----------------------------------------------------------------------------------- JSON lines
def _open_text(path: Path, mode: str) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")  # type: ignore[return-value]
    return open(path, mode, encoding="utf-8")


def iter_jsonl(path: str | Path, skip_bad: bool = False) -> Iterator[Any]:
    """Yield the JSON value of every non-blank line of ``path`` (``.gz`` allowed).

    A line that is not JSON raises OlmoflowError naming ``file:line``; with ``skip_bad`` it is
    skipped instead (logs appended by a process that may have been killed mid-line).
    """
    for _, value in _numbered_jsonl(path, skip_bad):
        yield value


def iter_records(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``("file:line", record)`` for every non-blank line of a JSON-lines file of objects, so that
    callers can name the line of a record they reject; a line that is not a JSON object is an
    OlmoflowError naming it."""
    path = Path(path)
    for n, value in _numbered_jsonl(path, False):
        if not isinstance(value, dict):
            raise OlmoflowError(f"{path}:{n}: expected a JSON object, got {type(value).__name__}")
        yield f"{path}:{n}", value


def _numbered_jsonl(path: str | Path, skip_bad: bool) -> Iterator[tuple[int, Any]]:
    path = Path(path)
    if not path.is_file():
        raise OlmoflowError(f"{path}: file not found")
    with _open_text(path, "r") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                if skip_bad:
                    continue
                raise OlmoflowError(f"{path}:{n}: not valid JSON ({e.msg}, column {e.colno})") from None
            yield n, value


def read_jsonl(path: str | Path, skip_bad: bool = False) -> list[Any]:
    """Every record of a JSON-lines file as a list (see ``iter_jsonl``)."""
    return list(iter_jsonl(path, skip_bad=skip_bad))


def json_line(obj: Any) -> str:
    """One compact, deterministic JSON line (key order as given, UTF-8 kept, ``default=str``), no newline."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


class JsonlWriter:
    """Write JSON lines to ``path`` atomically (temp file + rename; removed on an exception);
    ``.gz`` (mtime 0) and ``.zst`` by suffix, byte-stable for the same records."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self._raw = open(self.tmp, "wb")
        name = str(self.path)
        if name.endswith(".gz"):
            self._f: Any = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=1)
        elif name.endswith(".zst"):
            import zstandard

            self._f = zstandard.ZstdCompressor(level=3).stream_writer(self._raw, closefd=False)
        else:
            self._f = self._raw
        self.count = 0

    def write(self, obj: Any) -> None:
        self._f.write((json_line(obj) + "\n").encode("utf-8"))
        self.count += 1

    def close(self) -> None:
        if self._f is not self._raw:
            self._f.close()
        self._raw.close()
        os.replace(self.tmp, self.path)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            if self._f is not self._raw:
                self._f.close()
            self._raw.close()
            self.tmp.unlink(missing_ok=True)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Write ``rows`` one JSON value per line with :class:`JsonlWriter` (atomic, compression by
    suffix, byte-stable); returns the count."""
    with JsonlWriter(path) as w:
        for row in rows:
            w.write(row)
        return w.count


def append_jsonl(path: str | Path, row: Any) -> None:
    """Append one record to a (plain) JSON-lines log, creating it and its directory if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json_line(row) + "\n")


# ------------------------------------------------------------------------------------- hashing
def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace (``default=str``): the form dicts are hashed in."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def sha256_bytes(data: bytes) -> str:
    """sha256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(data: Any, n: int = 64) -> str:
    """sha256 hex (first ``n`` chars) of ``canonical_json(data)``: equal dicts give equal digests."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:n]


def sha256_file(path: str | Path | BinaryIO) -> str:
    """sha256 hex digest of a file's content, read in 1 MiB blocks (path or open binary file)."""
    h = hashlib.sha256()
    if isinstance(path, str | Path):
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                h.update(block)
    else:
        while block := path.read(_CHUNK):
            h.update(block)
    return h.hexdigest()
