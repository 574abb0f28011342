"""Dolma documents: streaming readers and deterministic writers.

A document is a plain dict with the Dolma fields ``id``, ``text``, ``source``, ``added``,
``created``, ``metadata`` (the pipeline adds ``attributes`` while it runs). Readers never raise on a
bad record: they yield ``(None, quarantine_record)`` so the caller counts and keeps it, and go on.
A damaged file (cut short, or not decodable from some point on) keeps the records before the damage
and ends with one ``truncated_file`` / ``corrupt_file`` record naming where it stopped.
Memory is bounded: lines longer than ``max_doc_bytes`` are skipped in chunks, never loaded whole.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from olmoflow.io import JsonlWriter, json_line, write_jsonl  # noqa: F401 (re-exported)

#: JSON-lines document files, plain or compressed
JSONL_SUFFIXES = tuple(s + c for s in (".jsonl", ".json", ".ndjson") for c in ("", ".gz", ".zst"))
#: files holding Dolma documents
DOC_SUFFIXES = (*JSONL_SUFFIXES, ".parquet")
DEFAULT_MAX_DOC_BYTES = 16 * 1024 * 1024
#: quarantine reasons of a file that is damaged from some point on (the records before it are kept)
DAMAGE_REASONS = ("truncated_file", "corrupt_file")

Record = tuple[dict[str, Any] | None, dict[str, Any] | None]


def is_doc_file(path: str | Path) -> bool:
    """True for files holding Dolma documents (JSONL, possibly compressed, or Parquet)."""
    return str(path).endswith(DOC_SUFFIXES)


class DamagedFile(Exception):
    """A file cut short (``truncated_file``) or not decodable (``corrupt_file``) from some point on."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason} ({detail})")
        self.reason = reason


class _Decompressed(io.RawIOBase):
    """The decompressed bytes of a .gz or .zst file, member after member (frame after frame).

    Python's gzip module raises EOFError at a cut, but zstandard's stream reader just stops, so a cut
    .zst file would read as a shorter valid one. Here both formats are decoded with their
    ``decompressobj``, which says whether the frame being read has reached its end (``eof``): input
    that runs out inside a frame raises DamagedFile(truncated_file), a decoding error (bad data, bad
    checksum) DamagedFile(corrupt_file), both naming the byte offset in the file. Everything decoded
    before is returned first.

    One read's output stays bounded even for extreme compression ratios. zstd input is fed in 1 KiB
    pieces (at most 32 MiB out, for all-repeat blocks): its decompressobj has no output limit. gzip
    input is fed in 64 KiB pieces with zlib's ``max_length`` of 1 MiB (1 KiB pieces made reading
    10-25% slower than ``gzip.open``; 64 KiB ones are ~20-40% faster). So that a decoding error
    still keeps what decodes before it, the gzip decoder is copied before each large piece, and
    after an error that piece is decoded again from the copy in small pieces (``_small_after_error``).
    """

    _SMALL_FEED = 1024

    def __init__(self, file: BinaryIO, new_frame: Callable[[], Any], errors: tuple[type[Exception], ...],
                 padding: bytes = b"", feed: int = _SMALL_FEED, max_out: int = 0):
        """``feed``: input bytes per decode call; ``max_out`` (> 0 only for decoders whose
        ``decompress`` takes ``max_length`` and that have ``copy()``, i.e. zlib): output limit of one
        call, and a larger ``feed`` is retried in small pieces after an error."""
        super().__init__()
        self._file, self._new_frame, self._errors, self._padding = file, new_frame, errors, padding
        self._feed, self._max_out = feed, max_out
        self._frame: Any = None  # decompressor of the frame being read; None between frames
        self._frames = 0  # frames started
        self._pending = b""  # input read but not yet decoded (past a frame's end, or zlib's unconsumed_tail)
        self._out = memoryview(b"")  # decoded, not yet returned

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._out:
            data = self._pending or self._file.read(self._feed)
            self._pending = b""
            if not data:
                if not self._frames:
                    raise DamagedFile("truncated_file", "empty file, no compressed data")
                if self._frame is not None:
                    raise DamagedFile("truncated_file", f"the data ends inside a compressed frame, at byte "
                                                        f"{self._file.tell()}")
                return 0
            if self._frame is None:
                if self._frames and self._padding:  # gzip allows zero padding after a member
                    data = data.lstrip(self._padding)
                    if not data:
                        continue
                self._frame, self._frames = self._new_frame(), self._frames + 1
            try:
                self._out = memoryview(self._decode(data))
            except self._errors as e:
                raise DamagedFile("corrupt_file", f"{type(e).__name__}: {e}, before byte {self._file.tell()}") from None
            if self._frame.eof:  # what follows the frame is the start of the next one
                self._pending, self._frame = self._frame.unused_data + self._pending, None
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def _decode(self, data: bytes) -> bytes:
        """Decode ``data`` with the current frame's decompressor (see the class docstring)."""
        if not self._max_out:
            return self._frame.decompress(data)
        if len(data) <= self._SMALL_FEED:
            out = self._frame.decompress(data, self._max_out)
            self._pending = self._frame.unconsumed_tail
            return out
        before = self._frame.copy()
        try:
            out = self._frame.decompress(data, self._max_out)
        except self._errors:
            self._frame = before  # the error is somewhere in data: find it in small steps
            return self._small_after_error(data)
        self._pending = self._frame.unconsumed_tail
        return out

    def _small_after_error(self, data: bytes) -> bytes:
        """Decode ``data`` (known to hold an error) 1 KiB at a time; return what decodes before the
        error and keep the rest pending, so the next call raises at the piece that holds it."""
        self._feed = self._SMALL_FEED  # stay small to the end: the error comes soon
        out = bytearray()
        while data and len(out) < self._max_out and not self._frame.eof:
            piece, data = data[: self._SMALL_FEED], data[self._SMALL_FEED :]
            try:
                out += self._frame.decompress(piece, self._max_out - len(out))
            except self._errors:
                if not out:
                    raise
                data = piece + data
                break
            data = self._frame.unconsumed_tail + data
        self._pending = data
        return bytes(out)

    def close(self) -> None:
        self._file.close()
        super().close()


