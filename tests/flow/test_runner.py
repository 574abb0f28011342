"""Runner behaviour users rely on: determinism, caching, failure recovery, manifests, logs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.flow import StageFailed, load_flow, run_flow
from olmoflow.flow.store import read_manifest


def _run(path: Path, workdir: Path, *overrides: str):
    return run_flow(load_flow(path, list(overrides)), workdir, quiet=True)


def test_same_seed_same_artifact_ids_in_separate_workdirs(flow_file, tmp_path):
    path = flow_file()
    a = _run(path, tmp_path / "wa")
    b = _run(path, tmp_path / "wb")
    assert a.executed == b.executed == ["corpus", "curate", "vocab", "train", "eval"]
    assert a.ids() == b.ids()
    assert all(v and len(v) == 64 for v in a.ids().values())
    # the manifests differ in timings/host fields but not in id; the content really is identical
    ma = read_manifest(a.stages["train"].artifact_dir)
    mb = read_manifest(b.stages["train"].artifact_dir)
    assert ma["content"]["sha256"] == mb["content"]["sha256"]
    assert ma["started"] and ma["wall_s"] >= 0 and "host" in ma["environment"]
    # a different seed gives different content
    c = _run(path, tmp_path / "wc", "seed=8")
    assert c.ids()["corpus"] != a.ids()["corpus"]


def test_manifest_records_provenance(flow_file, tmp_path):
    res = _run(flow_file(), tmp_path / "w")
    m = read_manifest(res.stages["train"].artifact_dir)
    assert m["stage"] == "train" and m["type"] == "toy_train" and m["seed"] == 7
    assert m["config"] == {"steps": 4, "checkpoint_every": 2}
    assert len(m["config_hash"]) == 16
    assert m["inputs"]["data"]["id"] == res.ids()["curate"]
    assert m["inputs"]["vocab"]["id"] == res.ids()["vocab"]
    assert m["metrics"]["steps"] == 4
    assert set(m["environment"]) >= {"python", "torch", "platform", "device", "host"}
    assert m["code_version"]["version"]
    for k in ("started", "ended", "wall_s", "cache_key"):
        assert k in m
    raw = read_manifest(res.stages["corpus"].artifact_dir)["inputs"]["seed_text"]
    assert raw["kind"] == "external" and raw["path"].endswith("raw.txt") and len(raw["id"]) == 64
    log = [json.loads(x) for x in (tmp_path / "w" / "log.jsonl").read_text().splitlines()]
    events = [e["event"] for e in log]
    assert events[0] == "run_start" and events[-1] == "run_end"
    assert events.count("stage_end") == 5 and "toy_train_done" in events


def test_rerun_skips_everything_and_config_change_reruns_descendants_only(flow_file, tmp_path):
    path = flow_file()
    wd = tmp_path / "w"
    first = _run(path, wd)
    second = _run(path, wd)
    assert second.executed == []
    assert second.ids() == first.ids()
    third = _run(path, wd, "train.steps=6")
    assert third.executed == ["train", "eval"]
    assert third.cached == ["corpus", "curate", "vocab"]
    assert third.ids()["train"] != first.ids()["train"]
    # changing a mid-flow stage reruns it and everything downstream of it, nothing upstream
    fourth = _run(path, wd, "curate.max_words=8")
    assert fourth.executed == ["curate", "vocab", "train", "eval"]
    assert fourth.cached == ["corpus"]


def test_changed_external_source_reruns_its_consumers(flow_file, tmp_path):
    path = flow_file()
    wd = tmp_path / "w"
    _run(path, wd)
    (path.parent / "raw.txt").write_text("a changed raw line\n")
    assert _run(path, wd).executed == ["corpus", "curate", "vocab", "train", "eval"]


def test_failing_stage_leaves_nothing_complete_and_rerun_completes(flow_file, toy_flow, tmp_path):
    wd = tmp_path / "w"
    path = flow_file()
    with pytest.raises(StageFailed, match="train.*toy failure at step 3"):
        _run(path, wd, "train.fail_at_step=3")
    bad = list((wd / "artifacts").glob("train-*"))
    assert len(bad) == 1 and not (bad[0] / "COMPLETE").exists()
    assert (bad[0] / "checkpoints" / "step2").is_dir()  # it did die mid-way
    assert not list((wd / "artifacts").glob("eval-*"))
    state = json.loads((wd / "flow.json").read_text())
    assert state["stages"]["train"]["status"] == "failed"
    res = _run(path, wd)
    assert res.executed == ["train", "eval"]  # upstream stages come from the cache


def test_sigkilled_run_leaves_nothing_complete_and_rerun_completes(flow_file, toy_flow, tmp_path, cli, sigkill_run):
    flow = toy_flow(train={"steps": 8, "sleep_per_step": 0.25})
    path = flow_file(flow)
    wd = tmp_path / "w"
    sigkill_run(path, wd, "artifacts/train-*/checkpoints/step2", timeout_s=60)
    train_dirs = list((wd / "artifacts").glob("train-*"))
    assert len(train_dirs) == 1 and not (train_dirs[0] / "COMPLETE").exists()
    assert not (train_dirs[0] / "final").exists()
    cli("run", str(path), "--workdir", str(wd), "--quiet")
    state = json.loads((wd / "flow.json").read_text())
    assert [n for n in state["order"] if state["stages"][n]["status"] == "run"] == ["train", "eval"]
    assert (train_dirs[0] / "COMPLETE").exists()
    # the resumed result is the same artifact a clean run produces
    clean = _run(path, tmp_path / "clean")
    assert state["stages"]["train"]["id"] == clean.ids()["train"]


def test_planned_stage_type_refuses_to_run_clearly(tmp_path):
    from olmoflow.flow import parse_flow
    from olmoflow.flow.registry import STAGES, register_planned

    register_planned("toy_planned", "a stage type declared for plans only")
    try:
        spec = parse_flow({"stages": {"mid": {"type": "toy_planned", "config": {"tokens": 1e9}}}}, base_dir=tmp_path)
        with pytest.raises(OlmoflowError, match="stage type 'toy_planned' is not implemented yet"):
            run_flow(spec, tmp_path / "w", quiet=True)
        assert not (tmp_path / "w").exists()
    finally:
        STAGES.pop("toy_planned", None)


def test_missing_external_input_names_the_stage_and_path(flow_file, tmp_path):
    path = flow_file()
    (path.parent / "raw.txt").unlink()
    with pytest.raises(OlmoflowError, match=r"stages\.corpus\.inputs\.seed_text: path not found: .*raw\.txt"):
        _run(path, tmp_path / "w")


def test_cli_run_prints_summary_and_writes_report(flow_file, tmp_path, cli):
    wd = tmp_path / "w"
    p = cli("run", str(flow_file()), "--workdir", str(wd), "train.steps=2")
    assert "5 stage(s) run, 0 cached" in p.stdout
    assert (wd / "REPORT.md").is_file()
    p2 = cli("run", str(flow_file()), "--workdir", str(wd), "train.steps=2")
    assert "0 stage(s) run, 5 cached" in p2.stdout
    bad = cli("run", str(flow_file()), "--workdir", str(wd), "nosuch.x=1", check=False)
    assert bad.returncode == 1 and "no stage 'nosuch'" in bad.stderr


def test_second_concurrent_run_in_same_workdir_is_refused(flow_file, toy_flow, tmp_path, cli):
    path = flow_file(toy_flow(train={"steps": 40, "sleep_per_step": 0.25}))
    wd = tmp_path / "w"
    proc = subprocess.Popen([sys.executable, "-m", "olmoflow.cli", "run", str(path), "--workdir", str(wd), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not list((wd / "artifacts").glob("train-*/metrics.jsonl")):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        p = cli("run", str(path), "--workdir", str(wd), check=False)
        assert p.returncode == 1 and f"{wd} is in use by another olmoflow run (pid {proc.pid})" in p.stderr
    finally:
        proc.kill()
        proc.wait()


def test_unknown_stage_type_names_the_flow_file_and_stage(flow_file, toy_flow, tmp_path, cli):
    flow = toy_flow()
    flow["stages"]["vocab"]["type"] = "toy_vocabb"
    path = flow_file(flow)
    for extra in (["--dry-run"], [], ["train.steps=2"]):
        p = cli("run", str(path), "--workdir", str(tmp_path / "w"), *extra, check=False)
        assert p.returncode == 1
        assert f"{path}: stages.vocab.type: unknown stage type 'toy_vocabb'" in p.stderr
    ck = tmp_path / "ck"
    ck.mkdir()
    p = cli("fork", "--from", str(ck), "--flow", str(path), "--workdir", str(tmp_path / "f"), check=False)
    assert p.returncode == 1 and f"{path}: stages.vocab.type: unknown stage type 'toy_vocabb'" in p.stderr
    assert not (tmp_path / "w").exists() and not (tmp_path / "f").exists()
