"""``--dry-run`` prints the plan of the full OLMo 3 7B flow and does no work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from olmoflow.flow.estimate import gpu_hours, param_count
from olmoflow.flow.spec import load_flow, toposort

REPO = Path(__file__).resolve().parents[2]
OLMO3 = REPO / "flows" / "olmo3_7b.yaml"


def test_olmo3_7b_dry_run_prints_plan_and_does_no_work(tmp_path, cli):
    p = cli("run", "--dry-run", str(OLMO3), cwd=tmp_path)  # default workdir: runs/olmo3_7b
    out = p.stdout
    spec = load_flow(OLMO3)
    for name in toposort(spec):
        assert name in out
    for stage_type in ("midtrain", "soup", "long_context"):  # the staged base training, planned with its tokens
        assert re.search(rf"│ {stage_type} +│", out), stage_type
    assert "5.93T" in out and "100B" in out and "50B" in out
    # pretraining: 6 · 7.3B params · 5.93T tokens / (989e12 · 0.4) / 3600 ≈ 182k GPU-hours
    n = param_count("olmo3-7b")
    assert 7.2e9 < n < 7.4e9
    expected = gpu_hours(6 * n * 5.93e12)
    row = next(ln for ln in out.splitlines() if re.search(r"│ pretrain +│ pretrain", ln))
    assert f"{expected:,.0f}" in row
    assert 1.7e5 < expected < 1.9e5
    total = float(re.search(r"estimated total: ([\d,]+) H100 GPU-hours", out).group(1).replace(",", ""))
    assert total > expected
    assert list(tmp_path.iterdir()) == []  # no workdir, artifacts, log or state


def test_olmo3_7b_real_run_stops_at_the_first_remote_reference(tmp_path, cli):
    p = cli("run", str(OLMO3), "--workdir", str(tmp_path / "w"), check=False)
    assert p.returncode == 1
    assert "stages.curate_web.inputs.docs: dolma3://pool/common-crawl is a remote reference" in p.stderr
    assert not (tmp_path / "w" / "artifacts").exists()


def test_claims_flow_validates_every_stage_and_checks_each_claim(tmp_path, cli):
    """flows/claims.yaml is not run in CI (up to an hour): its plan and every stage config must still load."""
    flow = REPO / "flows" / "claims.yaml"
    out = cli("run", "--dry-run", str(flow), "--workdir", str(tmp_path / "w")).stdout
    spec = load_flow(flow)
    assert out.count("would run") == len(spec.stages)
    claims = spec.stages["claims"]
    inputs = set(claims.inputs)
    assert len(claims.config["claims"]) >= 12
    for c in claims.config["claims"]:  # every claim reads an input the stage has
        sides = [c["treatment"]] + ([c["control"]] if isinstance(c.get("control"), dict) else c.get("control") or [])
        assert {s["input"] for s in sides} <= inputs, c["claim"]


@pytest.mark.parametrize("name", ["rl_zero.yaml", "staged.yaml"])
def test_other_shipped_flows_plan_and_validate_every_stage(tmp_path, cli, name):
    """Flows not run in CI (minutes to an hour): their plan and every stage config must still load."""
    flow = REPO / "flows" / name
    out = cli("run", "--dry-run", str(flow), "--workdir", str(tmp_path / "w")).stdout
    assert out.count("would run") == len(load_flow(flow).stages)