def open_compressed(path: str | Path, file: BinaryIO | None = None) -> BinaryIO:
    """Read a plain, .gz or .zst file as (decompressed) bytes; ``file`` is ``path`` already opened.

    Reads raise :class:`DamagedFile` where a compressed file is cut short or stops decoding; all
    that decoded before that point is read normally. This is the one place that opens document
    files, so every reader (curate, tokenize, tokenizer training) treats damage the same way.
    """
    raw = file if file is not None else open(path, "rb")
    name = str(path)
    if name.endswith(".gz"):
        stream = _Decompressed(raw, lambda: zlib.decompressobj(wbits=31), (zlib.error,), padding=b"\0",
                               feed=64 << 10, max_out=1 << 20)
    elif name.endswith(".zst"):
        import zstandard

        stream = _Decompressed(raw, zstandard.ZstdDecompressor().decompressobj, (zstandard.ZstdError,))
    else:
        return raw  # type: ignore[return-value]
    return io.BufferedReader(stream, 1 << 16)  # type: ignore[return-value]


def is_damage(rec: dict[str, Any]) -> bool:
    """True for the quarantine record of a damaged file (as opposed to one bad record)."""
    return rec["reason"].split(" ")[0] in DAMAGE_REASONS


def damage_warning(rec: dict[str, Any]) -> str:
    """The one-line warning for a damaged file's quarantine record: which file, what, what was kept."""
    line = rec.get("line") or 1
    kept = f"the records before line {line} were kept" if line > 1 else "no record could be read"
    if line > 1 and rec["reason"].startswith("corrupt_file"):
        kept += " (corruption may show only after it starts, e.g. at a checksum: some may be altered)"
    return f"warning: damaged input file {rec['file']}: {rec['reason']}; {kept}, the rest of the file is lost"


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
        if line is None:
            return None, _quarantine(file, line, "missing_id", text[:200])
        doc_id = generated_id(file, line)
    obj["id"] = str(doc_id)
    return obj, None


_ID_NOTICES: set[str] = set()


def generated_id(file: str, line: int) -> str:
    """The id given to a record without one: its file's name and line (Parquet: row) number, so the
    same input always gets the same ids wherever it lies. The first time per file, a one-line notice
    on stderr says so (instead of quarantining every record of a plain ``{"text": ...}`` file)."""
    name = os.path.basename(file)
    if file not in _ID_NOTICES:
        _ID_NOTICES.add(file)
        print(f"notice: {file}: records without an 'id' get the id '{name}:LINE' (file name and line number)",
              file=sys.stderr)
    return f"{name}:{line}"


def read_jsonl(path: str | Path, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES, origin: bool = False) -> Iterator[Record]:
    """Stream a (possibly .gz/.zst) Dolma JSONL file; bad lines, damage and I/O errors become quarantine
    records. At damage, the line being read when it showed (possibly cut off) is part of the damage.
    ``origin``: give each document a private ``_origin`` = [file, line] (curation records it)."""
    path = Path(path)
    name = str(path)
    lineno = 0
    try:
        with open_compressed(path) as f:
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
                if origin and isinstance(obj, dict):
                    obj["_origin"] = [name, lineno]
                yield check_doc(obj, name, lineno)
    except DamagedFile as e:
        yield None, _quarantine(name, lineno + 1, str(e))
    except Exception as e:  # I/O errors and friends: still the file's fault, not the run's
        yield None, _quarantine(name, lineno + 1 if lineno else None, f"unreadable_file ({type(e).__name__}: {e})")


