"""flows/staged.yaml (quick variant): every staged-training stage runs in a flow and its report
card holds the controls (microanneal table, soup vs ingredients, midtrain vs continued
pretraining, retrieval by length before / after the extension with its plot)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from olmoflow.flow import load_flow, run_flow
from olmoflow.flow.report import write_report
from olmoflow.model import load

REPO = Path(__file__).resolve().parents[2]


def test_staged_flow_quick_variant_runs_and_reports_its_controls(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_flow(load_flow(REPO / "flows" / "staged.yaml", variant="quick"), tmp_path / "w", quiet=True)
    finally:
        torch.set_num_threads(n)
    art = {k: s.artifact_dir for k, s in res.stages.items()}
    # the long-context model: YaRN x4 from the pretraining context, full layers only
    m = load(art["long_context"] / "final")
    assert m.cfg.rope_scaling.factor == 4.0 and m.cfg.rope_scaling.original_max_seq_len == 128
    assert m.cfg.rope_scaling_sliding is None
    long = json.loads((art["compare_long"] / "results.json").read_text())["results"]
    assert set(long) == {"before", "after"}
    tasks = ("passkey", "passkey_choice", "niah_multikey_choice")
    assert set(long["after"]) == {f"{t}:{n}" for t in tasks for n in (128, 256, 512)}
    assert (art["compare_long"] / "by_length.png").is_file()
    mid = json.loads((art["compare_midtrain"] / "results.json").read_text())["results"]
    assert list(mid) == ["pretrain", "continued", "midtrain_a", "midtrain_b", "branch_a", "branch_b", "soup",
                         "soup_seeds"]
    # the soup's ingredients are branches of midtrain_a: both start from one of its checkpoints
    for b in ("branch_a", "branch_b"):
        cfg = json.loads((art[b] / "config.json").read_text())
        assert Path(cfg["init_from"]).parent.parent == art["midtrain_a"] and cfg["init_optimizer"]
    ctl = json.loads((art["continued"] / "config.json").read_text())
    mt = json.loads((art["midtrain_a"] / "config.json").read_text())
    assert ctl["steps"] == mt["steps"] and ctl["global_batch_tokens"] == mt["global_batch_tokens"]  # equal tokens
    assert set(ctl["data"]["mixture"]) == {"pretrain_mix/code", "pretrain_mix/math", "pretrain_mix/prose"}
    assert {k.split("/")[0] for k in mt["data"]["mixture"]} == {"pretrain_mix", "dolmino"}
    report = write_report(tmp_path / "w")[0].read_text()
    for heading in ("## Microanneals", "## Model soup", "## Model comparisons"):
        assert heading in report
    assert "worked_math (Δ)" in report and "Ranking" in report and "compare-compare_long.png" in report
