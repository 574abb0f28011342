"""Bad input is quarantined with a reason and counted, and the run goes on; bad recipes fail early."""

from __future__ import annotations

import gzip
import json

import pytest
from datautil import read_out, write_jsonl

from olmoflow.config import ConfigError
from olmoflow.data.curate import curate
from olmoflow.data.documents import read_jsonl

RECIPE = {"name": "t", "max_doc_bytes": 1_000_000, "steps": [{"step": "normalize"}, {"step": "exact_dedup"}]}


def _quarantine(out):
    recs = []
    for f in sorted((out / "quarantine").glob("*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            recs += [json.loads(x) for x in fh]
    return recs


def test_bad_records_quarantined_and_counted(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = [{"id": f"g{i}", "text": f"good document number {i}"} for i in range(5)]
    with open(src / "mixed.jsonl", "wb") as f:
        f.write((json.dumps(good[0]) + "\n").encode())
        f.write(b'{"id": "broken", "text": "no closing brace"\n')
        f.write(b'{"id": "bad-utf8", "text": "caf\xe9 \xff"}\n')
        f.write((json.dumps({"id": "no-text", "title": "x"}) + "\n").encode())
        f.write((json.dumps({"id": "empty", "text": "   "}) + "\n").encode())
        f.write((json.dumps({"id": "huge", "text": "x" * (50 * 1024 * 1024)}) + "\n").encode())
        f.write((json.dumps(good[1]) + "\n").encode())
    write_jsonl(src / "fine.jsonl", good[2:])
    (src / "corrupt.jsonl.gz").write_bytes(b"this is not gzip data at all")
    out = tmp_path / "out"
    stats = curate(src, out, recipe=RECIPE, workers=1, quiet=True)
    acc = stats["accounting"]
    assert acc["balanced"]
    assert acc["kept"] == 5 and set(read_out(out)) == {f"g{i}" for i in range(5)}
    assert acc["quarantined"] == 6
    assert acc["quarantined_by_reason"] == {
        "empty_text": 1, "invalid_utf8": 1, "malformed_json": 1, "missing_text": 1, "too_large": 1,
        "corrupt_file": 1,  # not gzip data at all, under a .gz name
    }
    q = _quarantine(out)
    by_reason = {r["reason"].split(" ")[0]: r for r in q}
    assert by_reason["malformed_json"]["line"] == 2 and by_reason["malformed_json"]["file"].endswith("mixed.jsonl")
    assert by_reason["too_large"]["line"] == 6
    assert by_reason["corrupt_file"]["file"].endswith("corrupt.jsonl.gz") and by_reason["corrupt_file"]["line"] == 1
    assert "quarantined **6**" in (out / "report.md").read_text()


def test_oversized_line_is_skipped_without_loading_it(tmp_path):
    p = tmp_path / "big.jsonl"
    with open(p, "w") as f:
        f.write(json.dumps({"id": "a", "text": "y" * 5000}) + "\n")
        f.write(json.dumps({"id": "b", "text": "ok"}) + "\n")
    recs = list(read_jsonl(p, max_doc_bytes=1000))
    assert recs[0][0] is None and recs[0][1]["reason"].startswith("too_large")
    assert recs[1][0]["id"] == "b"


@pytest.mark.parametrize(
    "recipe, key",
    [
        ({"steps": [{"step": "normalize"}, {"step": "dedupe_everything"}]}, "steps.1.step"),
        ({"steps": [{"step": "langid", "min_score": 1.5}]}, "steps.0.min_score"),
        ({"steps": [{"step": "minhash_dedup", "jaccard_threshold": -0.1}]}, "steps.0.jaccard_threshold"),
        ({"steps": [{"step": "pii", "emial": True}]}, "steps.0.emial"),
        ({"steps": [{"step": "normalize"}], "sed": 1}, "sed"),
        ({"steps": [{"step": "langid", "language": "ENGLSH"}]}, "steps.0.language"),
        ({"steps": [{"step": "normalize"}, {"step": "langid", "languages": ["KLINGON"]}]}, "steps.1.languages"),
        ({"steps": [{"step": "normalize", "form": "NFX"}]}, "steps.0.form"),
    ],
)
def test_invalid_recipe_fails_before_any_work(tmp_path, recipe, key):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "hello"}])
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as e:
        curate(tmp_path / "a.jsonl", out, recipe=recipe, quiet=True)
    assert f"'{key}'" in str(e.value)
    assert not out.exists()