def read_parquet(path: str | Path, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES, origin: bool = False
                 ) -> Iterator[Record]:
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
                if origin and isinstance(obj, dict):
                    obj["_origin"] = [name, row]
                yield check_doc(obj, name, row)
    except Exception as e:
        yield None, _quarantine(name, row + 1, _parquet_error(name, e))


def _parquet_error(path: str, e: Exception) -> str:
    """Quarantine reason for a Parquet file that stopped reading. Parquet keeps its schema and row
    group index in a footer ending with ``PAR1``: a file without it was cut short (nothing in it can
    be found), one with it whose data fails to decode is corrupt. An error from the OS (missing
    file, no permission: ``errno`` set) is just unreadable."""
    if isinstance(e, OSError) and e.errno is not None:
        return f"unreadable_file ({type(e).__name__}: {e})"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 4, 0))
            whole = f.tell() >= 8 and f.read() == b"PAR1"
    except OSError:
        whole = False
    return f"{'corrupt_file' if whole else 'truncated_file'} ({type(e).__name__}: {e})"


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

    def read(self, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES, origin: bool = False) -> Iterator[Record]:
        """Records of the shard; ``origin``: documents of document files carry ``_origin`` = [file, line]."""
        if self.kind == "docs":
            if self.path.endswith(".parquet"):
                yield from read_parquet(self.path, max_doc_bytes, origin)
            else:
                yield from read_jsonl(self.path, max_doc_bytes, origin)
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

    A directory's files are those of :func:`expand_dir`: its document files become one shard each;
    its other files are read as one document per file (source = directory name), grouped
    ``files_per_shard`` to a shard. A directory saved by ``datasets.save_to_disk`` becomes one HF shard.
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
        for full in expand_dir(p, suffixes=None):
            if is_doc_file(full):
                doc_files.append(str(full))
            else:
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


#: the JSON-lines writer and line format of documents are olmoflow.io's (one implementation)
dumps = json_line


def iter_docs(path: str | Path, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES) -> Iterator[dict[str, Any]]:
    """Good documents only, from one JSONL/Parquet file (bad records are skipped; a damaged file is
    named in a warning on stderr, since the documents after the damage are missing)."""
    reader = read_parquet(path, max_doc_bytes) if str(path).endswith(".parquet") else read_jsonl(path, max_doc_bytes)
    for doc, bad in reader:
        if doc is not None:
            yield doc
        elif is_damage(bad):  # type: ignore[arg-type]
            print(damage_warning(bad), file=sys.stderr)  # type: ignore[arg-type]


def expand_dir(path: str | Path, suffixes: tuple[str, ...] | None = DOC_SUFFIXES) -> list[Path]:
    """The files a directory of documents stands for: the one rule every reader of directories uses
    (curate, tokenizer training, tokenize, the quality classifier, flow stages).

    - A curate output (``documents/`` next to ``stats.json``), at any depth, stands for its ``documents/``.
    - Recursive, in sorted order of the path below ``path`` (each directory's entries sorted by name,
      files and subdirectories together), so the order never depends on the file system.
    - Skipped: hidden files and directories (``.*``), ``__pycache__``, quarantine (a ``quarantine/``
      directory, ``quarantine.*`` files) and bare ``.json`` files (metadata such as ``manifest.json``,
      ``stats.json``, ``meta.json``; name a ``.json`` document file directly to read it).
      Symlinked directories are not followed; a dangling file link is kept, so its reader reports it.
    - Kept: files whose name ends with one of ``suffixes`` (``None``: every file, for readers that
      take any other file as text).
    """
    root = Path(path)

    def walk(d: Path) -> Iterator[Path]:
        if (d / "documents").is_dir() and (d / "stats.json").is_file():
            d = d / "documents"
        for p in sorted(d.iterdir(), key=lambda p: p.name):
            name = p.name
            if name.startswith(".") or name == "__pycache__" or name.split(".")[0] == "quarantine":
                continue
            if p.is_dir():
                if not p.is_symlink():
                    yield from walk(p)
            elif ((p.is_file() or p.is_symlink()) and not name.endswith(".json")
                  and (suffixes is None or name.endswith(suffixes))):
                yield p

    return list(walk(root))


def list_doc_files(inputs: str | Path | list[str | Path], suffixes: tuple[str, ...] = DOC_SUFFIXES) -> list[Path]:
    """Files named directly, and each directory's files by :func:`expand_dir`, in the order given."""
    from olmoflow.errors import OlmoflowError

    if isinstance(inputs, str | Path):
        inputs = [inputs]
    out: list[Path] = []
    for inp in inputs:
        p = Path(inp)
        if p.is_dir():
            found = expand_dir(p, suffixes)
            if not found:
                raise OlmoflowError(f"{p}: no input files (expected names ending in {', '.join(suffixes)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise OlmoflowError(f"input not found: {p}")
    if not out:
        raise OlmoflowError("no input files given")
    return out
