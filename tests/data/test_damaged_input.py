"""Damaged input files (cut short, bit-flipped, empty) are reported as such, never mis-read quietly.

The files are made with the real libraries (zstandard, gzip, pyarrow) and then cut or flipped. The
number of complete records a reader can still recover is taken from the library itself, decoding the
damaged bytes with its own streaming decoder.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import zlib

import pytest
import zstandard
from datautil import read_out, sentence_text, tree_bytes, vocab

from olmoflow.data.curate import curate
from olmoflow.data.documents import iter_docs, open_compressed, read_jsonl, read_parquet
from olmoflow.data.pipeline import InjectedFailure

RECIPE = {"name": "t", "steps": [{"step": "normalize"}, {"step": "exact_dedup"}]}


def _docs(n: int = 300, prefix: str = "d", seed: int = 0) -> list[dict]:
    """~1 KB documents: 300 of them span several 128 KB zstd blocks, so a cut leaves whole blocks."""
    r = random.Random(seed)
    words = vocab()
    return [{"id": f"{prefix}{i:04d}", "text": sentence_text(r, words, 150), "source": "web"} for i in range(n)]


def _jsonl(docs: list[dict]) -> bytes:
    return "".join(json.dumps(d) + "\n" for d in docs).encode()


def _compress(data: bytes, suffix: str) -> bytes:
    if suffix == ".zst":
        return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)
    return gzip.compress(data, mtime=0)


def _recoverable_lines(blob: bytes, suffix: str) -> int:
    """Complete lines the library's own streaming decoder gets out of a cut compressed blob."""
    if suffix == ".zst":
        out = b"".join(zstandard.ZstdDecompressor().read_to_iter(blob))
    else:
        out = zlib.decompressobj(wbits=31).decompress(blob)
    return out.count(b"\n")


def _split(records):
    records = list(records)
    good = [d for d, _ in records if d is not None]
    bad = [q for _, q in records if q is not None]
    return good, bad


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
@pytest.mark.parametrize("keep", [0.6, -1])  # cut at 60%, or only the last byte (the end marker/trailer)
def test_cut_file_keeps_complete_records_and_reports_truncation(tmp_path, suffix, keep):
    docs = _docs()
    blob = _compress(_jsonl(docs), suffix)
    cut = blob[: int(len(blob) * keep)] if keep > 0 else blob[:keep]
    path = tmp_path / f"cut.jsonl{suffix}"
    path.write_bytes(cut)
    good, bad = _split(read_jsonl(path))
    k = _recoverable_lines(cut, suffix)
    assert 0 < k <= len(docs)
    assert good == docs[:k]  # every complete record before the cut, intact and in order
    assert len(bad) == 1, bad  # the cut-off last line is not a separate "malformed_json" record
    assert bad[0]["reason"].startswith("truncated_file") and f"byte {len(cut)}" in bad[0]["reason"]
    assert bad[0]["file"] == str(path) and bad[0]["line"] == k + 1


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
def test_bit_flip_is_reported_as_corrupt_file(tmp_path, suffix):
    docs = _docs()
    blob = bytearray(_compress(_jsonl(docs), suffix))
    blob[len(blob) // 2] ^= 0x10
    path = tmp_path / f"flipped.jsonl{suffix}"
    path.write_bytes(bytes(blob))
    records = list(read_jsonl(path))  # never raises
    good, bad = _split(records)
    last = records[-1][1]
    assert last is not None and last["reason"].startswith("corrupt_file") and "byte" in last["reason"]
    assert last["file"] == str(path) and last["line"] == len(records)
    assert not any(q["reason"].startswith("truncated_file") for q in bad)
    ids = [d["id"] for d in good]
    assert 0 < len(good) and ids == sorted(ids) and set(ids) <= {d["id"] for d in docs}
    if suffix == ".zst":  # zstd notices the damaged block before any of its output: the rest is intact
        assert good == docs[: len(good)] and len(bad) == 1
    else:  # gzip's check is a CRC at the end: a flipped bit can alter records before it shows
        assert "incorrect data check" in last["reason"]
        assert len(good) < len(docs) and good != docs[: len(good)]


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
def test_empty_compressed_file_is_truncated_but_compressed_nothing_is_fine(tmp_path, suffix):
    empty = tmp_path / f"empty.jsonl{suffix}"
    empty.write_bytes(b"")
    good, bad = _split(read_jsonl(empty))
    assert good == [] and len(bad) == 1
    assert bad[0]["reason"].startswith("truncated_file") and "empty" in bad[0]["reason"] and bad[0]["line"] == 1
    nothing = tmp_path / f"nothing.jsonl{suffix}"
    nothing.write_bytes(_compress(b"", suffix))
    assert list(read_jsonl(nothing)) == []


def test_valid_multi_frame_and_padded_files_are_not_flagged(tmp_path):
    """Concatenated zstd frames and gzip members (``cat a.gz b.gz``) and zero padding after a gzip
    member (accepted by gzip and Python's gzip module) are valid files, read to the end."""
    a, b = _docs(40, "a"), _docs(40, "b", seed=1)
    zst = tmp_path / "multi.jsonl.zst"
    zst.write_bytes(_compress(_jsonl(a), ".zst") + _compress(_jsonl(b), ".zst"))
    gz = tmp_path / "multi.jsonl.gz"
    gz.write_bytes(_compress(_jsonl(a), ".gz") + _compress(_jsonl(b), ".gz") + b"\0" * 512)
    for path in (zst, gz):
        good, bad = _split(read_jsonl(path))
        assert bad == [] and good == a + b


def _parquet(tmp_path, docs: list[dict]) -> bytes:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "whole.parquet", row_group_size=1024)
    return (tmp_path / "whole.parquet").read_bytes()


