"""Dolma documents: streaming readers and deterministic writers.

A document is a plain dict with the Dolma fields ``id``, ``text``, ``source``, ``added``,
``created``, ``metadata`` (the pipeline adds ``attributes`` while it runs). Readers never raise on a
bad record: they yield ``(None, quarantine_record)`` so the caller counts and keeps it, and go on.
Memory is bounded: lines longer than ``max_doc_bytes`` are skipped in chunks, never loaded whole.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOC_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".parquet")
DEFAULT_MAX_DOC_BYTES = 16 * 1024 * 1024

Record = tuple[dict[str, Any] | None, dict[str, Any] | None]


def is_doc_file(path: str | Path) -> bool:
    """True for files holding Dolma documents (JSONL, possibly compressed, or Parquet)."""
    return str(path).endswith(DOC_SUFFIXES)


def _open_binary(path: Path) -> io.BufferedIOBase:
    name = str(path)
    if name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")))
    return open(path, "rb")


def _quarantine(file: str, line: int | None, reason: str, raw: Any = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"file": file, "line": line, "reason": reason}
    if raw is not None:
        rec["raw"] = raw if isinstance(raw, str) else repr(raw)[:200]
        rec["raw"] = rec["raw"][:200]
    return rec


def _lone_surrogate(obj: Any, where: str = "") -> str | None:
    """Key path of the first string (or key) in a parsed JSON value holding a lone surrogate, else None."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as e:
            return f"{where or 'value'} at character {e.start}"
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{where}.{k}" if where else str(k)
            bad = _lone_surrogate(k, path + " (key)") or _lone_surrogate(v, path)
            if bad is not None:
                return bad
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad = _lone_surrogate(v, f"{where}.{i}" if where else str(i))
            if bad is not None:
                return bad
    return None


def check_doc(obj: Any, file: str, line: int | None) -> Record:
    """Validate one parsed record as a Dolma document; returns (doc, None) or (None, quarantine)."""
    if not isinstance(obj, dict):
        return None, _quarantine(file, line, "not_an_object", repr(obj)[:200])
    text = obj.get("text")
    if "text" not in obj or text is None:
        return None, _quarantine(file, line, "missing_text", str(obj.get("id")))
    if not isinstance(text, str):
        return None, _quarantine(file, line, "text_not_string", str(obj.get("id")))
    if not text.strip():
        return None, _quarantine(file, line, "empty_text", str(obj.get("id")))
    doc_id = obj.get("id")
    if doc_id is None or doc_id == "":
        return None, _quarantine(file, line, "missing_id", text[:200])
    obj["id"] = str(doc_id)
    return obj, None


def read_jsonl(path: str | Path, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES) -> Iterator[Record]:
    """Stream a (possibly .gz/.zst) Dolma JSONL file; bad lines and I/O errors become quarantine records."""
    path = Path(path)
    name = str(path)
    lineno = 0
    try:
        with _open_binary(path) as f:
            while True:
                raw = f.readline(max_doc_bytes + 1)
                if not raw:
                    break
                lineno += 1
                if len(raw) > max_doc_bytes and not raw.endswith(b"\n"):
                    size = len(raw)
                    while True:  # skip the rest of the oversized line without holding it
                        chunk = f.readline(1 << 20)
                        size += len(chunk)
                        if not chunk or chunk.endswith(b"\n"):
                            break
                    yield None, _quarantine(name, lineno, f"too_large ({size} bytes > {max_doc_bytes})")
                    continue
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield None, _quarantine(name, lineno, f"invalid_utf8 ({e.reason} at byte {e.start})")
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield None, _quarantine(name, lineno, f"malformed_json ({e.msg})", line[:200])
                    continue
                if "\\u" in line:  # a JSON escape may encode a lone surrogate: not Unicode, cannot be written
                    bad = _lone_surrogate(obj)
                    if bad is not None:
                        yield None, _quarantine(name, lineno, f"invalid_unicode (lone surrogate in {bad})", line[:200])
                        continue
                yield check_doc(obj, name, lineno)
    except (OSError, EOFError, ValueError) as e:
        yield None, _quarantine(name, lineno + 1 if lineno else None, f"unreadable_file ({type(e).__name__}: {e})")
    except Exception as e:  # zstd errors and friends: still the file's fault, not the run's
        yield None, _quarantine(name, lineno + 1 if lineno else None, f"unreadable_file ({type(e).__name__}: {e})")


