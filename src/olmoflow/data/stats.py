"""The stats object every step shares: docs and bytes in/out, removals by reason, counters, and the
damaged input files (truncated or corrupt) met while reading.

Stats are plain nested dicts so they pickle to workers, merge by summing (the damaged-file list by
appending, in task order), and dump to JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def _nbytes(doc: dict[str, Any]) -> int:
    return len(doc["text"].encode("utf-8"))


class Stats:
    """Per-step counters for one shard (or, after :meth:`merge`, for a whole run)."""

    def __init__(self, data: dict[str, Any] | None = None):
        self.data: dict[str, Any] = data if data is not None else {"steps": {}, "counters": {}, "histograms": {}}

    def step(self, name: str) -> dict[str, Any]:
        s = self.data["steps"].get(name)
        if s is None:
            s = self.data["steps"][name] = {
                "docs_in": 0, "docs_out": 0, "bytes_in": 0, "bytes_out": 0, "removed": {}, "counters": {}
            }
        return s

    def count_in(self, name: str, docs: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        s = self.step(name)
        for d in docs:
            if not d.get("_copy"):
                s["docs_in"] += 1
                s["bytes_in"] += _nbytes(d)
            yield d

    def count_out(self, name: str, docs: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        s = self.step(name)
        for d in docs:
            if not d.get("_copy"):
                s["docs_out"] += 1
                s["bytes_out"] += _nbytes(d)
            yield d

    def removed(self, name: str, reason: str) -> None:
        r = self.step(name)["removed"]
        r[reason] = r.get(reason, 0) + 1

    def incr(self, name: str, key: str, value: float = 1) -> None:
        c = self.step(name)["counters"]
        c[key] = c.get(key, 0) + value

    def global_incr(self, key: str, value: float = 1) -> None:
        c = self.data["counters"]
        c[key] = c.get(key, 0) + value

    def add_histogram(self, name: str, values: dict[str, int]) -> None:
        h = self.data["histograms"].setdefault(name, {})
        for k, v in values.items():
            h[str(k)] = h.get(str(k), 0) + int(v)

    def damaged_file(self, rec: dict[str, Any]) -> None:
        """Record a damaged input file (its quarantine record), so the driver can name it in warnings."""
        self.data.setdefault("damaged_files", []).append(rec)

    def merge(self, other: Stats | dict[str, Any]) -> Stats:
        o = other.data if isinstance(other, Stats) else other
        for name, s in o.get("steps", {}).items():
            mine = self.step(name)
            for k in ("docs_in", "docs_out", "bytes_in", "bytes_out"):
                mine[k] += s[k]
            for sub in ("removed", "counters"):
                for k, v in s[sub].items():
                    mine[sub][k] = mine[sub].get(k, 0) + v
        for k, v in o.get("counters", {}).items():
            self.global_incr(k, v)
        for k, h in o.get("histograms", {}).items():
            self.add_histogram(k, h)
        for rec in o.get("damaged_files", []):
            self.damaged_file(rec)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.data