def test_damaged_parquet_files(tmp_path):
    docs = _docs(3000)  # three row groups: a damaged middle one leaves the first (1024 rows) readable
    data = _parquet(tmp_path, docs)
    cut, empty, flipped = tmp_path / "cut.parquet", tmp_path / "empty.parquet", tmp_path / "flipped.parquet"
    cut.write_bytes(data[: len(data) // 2])  # the footer (schema, row groups) is at the end: nothing is left
    empty.write_bytes(b"")
    mid = len(data) // 2
    flipped.write_bytes(data[:mid] + bytes(x ^ 0xFF for x in data[mid : mid + 64]) + data[mid + 64 :])
    for path in (cut, empty):
        good, bad = _split(read_parquet(path))
        assert good == [] and len(bad) == 1
        assert bad[0]["reason"].startswith("truncated_file") and bad[0]["file"] == str(path)
    good, bad = _split(read_parquet(flipped))
    assert len(bad) == 1 and bad[0]["reason"].startswith("corrupt_file")
    assert 0 < len(good) < len(docs) and bad[0]["line"] == len(good) + 1
    assert [d["id"] for d in good] == [d["id"] for d in docs[: len(good)]]


def _damaged_inputs(root) -> dict:
    """A directory with one good file and four damaged ones; returns what a reader can recover."""
    root.mkdir()
    good = _docs(20, "g", seed=9)
    (root / "good.jsonl").write_bytes(_jsonl(good))
    kept = [d["id"] for d in good]
    for i, suffix in enumerate((".zst", ".gz")):
        docs = _docs(prefix=f"c{suffix[1]}", seed=i + 1)
        blob = _compress(_jsonl(docs), suffix)
        cut = blob[: len(blob) * 3 // 5]
        (root / f"cut.jsonl{suffix}").write_bytes(cut)
        kept += [d["id"] for d in docs[: _recoverable_lines(cut, suffix)]]
    docs = _docs(prefix="f", seed=5)
    flipped = bytearray(_compress(_jsonl(docs), ".zst"))
    flipped[len(flipped) // 2] ^= 0x10
    (root / "flipped.jsonl.zst").write_bytes(bytes(flipped))
    (root / "empty.jsonl.gz").write_bytes(b"")
    n_flipped_ok = sum(d is not None for d, _ in read_jsonl(root / "flipped.jsonl.zst"))  # checked on its own above
    kept += [d["id"] for d in docs[:n_flipped_ok]]
    return {"kept": kept, "damaged": {str(root / n) for n in ("cut.jsonl.zst", "cut.jsonl.gz", "flipped.jsonl.zst",
                                                                "empty.jsonl.gz")}}


def _warned_files(err: str) -> set[str]:
    """Files named by one-line warnings ``warning: damaged input file PATH: REASON ...``."""
    found = (re.match(r"warning: damaged input file (.+?): (truncated|corrupt)_file ", line) for line in err.splitlines())
    return {m.group(1) for m in found if m}


def test_curate_keeps_records_before_the_damage_counts_and_warns(tmp_path, capsys, monkeypatch):
    expect = _damaged_inputs(tmp_path / "in")
    out = tmp_path / "out"
    stats = curate(tmp_path / "in", out, recipe=RECIPE, workers=1, quiet=True)
    acc = stats["accounting"]
    assert acc["balanced"] and acc["kept"] == len(expect["kept"])
    assert acc["quarantined_by_reason"] == {"corrupt_file": 1, "truncated_file": 3}
    assert {d["file"] for d in stats["damaged_files"]} == expect["damaged"]
    assert all(d["reason"].split(" ")[0] in ("truncated_file", "corrupt_file") for d in stats["damaged_files"])
    assert sorted(read_out(out)) == sorted(expect["kept"])
    err = capsys.readouterr().err
    assert _warned_files(err) == expect["damaged"]
    assert "Traceback" not in err
    report = (out / "report.md").read_text()
    assert "truncated_file: 3" in report and all(f in report for f in expect["damaged"])

    # the same result with a process pool, and after a resumed (interrupted) run
    curate(tmp_path / "in", tmp_path / "two", recipe=RECIPE, workers=2, quiet=True)
    assert tree_bytes(tmp_path / "two") == tree_bytes(out)
    monkeypatch.setenv("OLMOFLOW_DATA_FAIL_AFTER", "2")
    with pytest.raises(InjectedFailure):
        curate(tmp_path / "in", tmp_path / "resumed", recipe=RECIPE, workers=1, quiet=True)
    monkeypatch.delenv("OLMOFLOW_DATA_FAIL_AFTER")
    capsys.readouterr()
    resumed = curate(tmp_path / "in", tmp_path / "resumed", recipe=RECIPE, workers=1, quiet=True)
    assert tree_bytes(tmp_path / "resumed") == tree_bytes(out)
    assert resumed["damaged_files"] == stats["damaged_files"]
    assert _warned_files(capsys.readouterr().err) == expect["damaged"]


@pytest.mark.slow
def test_ray_reports_damaged_files_like_the_local_pool(tmp_path, capsys):
    pytest.importorskip("ray")
    _damaged_inputs(tmp_path / "in")
    local = curate(tmp_path / "in", tmp_path / "local", recipe=RECIPE, workers=2, quiet=True)
    ray = curate(tmp_path / "in", tmp_path / "ray", recipe=RECIPE, workers=2, executor="ray", quiet=True)
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")
    assert ray["damaged_files"] == local["damaged_files"]
    err = capsys.readouterr().err
    assert len([x for x in err.splitlines() if x.startswith("warning: damaged input file")]) == 2 * 4


def test_iter_docs_warns_about_a_damaged_file(tmp_path, capsys):
    """iter_docs (e.g. quality-classifier training data) skips bad records, but names a damaged file."""
    docs = _docs()
    blob = _compress(_jsonl(docs), ".zst")
    path = tmp_path / "train.jsonl.zst"
    path.write_bytes(blob[: len(blob) // 2])
    got = list(iter_docs(path))
    assert got == docs[: _recoverable_lines(blob[: len(blob) // 2], ".zst")]
    assert _warned_files(capsys.readouterr().err) == {str(path)}


class _CountingFile(io.FileIO):
    """A file that records the size of every read (how the decoder is fed)."""

    def __init__(self, path):
        super().__init__(path, "rb")
        self.reads: list[int] = []

    def read(self, size=-1):
        self.reads.append(size)
        return super().read(size)


def test_gzip_is_fed_in_large_pieces_and_one_read_stays_bounded(tmp_path):
    """Speed: feeding zlib 1 KiB at a time made a .gz read ~25% slower than ``gzip.open``; it
    gets 64 KiB pieces now, while zlib's ``max_length`` keeps one read's output at most 1 MiB even
    at gzip's extreme ratio (64 MiB of zeros in ~64 KB)."""
    zeros = tmp_path / "zeros.jsonl.gz"
    zeros.write_bytes(gzip.compress(b"\0" * (64 << 20), 9))
    text = tmp_path / "text.jsonl.gz"
    text.write_bytes(_compress(_jsonl(_docs(2000)), ".gz"))
    for path, size in ((zeros, 64 << 20), (text, len(_jsonl(_docs(2000))))):
        raw = _CountingFile(path)
        reader = open_compressed(path, raw)
        stream = reader.raw  # the decoder under the BufferedReader
        buf, total, most = bytearray(8 << 20), 0, 0
        while n := stream.readinto(buf):
            total, most = total + n, max(most, n)
        assert total == size and most <= 1 << 20
        assert len(raw.reads) <= path.stat().st_size // (32 << 10) + 3, len(raw.reads)
        reader.close()


def _first_deflate_error(blob: bytes) -> tuple[bytes, int]:
    """``blob`` with one byte changed so that zlib stops with a data error (not the end CRC) inside
    the stream, and the complete lines zlib decodes before it when fed 1 KiB at a time."""
    for pos in range(len(blob) // 2, len(blob) - 8):
        bad = bytearray(blob)
        bad[pos] ^= 0xFF
        d, out = zlib.decompressobj(wbits=31), bytearray()
        try:
            for i in range(0, len(bad), 1024):
                out += d.decompress(bytes(bad[i : i + 1024]))
        except zlib.error as e:
            if "check" not in str(e) and len(bad) - pos > 64 << 10:
                return bytes(bad), out.count(b"\n")
    raise AssertionError("no position gives a deflate data error")


def test_gzip_data_error_keeps_the_records_decoded_before_it(tmp_path):
    """Large feeds must not cost records: at a deflate error the piece is decoded again in small
    steps, so the records kept are those a 1 KiB-at-a-time decoder gets before the error."""
    docs = _docs(1000)
    blob, k = _first_deflate_error(_compress(_jsonl(docs), ".gz"))
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(blob)
    good, bad = _split(read_jsonl(path))
    assert len(bad) == 1 and bad[0]["reason"].startswith("corrupt_file")
    assert k > 0 and good == docs[:k]
