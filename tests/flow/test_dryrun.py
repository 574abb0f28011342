"""``--dry-run`` prints the plan of the full OLMo 3 7B flow and does no work."""

from __future__ import annotations

import re
from pathlib import Path

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
    assert "planned (not implemented)" in out
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


def test_olmo3_7b_real_run_stops_at_unimplemented_stage_type(tmp_path, cli):
    p = cli("run", str(OLMO3), "--workdir", str(tmp_path / "w"), check=False)
    assert p.returncode == 1
    assert "stage type 'midtrain' is not implemented yet" in p.stderr
    assert not (tmp_path / "w").exists()


def test_olmo3_7b_pretrain_hyperparameters(tmp_path):
    """The published recipe: lr 3e-4, 2000 warmup steps, cosine, 4M-token batches, 5.93T tokens."""
    cfg = load_flow(OLMO3).stages["pretrain"].config
    assert cfg["optimizer"]["lr"] == 3e-4 and cfg["schedule"] == {"name": "cosine", "warmup_steps": 2000}
    assert cfg["global_batch_tokens"] == 4 * 1024 * 1024 and cfg["tokens"] == 5_930_000_000_000
    assert cfg["model"] == "olmo3-7b" and cfg["seq_len"] == 8192


def test_dry_run_of_toy_flow_shows_cached_stages(flow_file, tmp_path, cli):
    path = flow_file()
    wd = tmp_path / "w"
    cli("run", str(path), "--workdir", str(wd), "--quiet")
    before = sorted(p.name for p in (wd / "artifacts").iterdir())
    log_before = (wd / "log.jsonl").read_text()
    out = cli("run", "--dry-run", str(path), "--workdir", str(wd), "train.steps=9").stdout
    assert out.count("cached") == 3 and out.count("would run") == 2
    assert sorted(p.name for p in (wd / "artifacts").iterdir()) == before
    assert (wd / "log.jsonl").read_text() == log_before


def test_rl_zero_flow_plans_the_real_and_the_random_reward_run_from_one_base(tmp_path, cli):
    """flows/rl_zero.yaml: the two RL-Zero runs differ only in the reward and share base stages with the demo."""
    import yaml

    path = REPO / "flows" / "rl_zero.yaml"
    spec = yaml.safe_load(path.read_text())
    real, control = spec["stages"]["rl_zero"], spec["stages"]["rl_zero_random"]
    assert real["inputs"] == control["inputs"] and real["inputs"]["model"] == "${stages.pretrain}"
    assert {k: v for k, v in control["config"].items() if k != "reward"} == real["config"]
    assert control["config"]["reward"] == "random" and real["config"]["prompt_format"] == "plain"
    tiny = yaml.safe_load((REPO / "flows" / "tiny.yaml").read_text())["stages"]
    for name in ("corpus", "curate", "tokenizer", "tokenize", "mix", "pretrain", "chat"):
        assert spec["stages"][name] == tiny[name], name  # same cache keys: a demo workdir reuses them
    out = cli("run", "--dry-run", str(path), "--workdir", str(tmp_path / "w")).stdout
    assert "rl_zero_random" in out and out.count("would run") == len(spec["stages"])