def read_parquet(path: str | Path, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES) -> Iterator[Record]:
    """Stream a Parquet file with Dolma columns in record batches."""
    from olmoflow.errors import require

    pq = require("pyarrow.parquet", "data")
    name = str(path)
    row = 0
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=1024):
            for obj in batch.to_pylist():
                row += 1
                text = obj.get("text")
                if isinstance(text, str) and len(text.encode("utf-8")) > max_doc_bytes:
                    yield None, _quarantine(name, row, "too_large")
                    continue
                yield check_doc(obj, name, row)
    except Exception as e:
        yield None, _quarantine(name, row + 1, f"unreadable_file ({type(e).__name__}: {e})")


def read_text_files(
    root: str | Path, files: list[str], source: str, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES
) -> Iterator[Record]:
    """One document per text/source file: id and metadata.path are the path relative to ``root``."""
    root = Path(root)
    for rel in files:
        path = root / rel
        name = str(path)
        try:
            size = path.stat().st_size
            if size > max_doc_bytes:
                yield None, _quarantine(name, None, f"too_large ({size} bytes > {max_doc_bytes})")
                continue
            data = path.read_bytes()
        except OSError as e:
            yield None, _quarantine(name, None, f"unreadable_file ({type(e).__name__}: {e})")
            continue
        if b"\x00" in data:
            yield None, _quarantine(name, None, "binary_file")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            yield None, _quarantine(name, None, f"invalid_utf8 ({e.reason} at byte {e.start})")
            continue
        doc = {"id": f"{source}/{rel}", "text": text, "source": source, "metadata": {"path": rel}}
        yield check_doc(doc, name, None)


def read_hf_dataset(path: str | Path, text_field: str = "text", source: str | None = None) -> Iterator[Record]:
    """Read a Hugging Face dataset saved with ``save_to_disk`` (needs the ``datasets`` package)."""
    from olmoflow.errors import require

    datasets = require("datasets", "eval")
    name = str(path)
    ds = datasets.load_from_disk(name)
    if isinstance(ds, datasets.DatasetDict):
        splits = [ds[k] for k in sorted(ds)]
    else:
        splits = [ds]
    src = source or Path(name).name
    n = 0
    for split in splits:
        for row in split:
            n += 1
            doc = {
                "id": str(row.get("id", f"{src}-{n}")),
                "text": row.get(text_field),
                "source": row.get("source", src),
                "metadata": {k: v for k, v in row.items() if k not in {"id", text_field, "source"}},
            }
            yield check_doc(doc, name, n)


@dataclass
class Shard:
    """A unit of parallel work: one document file, a group of text files, or an HF dataset."""

    index: int
    name: str
    kind: str  # "docs" | "text" | "hf"
    path: str
    files: list[str] = field(default_factory=list)
    source: str = ""

    def read(self, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES) -> Iterator[Record]:
        if self.kind == "docs":
            if self.path.endswith(".parquet"):
                yield from read_parquet(self.path, max_doc_bytes)
            else:
                yield from read_jsonl(self.path, max_doc_bytes)
        elif self.kind == "text":
            yield from read_text_files(self.path, self.files, self.source, max_doc_bytes)
        else:
            yield from read_hf_dataset(self.path, source=self.source)


def _stem(path: str) -> str:
    base = os.path.basename(path.rstrip("/"))
    for suf in sorted(DOC_SUFFIXES, key=len, reverse=True):
        if base.endswith(suf):
            return base[: -len(suf)]
    return base.replace(".", "_")


