"""Stream training text for the tokenizer from Dolma JSONL or plain text files.

- JSONL (``.jsonl``, ``.json``, ``.ndjson``, optionally ``.gz`` / ``.zst``): one document per line,
  its ``text`` field. Other fields are ignored, so a bare ``{"text": ...}`` file works too.
- Anything else is plain UTF-8 text (optionally ``.gz`` / ``.zst``), split into paragraphs at blank
  lines; each paragraph keeps its newlines, so the pieces concatenate back to the file exactly.
- A directory means its JSONL and text files by the one directory rule,
  :func:`olmoflow.data.documents.expand_dir` (recursive, sorted, hidden files, quarantine and bare
  ``.json`` metadata skipped, a curate output read as its ``documents/``).

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

from olmoflow.data.documents import JSONL_SUFFIXES, DamagedFile, open_compressed
from olmoflow.errors import OlmoflowError

TEXT_SUFFIXES = tuple(s + c for s in (".txt", ".text", ".md") for c in ("", ".gz", ".zst"))
#: what a directory given to tokenizer training contributes (by :func:`olmoflow.data.documents.expand_dir`)
SUPPORTED = JSONL_SUFFIXES + TEXT_SUFFIXES


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
                reader = _jsonl if path.name.endswith(JSONL_SUFFIXES) else _paragraphs
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