def test_override_out_of_range_names_step_key(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "hello"}])
    with pytest.raises(ConfigError, match=r"steps\.\d+\.min_score"):
        curate(tmp_path / "a.jsonl", tmp_path / "out", overrides=["langid.min_score=7"], quiet=True)
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_recipe_as_one_line(tmp_path, capsys):
    from olmoflow.cli import main

    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "hello"}])
    bad = tmp_path / "r.yaml"
    bad.write_text("steps:\n  - step: normalize\n  - step: nope\n")
    rc = main(["data", "curate", "--input", str(tmp_path / "a.jsonl"), "--output", str(tmp_path / "o"),
               "--recipe", str(bad), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "steps.1.step" in err and "unknown step 'nope'" in err and err.count("\n") == 1


def test_unreadable_source_file_in_a_tree_is_quarantined(tmp_path):
    src = tmp_path / "repo"
    src.mkdir()
    (src / "ok.py").write_text("print('hello world')\n")
    (src / "gone.py").symlink_to(tmp_path / "does-not-exist.py")
    (src / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    stats = curate(src, tmp_path / "out", recipe=RECIPE, workers=1, quiet=True)
    acc = stats["accounting"]
    assert acc["balanced"] and acc["kept"] == 1
    assert acc["quarantined_by_reason"] == {"invalid_utf8": 1, "unreadable_file": 1}
    assert set(read_out(tmp_path / "out")) == {"repo/ok.py"}


def test_unknown_executor_is_a_user_error(tmp_path):
    from olmoflow.errors import OlmoflowError

    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "hello"}])
    with pytest.raises(OlmoflowError, match="unknown executor 'spark'"):
        curate(tmp_path / "a.jsonl", tmp_path / "out", recipe=RECIPE, executor="spark", quiet=True)


def test_lone_surrogate_escape_is_quarantined_not_a_crash(tmp_path):
    """JSON may escape a lone surrogate ("\\ud800"): not Unicode, cannot be UTF-8 encoded or hashed."""
    src = tmp_path / "in.jsonl"
    with open(src, "w", encoding="utf-8") as f:
        f.write(json.dumps({"id": "g0", "text": "good document zero"}) + "\n")
        f.write('{"id": "s1", "text": "bad \\ud800 text"}\n')
        f.write('{"id": "s2", "text": "fine text", "metadata": {"title": "x\\udfff"}}\n')
        f.write('{"id": "pair", "text": "emoji \\ud83d\\ude00 is a valid pair"}\n')
    out = tmp_path / "out"
    stats = curate(src, out, recipe=RECIPE, workers=1, quiet=True)
    acc = stats["accounting"]
    assert acc["balanced"] and acc["kept"] == 2 and acc["quarantined"] == 2
    assert acc["quarantined_by_reason"] == {"invalid_unicode": 2}
    assert set(read_out(out)) == {"g0", "pair"}
    q = sorted(_quarantine(out), key=lambda r: r["line"])
    assert [r["line"] for r in q] == [2, 3]
    assert "text" in q[0]["reason"] and "metadata.title" in q[1]["reason"]


@pytest.mark.parametrize("eval_line", [None, '{"id": "q1", "question": "unterminated\n'])
def test_bad_eval_file_in_recipe_fails_before_any_document_is_read(tmp_path, eval_line):
    from olmoflow.errors import OlmoflowError

    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "hello"}])
    ev = tmp_path / "eval.jsonl"
    if eval_line is not None:
        ev.write_text(eval_line)
    recipe = {"steps": [{"step": "normalize"}, {"step": "decontaminate", "eval_files": [str(ev)]}]}
    out = tmp_path / "out"
    with pytest.raises(OlmoflowError, match="eval.jsonl"):
        curate(tmp_path / "a.jsonl", out, recipe=recipe, workers=1, quiet=True)
    assert not (out / "quarantine").exists() and not (out / "documents").exists()
