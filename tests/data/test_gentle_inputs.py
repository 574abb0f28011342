"""Gentler inputs, through the real CLI: Dolma JSONL without ``id`` gets deterministic ids (file + line)
with one notice, curation that keeps nothing fails with its top reasons, token data of another vocabulary
than the model's is refused naming both sizes, and ``eval --limit`` says it is per subject for
subject-grouped tasks. (A prompt longer than the context and output to a pipe: tests/flow/test_use.py.)"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def olmoflow(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "olmoflow.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def no_id_docs(tmp_path_factory) -> Path:
    """The demo corpus's prose and code documents with their ``id`` removed (a plain ``{"text": ...}`` file)."""
    from olmoflow.data.demo import build_demo_corpus

    root = tmp_path_factory.mktemp("noid")
    info = build_demo_corpus(root / "corpus", max_docs_per_source=15, n_math=10, n_math_eval=2)
    out = root / "in"
    out.mkdir()
    for src in ("prose", "code"):
        docs = [json.loads(ln) for ln in Path(info["files"][src]).read_text().splitlines()]
        (out / f"{src}.jsonl").write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in docs))
    return out


def _kept_ids(out: Path) -> list[str]:
    ids = []
    for f in sorted((out / "documents").glob("*.jsonl*")):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt") as fh:
            ids += [json.loads(ln)["id"] for ln in fh if ln.strip()]
    return ids


def test_jsonl_without_ids_gets_file_and_line_ids_with_one_notice(no_id_docs, tmp_path):
    runs = []
    for k in range(2):
        p = olmoflow("data", "curate", "-i", str(no_id_docs), "-o", str(tmp_path / f"out{k}"), "--workers", "1", "-q")
        assert p.returncode == 0, p.stderr
        runs.append((p, _kept_ids(tmp_path / f"out{k}")))
    p, ids = runs[0]
    notices = [ln for ln in p.stderr.splitlines() if ln.startswith("notice:")]
    assert len(notices) == 2  # one line per file, not one per record
    assert all("without an 'id'" in ln and ":LINE'" in ln for ln in notices)
    stats = json.loads((tmp_path / "out0" / "stats.json").read_text())["accounting"]
    assert stats["quarantined"] == 0 and stats["kept"] > 0
    assert ids and all(i.split(":")[0] in ("prose.jsonl", "code.jsonl") and i.split(":")[1].isdigit() for i in ids)
    assert runs[1][1] == ids  # deterministic: the same input gets the same ids


def test_curation_that_keeps_nothing_fails_with_the_top_reasons(tmp_path):
    docs = tmp_path / "in.jsonl"
    # every document is removed by one rule (a few words: not recognisably English), one record is quarantined
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Too short {i}."}) + "\n" for i in range(12)))
    docs.write_text(docs.read_text() + json.dumps({"id": "x", "title": "no text"}) + "\n")
    p = olmoflow("data", "curate", "-i", str(docs), "-o", str(tmp_path / "out"), "--workers", "1", "-q")
    assert p.returncode == 1
    err = p.stderr.strip().splitlines()[-1]
    assert "curation kept 0 of 13 documents; top reasons:" in err
    assert re.search(r"top reasons: \w+: \S+ \(12\); quarantined: missing_text \(1\) \(see ", err), err
    assert (tmp_path / "out" / "report.md").is_file()  # what was removed is still written


def test_pretraining_on_data_of_another_vocabulary_is_refused_naming_both_sizes(tmp_path):
    from olmoflow.data.tokens import ShardWriter, write_meta

    data = tmp_path / "tokens"
    data.mkdir()
    rng = np.random.default_rng(0)
    with ShardWriter(data, "web-00000", "web", "uint16") as w:
        for i in range(20):
            w.add(np.append(rng.integers(2, 300, size=40), 0), f"web-{i}")
    write_meta(data, [w.entry], 300, 0, "a 300-token tokenizer")
    cfg = {"run_dir": str(tmp_path / "run"), "data": {"paths": [str(data)]}, "seq_len": 32, "micro_batch": 2,
           "global_batch_tokens": 64, "steps": 2,
           "model": {"vocab_size": 512, "d_model": 32, "n_layers": 1, "n_heads": 2, "mlp_hidden": 64,
                     "max_seq_len": 64, "eos_token_id": 0, "pad_token_id": 1}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    p = olmoflow("pretrain", "--config", str(tmp_path / "cfg.yaml"), "--dry-run")
    assert p.returncode == 1
    err = p.stderr.strip()
    assert "\n" not in err and "vocabulary of 300 tokens" in err and "vocab_size is 512" in err
    # the model's vocabulary padded up to a multiple of 128 (as OLMo pads 100278 to 100352) is the same one
    cfg["model"]["vocab_size"] = 384
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    p = olmoflow("pretrain", "--config", str(tmp_path / "cfg.yaml"), "--dry-run")
    assert p.returncode == 0, p.stderr


def test_eval_limit_help_says_per_subject():
    p = olmoflow("eval", "--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    assert "the first N of each subject" in text and "subject-grouped tasks" in text
