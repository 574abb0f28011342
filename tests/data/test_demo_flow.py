"""The demo corpus through the default recipe from the CLI; executors and real kills (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from datautil import read_out, tree_bytes

from olmoflow.cli import main
from olmoflow.data.curate import curate
from olmoflow.data.demo import build_demo_corpus


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return build_demo_corpus(root / "corpus", seed=0, max_docs_per_source=60, n_math_eval=100)


def test_default_recipe_on_demo_corpus_via_cli(demo, tmp_path, capsys):
    out = tmp_path / "curated"
    rc = main(["data", "curate", "--input", *demo["files"].values(), "--output", str(out),
               "--decontaminate", demo["eval"], "--workers", "2", "--quiet"])
    assert rc == 0
    assert "balanced" in capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text())
    assert stats["recipe"] == "dolma3-style" and stats["accounting"]["balanced"]
    kept = read_out(out)
    sources = {d["source"] for d in kept.values()}
    assert sources == {"code", "prose", "math"}
    # prose heuristics skip code: all code files survive the filters (dedup may still act)
    code_removed = [d for d in read_out(out, "removed").values() if d["source"] == "code"]
    assert all(d["removed_by"] in {"exact_dedup", "minhash_dedup", "substring_dedup"} for d in code_removed)
    assert any("<|fim_prefix|>" in d["text"] for d in kept.values() if d["source"] == "code")
    assert all("<|fim_prefix|>" not in d["text"] for d in kept.values() if d["source"] != "code")
    report = (out / "report.md").read_text()
    for step in ("normalize", "langid", "gopher_quality", "minhash_dedup", "substring_dedup", "fim"):
        assert f"| {step} |" in report


def test_quality_and_upsampling_in_a_recipe(demo, tmp_path):
    overrides = ["quality.enabled=true", f"quality.positive=[{demo['files']['prose']}]",
                 f"quality.negative=[{demo['files']['code']}]", "upsample.enabled=true",
                 "upsample.sources=[math]", "langid.enabled=false"]
    stats = curate(list(demo["files"].values()), tmp_path / "o", overrides=overrides, workers=1, quiet=True)
    acc = stats["accounting"]
    assert acc["balanced"] and acc["extra_copies_from_upsampling"] > 0
    assert stats["steps"]["upsample"]["removed"]["low_quality_bucket"] > 0
    assert sum(stats["histograms"]["quality_score"].values()) == acc["kept"]
    assert (tmp_path / "o" / "quality_scores.png").exists()


@pytest.mark.slow
def test_ray_executor_matches_local(demo, tmp_path):
    pytest.importorskip("ray")
    args = dict(decontaminate=[demo["eval"]], workers=2, quiet=True)
    curate(list(demo["files"].values()), tmp_path / "local", executor="local", **args)
    curate(list(demo["files"].values()), tmp_path / "ray", executor="ray", **args)
    assert tree_bytes(tmp_path / "ray") == tree_bytes(tmp_path / "local")


@pytest.mark.slow
def test_killed_subprocess_resumes_to_identical_output(tmp_path):
    corpus = build_demo_corpus(tmp_path / "c", seed=1)
    # split inputs into many shards so the kill lands mid-run
    shards = tmp_path / "shards"
    shards.mkdir()
    lines = [ln for f in corpus["files"].values() for ln in open(f, encoding="utf-8")]
    for k in range(12):
        (shards / f"part{k:02d}.jsonl").write_text("".join(lines[k::12]), encoding="utf-8")
    ref = tmp_path / "ref"
    curate(shards, ref, workers=2, quiet=True)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "olmoflow.cli", "data", "curate", "--input", str(shards), "--output", str(out),
           "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list((out / "_work" / "seg1").glob("*.done")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "stats.json").exists()
    assert subprocess.run(cmd).returncode == 0
    assert tree_bytes(out) == tree_bytes(ref)
