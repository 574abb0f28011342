"""Report card and release bundle of a (toy) flow workdir, including partial and failed runs."""

from __future__ import annotations

import hashlib
import json

import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.flow import StageFailed, load_flow, run_flow
from olmoflow.flow.release import make_release
from olmoflow.flow.report import write_report

SECTIONS = ["## Stages", "## Data funnel", "## Training loss", "## Evaluation", "## Sample generation",
            "## Lineage", "## Environment"]


def test_report_has_every_section_with_real_numbers(flow_file, tmp_path):
    wd = tmp_path / "w"
    res = run_flow(load_flow(flow_file()), wd, quiet=True)
    path, sample = write_report(wd)
    text = path.read_text()
    for s in SECTIONS:
        assert s in text
    assert "_not run_" not in text
    stats = json.loads((res.stages["curate"].artifact_dir / "stats.json").read_text())["steps"][0]
    assert f"| length_filter | {stats['docs_in']} | {stats['docs_out']} |" in text
    metrics = [json.loads(x) for x in (res.stages["train"].artifact_dir / "metrics.jsonl").read_text().splitlines()]
    assert f"loss {metrics[0]['loss']:.4g} (step 1) -> {metrics[-1]['loss']:.4g} (step 4)" in text
    assert "Checkpoint sweep: 2 checkpoints" in text
    for png in ("loss-train.png", "eval-eval.png", "funnel-curate.png"):
        assert (wd / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(report/{png})" in text
    assert sample == "the cat sat on a mat" and sample in text
    assert "raw sources:" in text and "raw.txt" in text
    for name in res.order:
        assert f"`{res.ids()[name][:12]}`" in text


def test_report_of_failed_run_shows_not_run_instead_of_crashing(flow_file, tmp_path, cli):
    wd = tmp_path / "w"
    with pytest.raises(StageFailed):
        run_flow(load_flow(flow_file(), ["train.fail_at_step=1"]), wd, quiet=True)
    text = write_report(wd)[0].read_text()
    assert "| train | toy_train | failed |" in text
    assert "| eval | toy_eval | not run |" in text
    assert "## Training loss\n\n_not run_" in text and "## Evaluation\n\n_not run_" in text
    assert "## Data funnel\n\n_not run_" not in text  # curate did run
    assert cli("report", str(wd)).stdout.strip() == str(wd / "REPORT.md")
    bad = cli("report", str(tmp_path / "nowhere"), check=False)
    assert bad.returncode == 1 and "no such directory" in bad.stderr


def test_release_bundle_contents(flow_file, tmp_path, cli):
    wd = tmp_path / "w"
    res = run_flow(load_flow(flow_file()), wd, quiet=True)
    out = tmp_path / "release"
    cli("release", str(wd), "--out", str(out))
    index = json.loads((out / "release.json").read_text())
    assert index["artifacts"] == res.ids()
    for rel, digest in index["files"].items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    for name in res.order:
        assert (out / "configs" / f"{name}.json").is_file()
        assert json.loads((out / "manifests" / f"{name}.manifest.json").read_text())["id"] == res.ids()[name]
    assert (out / "configs" / "flow.yaml").read_text().count("type: toy_") == 5
    assert (out / "data" / "curate" / "stats.json").is_file()
    assert (out / "reports" / "REPORT.md").is_file() and (out / "reports" / "report" / "loss-train.png").is_file()
    assert (out / "logs" / "log.jsonl").is_file() and (out / "logs" / "train.metrics.jsonl").is_file()
    ckpts = json.loads((out / "checkpoints.json").read_text())["checkpoints"]
    assert [(c["stage"], c["step"]) for c in ckpts] == [("train", 2), ("train", 4)]
    assert all((wd / c["path"]).is_dir() for c in ckpts)
    # no export stage in the toy flow: the native final weights are released
    assert index["weights"] == "native" and (out / "model" / "weights.json").is_file()
    card = (out / "README.md").read_text()
    assert card.startswith("# toy") and "Intermediate checkpoints: 2" in card and "olmoflow run configs/flow.yaml" in card
    with pytest.raises(OlmoflowError, match="exists; pass --force"):
        make_release(wd, out)
    make_release(wd, out, force=True)


def test_release_of_an_incomplete_run_is_refused_naming_the_stages(flow_file, tmp_path, cli):
    """A release bundle promises the final weights: a failed run must not produce one without them."""
    wd = tmp_path / "w"
    with pytest.raises(StageFailed):
        run_flow(load_flow(flow_file(), ["train.fail_at_step=1"]), wd, quiet=True)
    p = cli("release", str(wd), "--out", str(tmp_path / "rel"), check=False)
    assert p.returncode == 1
    assert "train (failed)" in p.stderr and "eval (not run)" in p.stderr
    assert not (tmp_path / "rel").exists() and not (tmp_path / "rel.partial").exists()


def test_release_and_report_notice_a_deleted_artifact(flow_file, tmp_path):
    import shutil

    wd = tmp_path / "w"
    res = run_flow(load_flow(flow_file()), wd, quiet=True)
    shutil.rmtree(res.stages["eval"].artifact_dir)
    assert "| eval | toy_eval | missing |" in write_report(wd)[0].read_text()
    with pytest.raises(OlmoflowError, match=r"eval \(missing: .*eval-"):
        make_release(wd, tmp_path / "rel")


@pytest.mark.parametrize("where", ["workdir", "parent", "artifact"])
def test_release_force_never_deletes_the_workdir_or_its_artifacts(flow_file, tmp_path, where):
    wd = tmp_path / "runs" / "w"
    res = run_flow(load_flow(flow_file()), wd, quiet=True)
    out = {"workdir": wd, "parent": wd.parent, "artifact": res.stages["train"].artifact_dir}[where]
    with pytest.raises(OlmoflowError, match="would delete"):
        make_release(wd, out, force=True)
    assert all((res.stages[n].artifact_dir / "COMPLETE").is_file() for n in res.order)
    assert (wd / "flow.json").is_file()

