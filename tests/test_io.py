"""olmoflow.io: atomic writes, JSON lines and sha256 helpers shared by every package."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.io import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
    sha256_file,
    sha256_json,
    write_jsonl,
)


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"
    atomic_write_json(tmp_path / "b.json", {"z": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "b.json").read_text()) == {"a": [1, 2], "z": 1}
    assert sorted(os.listdir(tmp_path)) == ["b.json", "sub"] and os.listdir(tmp_path / "sub") == ["a.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    p = tmp_path / "a.bin"
    atomic_write_bytes(p, b"old")

    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")  # type: ignore[arg-type]
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz"])
def test_jsonl_roundtrip(tmp_path, name):
    rows = [{"id": i, "text": "é" * i} for i in range(5)]
    assert write_jsonl(tmp_path / name, rows) == 5
    assert read_jsonl(tmp_path / name) == rows
    assert [x for x in os.listdir(tmp_path) if x != name] == []


def test_read_jsonl_names_file_and_line_or_skips(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(OlmoflowError, match=r"log.jsonl:3: not valid JSON"):
        read_jsonl(p)
    assert read_jsonl(p, skip_bad=True) == [{"a": 1}, {"a": 3}]
    append_jsonl(p, {"a": 4})
    assert read_jsonl(p, skip_bad=True)[-1] == {"a": 4}


def test_sha256_helpers(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x" * (3 << 20))
    assert sha256_file(p) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 2})
    assert len(sha256_json({"a": 1}, n=16)) == 16
