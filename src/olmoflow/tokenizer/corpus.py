"""Stream training text for the tokenizer from Dolma JSONL or plain text files.

- JSONL (``.jsonl``, ``.json``, ``.ndjson``, optionally ``.gz`` / ``.zst``): one document per line,
  its ``text`` field. Other fields are ignored, so a bare ``{"text": ...}`` file works too.
- Anything else is plain UTF-8 text (optionally ``.gz`` / ``.zst``), split into paragraphs at blank
  lines; each paragraph keeps its newlines, so the pieces concatenate back to the file exactly.
- A directory means every supported file under it (recursively, hidden files and bare ``.json``
  metadata files skipped), sorted by path. A curate output directory (``documents/`` next to
  ``stats.json``) means its ``documents/``.

Bad JSONL lines (malformed JSON, missing or non-string ``text``, invalid UTF-8, lone surrogates) are not fatal: they
are counted and returned as quarantine records with file, line and reason. So is a damaged compressed
file (cut short or corrupt, detected by :func:`olmoflow.data.documents.open_compressed`): the texts
before the damage are kept and one ``truncated_file`` / ``corrupt_file`` record names where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from olmoflow.data.documents import DamagedFile, open_compressed
from olmoflow.errors import OlmoflowError

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
TEXT_SUFFIXES = (".txt", ".text", ".md")
COMPRESSED = ("", ".gz", ".zst")
SUPPORTED = tuple(s + c for s in JSONL_SUFFIXES + TEXT_SUFFIXES for c in COMPRESSED)
#: Picked from directories: a bare ``.json`` there is usually metadata (manifest.json, stats.json).
DIR_SUFFIXES = tuple(s for s in SUPPORTED if s != ".json")


def _is_jsonl(path: Path) -> bool:
    return path.name.endswith(tuple(s + c for s in JSONL_SUFFIXES for c in COMPRESSED))


def resolve_inputs(inputs: list[Path]) -> list[Path]:
    """Expand directories to their supported files (sorted); fail on a missing path or no files."""
    files: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise OlmoflowError(f"input not found: {path}")
        if path.is_dir():
            if (path / "documents").is_dir() and (path / "stats.json").is_file():
                path = path / "documents"  # a curate output dir: train on its kept documents only
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.name.endswith(DIR_SUFFIXES) and not p.name.startswith(".")
            )
            if not found:
                raise OlmoflowError(f"{path}: no input files (expected .jsonl[.gz|.zst], .json.gz, .txt, ...)")
            files.extend(found)
        else:
            files.append(path)
    return files


class _Lines:
    """The lines of ``f`` numbered from 1; ``n`` is the number of the last line read (where damage showed)."""

    def __init__(self, f: BinaryIO):
        self.f, self.n = f, 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        for raw in self.f:
            self.n += 1
            yield self.n, raw


@dataclass
class CorpusStats:
    """What was read: documents, UTF-8 bytes of text, and quarantined records."""

    n_docs: int = 0
    n_bytes: int = 0
    quarantined: list[dict[str, Any]] = field(default_factory=list)


def iter_texts(
    files: list[Path], stats: CorpusStats, on_progress: Callable[[int], None] | None = None
) -> Iterator[str]:
    """Yield document texts from ``files`` in order; ``on_progress(bytes)`` gets compressed bytes read."""
    done = 0
    for path in files:
        try:
            with open(path, "rb") as raw:
                lines = _Lines(open_compressed(path, raw))
                reader = _jsonl if _is_jsonl(path) else _paragraphs
                for n, text in enumerate(reader(path, lines, stats)):
                    stats.n_docs += 1
                    stats.n_bytes += len(text.encode("utf-8"))
                    if on_progress is not None and n % 256 == 0:
                        on_progress(done + raw.tell())
                    yield text
        except DamagedFile as e:  # keep what came before, like the data pipeline; the caller warns
            stats.quarantined.append({"file": str(path), "line": lines.n + 1, "reason": str(e)})
        except (OSError, EOFError) as e:
            raise OlmoflowError(f"{path}: cannot read: {e}") from None
        except Exception as e:
            if isinstance(e, OlmoflowError):
                raise
            raise OlmoflowError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
        done += path.stat().st_size
        if on_progress is not None:
            on_progress(done)


def _jsonl(path: Path, lines: _Lines, stats: CorpusStats) -> Iterator[str]:
    for lineno, raw in lines:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except UnicodeDecodeError as e:
            stats.quarantined.append({"file": str(path), "line": lineno, "reason": f"invalid_utf8 ({e.reason})"})
            continue
        except ValueError as e:
            stats.quarantined.append({"file": str(path), "line": lineno, "reason": f"malformed_json ({e})"})
            continue
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str):
            reason = "missing_text" if not isinstance(obj, dict) or "text" not in obj else "text_not_string"
            stats.quarantined.append({"file": str(path), "line": lineno, "reason": reason})
            continue
        try:  # a JSON escape may encode a lone surrogate ("\ud800"): not Unicode, cannot be UTF-8 encoded
            if b"\\u" in raw:  # only then (no second encode of every document)
                text.encode("utf-8")
        except UnicodeEncodeError as e:
            reason = f"invalid_unicode (lone surrogate at character {e.start})"
            stats.quarantined.append({"file": str(path), "line": lineno, "reason": reason})
            continue
        if text:
            yield text


def _paragraphs(path: Path, lines: _Lines, stats: CorpusStats) -> Iterator[str]:
    buf: list[str] = []
    has_text = False  # buf holds a non-blank line
    for lineno, raw in lines:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise OlmoflowError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        buf.append(line)
        if line.strip():
            has_text = True
        elif has_text:
            yield "".join(buf)
            buf, has_text = [], False
    if buf:
        yield "".join(buf)
