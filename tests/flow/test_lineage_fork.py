"""Lineage back to raw sources, and forks from a checkpoint that record where they came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.flow import load_flow, run_flow
from olmoflow.flow.lineage import build_lineage
from olmoflow.flow.store import read_manifest


def test_lineage_of_final_artifact_reaches_raw_source_through_every_stage(flow_file, tmp_path, cli):
    path = flow_file()
    wd = tmp_path / "w"
    res = run_flow(load_flow(path), wd, quiet=True)
    final = res.stages["eval"].artifact_dir
    lin = build_lineage(final, wd)
    assert sorted(lin.stages()) == sorted(res.order)
    assert [Path(s.path).name for s in lin.sources()] == ["raw.txt"]

    text = cli("lineage", str(final)).stdout
    for name in res.order:
        assert f"{name} (toy_" in text
        assert res.ids()[name][:12] in text
    assert "seed_text <- source" in text and "raw.txt" in text
    # the chain is nested: eval -> train -> curate -> corpus -> raw file
    lines = text.splitlines()
    idx = [next(i for i, ln in enumerate(lines) if key in ln)
           for key in ("eval (toy_eval)", "model <- train", "data <- curate", "docs <- corpus", "raw.txt")]
    assert idx == sorted(idx)

    # by id prefix with --workdir, and as graphviz
    by_id = cli("lineage", res.ids()["eval"][:10], "--workdir", str(wd)).stdout
    assert by_id == text
    dot = cli("lineage", res.ids()["eval"], "--workdir", str(wd), "--format", "dot").stdout
    assert dot.startswith("digraph lineage {") and dot.count("->") == 6  # 5 stage edges + vocab<-curate


def test_lineage_of_unknown_id_is_a_clear_error(tmp_path, cli):
    p = cli("lineage", "abcdef123456", "--workdir", str(tmp_path), check=False)
    assert p.returncode == 1 and "no artifact 'abcdef123456'" in p.stderr


def test_fork_from_checkpoint_records_origin_and_lineage_crosses_workdirs(flow_file, tmp_path, cli):
    path = flow_file()
    base = run_flow(load_flow(path), tmp_path / "base", quiet=True)
    ckpt = base.stages["train"].artifact_dir / "checkpoints" / "step2"
    assert ckpt.is_dir()
    fork_wd = tmp_path / "fork"
    cli("fork", "--from", str(ckpt), "--flow", str(path), "--workdir", str(fork_wd), "train.steps=2")
    state = json.loads((fork_wd / "flow.json").read_text())
    train = read_manifest(fork_wd / state["stages"]["train"]["artifact"])
    origin = train["fork_origin"]
    assert origin["from"] == str(ckpt.resolve()) and origin["stage"] == "train" and origin["input"] == "init_from"
    assert origin["artifact_id"] == base.ids()["train"] and origin["subpath"] == "checkpoints/step2"
    assert train["inputs"]["init_from"]["id"] == base.ids()["train"]
    assert train["metrics"]["fork"] is True
    # the descendant also records the fork; upstream stages do not
    ev = read_manifest(fork_wd / state["stages"]["eval"]["artifact"])
    assert ev["fork_origin"]["from"] == str(ckpt.resolve())
    assert read_manifest(fork_wd / state["stages"]["curate"]["artifact"])["fork_origin"] is None
    # the forked model really started from the checkpoint's weights
    w0 = json.loads((ckpt / "weights.json").read_text())["w"]
    w_fork = json.loads((fork_wd / state["stages"]["train"]["artifact"] / "final" / "weights.json").read_text())["w"]
    assert w_fork > w0
    # lineage of the fork's final artifact goes through the origin run's train stage
    text = cli("lineage", str(fork_wd / state["stages"]["eval"]["artifact"])).stdout
    assert f"init_from <- train (toy_train) {base.ids()['train'][:12]}" in text
    assert "fork of" in text
    assert "## Lineage" in (fork_wd / "REPORT.md").read_text()
    assert "Forked from" in (fork_wd / "REPORT.md").read_text()


def test_fork_by_artifact_id_and_bad_stage(flow_file, tmp_path):
    from olmoflow.flow.lineage import resolve_artifact

    path = flow_file()
    base = run_flow(load_flow(path), tmp_path / "base", quiet=True)
    origin = resolve_artifact(base.ids()["train"][:8], tmp_path / "base")
    res = run_flow(load_flow(path), tmp_path / "f", quiet=True, fork_from=origin)
    assert res.stages["train"].inputs["init_from"].id == base.ids()["train"]
    with pytest.raises(OlmoflowError, match="takes no checkpoint input"):
        run_flow(load_flow(path), tmp_path / "g", quiet=True, fork_from=origin, fork_stage="curate")


def test_lineage_names_the_checkpoint_an_input_came_from(flow_file, toy_flow, tmp_path, cli):
    """A stage started from ``${stages.train}/checkpoints/step2`` descends from that checkpoint, not the final model."""
    flow = toy_flow(train={"steps": 4})
    flow["stages"]["train2"] = {"type": "toy_train", "config": {"steps": 2},
                                "inputs": {"data": "${stages.curate}", "vocab": "${stages.vocab}",
                                           "init_from": "${stages.train}/checkpoints/step2"}}
    wd = tmp_path / "w"
    res = run_flow(load_flow(flow_file(flow)), wd, quiet=True)
    d = res.stages["train2"].artifact_dir
    text = cli("lineage", str(d)).stdout
    line = next(ln for ln in text.splitlines() if "init_from <- train (toy_train)" in ln)
    assert "checkpoints/step2" in line
    dot = cli("lineage", str(d), "--format", "dot").stdout
    assert f'"{res.ids()["train"]}" -> "{res.ids()["train2"]}" [label="init_from: checkpoints/step2"];' in dot