def expand_inputs(inputs: str | Path | list[str | Path], files_per_shard: int = 256) -> list[Shard]:
    """Turn files/directories into an ordered list of shards (deterministic order).

    A directory's document files become one shard each; its other regular files are read as one
    document per file (source = directory name), grouped ``files_per_shard`` to a shard. A directory
    saved by ``datasets.save_to_disk`` becomes one HF shard.
    """
    from olmoflow.errors import OlmoflowError

    if isinstance(inputs, str | Path):
        inputs = [inputs]
    raw: list[tuple[str, str, str, list[str], str]] = []  # (name, kind, path, files, source)
    for inp in inputs:
        p = Path(inp)
        if not p.exists():
            raise OlmoflowError(f"input not found: {p}")
        if p.is_file() or not p.is_dir():
            if is_doc_file(p):
                raw.append((_stem(str(p)), "docs", str(p), [], ""))
            else:
                raw.append((_stem(str(p)), "text", str(p.parent), [p.name], p.parent.name or "text"))
            continue
        if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists():
            raw.append((_stem(str(p)), "hf", str(p), [], p.name))
            continue
        doc_files, text_files = [], []
        for dirpath, dirnames, filenames in os.walk(p):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            for fn in sorted(filenames):
                if fn.startswith("."):
                    continue
                full = Path(dirpath) / fn
                if is_doc_file(full):
                    doc_files.append(str(full))
                elif full.is_file() or full.is_symlink():
                    text_files.append(str(full.relative_to(p)))
        for f in doc_files:
            rel = os.path.relpath(f, p)
            raw.append((_stem(rel).replace(os.sep, "_"), "docs", f, [], ""))
        for i in range(0, len(text_files), files_per_shard):
            chunk = text_files[i : i + files_per_shard]
            raw.append((f"{p.name}-files{i // files_per_shard:04d}", "text", str(p), chunk, p.name))
    if not raw:
        raise OlmoflowError(f"no input documents found in {', '.join(map(str, inputs))}")
    shards, seen = [], set()
    for i, (name, kind, path, files, source) in enumerate(raw):
        uniq = name
        if uniq in seen:
            uniq = f"{name}-{i:05d}"
        seen.add(uniq)
        shards.append(Shard(index=i, name=uniq, kind=kind, path=path, files=files, source=source))
    return shards


def dumps(obj: Any) -> str:
    """Compact, deterministic JSON line (key order as inserted, UTF-8 kept)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class JsonlWriter:
    """Write JSON lines to ``path`` atomically (tmp file + rename); .gz (mtime 0) and .zst are byte-stable."""

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

    def write(self, obj: dict[str, Any]) -> None:
        self._f.write((dumps(obj) + "\n").encode("utf-8"))
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
            self._f.close() if self._f is not self._raw else None
            self._raw.close()
            self.tmp.unlink(missing_ok=True)


def write_jsonl(path: str | Path, docs: list[dict[str, Any]] | Iterator[dict[str, Any]]) -> int:
    """Write documents to a JSONL file (compression from the suffix); returns the count."""
    with JsonlWriter(path) as w:
        for d in docs:
            w.write(d)
        return w.count


def iter_docs(path: str | Path, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES) -> Iterator[dict[str, Any]]:
    """Good documents only, from one JSONL/Parquet file (bad records are skipped)."""
    reader = read_parquet(path, max_doc_bytes) if str(path).endswith(".parquet") else read_jsonl(path, max_doc_bytes)
    for doc, _bad in reader:
        if doc is not None:
            yield doc


def list_doc_files(inputs: str | Path | list[str | Path]) -> list[Path]:
    """All document files under the given files/directories, sorted, for tokenize/mix."""
    from olmoflow.errors import OlmoflowError

    if isinstance(inputs, str | Path):
        inputs = [inputs]
    out: list[Path] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            docs_dir = p / "documents"
            base = docs_dir if docs_dir.is_dir() else p
            out.extend(sorted(f for f in base.rglob("*") if f.is_file() and is_doc_file(f)))
        elif p.is_file():
            out.append(p)
        else:
            raise OlmoflowError(f"input not found: {p}")
    if not out:
        raise OlmoflowError(f"no document files (.jsonl/.jsonl.gz/.jsonl.zst/.parquet) in {inputs}")
    return out
