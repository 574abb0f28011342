"""The post-training stages in a flow: chat_data -> sft -> pairs -> dpo -> rlvr (+ random control)
-> evaluate, each an artifact with lineage, and their REPORT.md sections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from olmoflow.errors import OlmoflowError
from olmoflow.flow.report import write_report
from olmoflow.flow.runner import run_flow
from olmoflow.flow.spec import load_flow

TINY = {"d_model": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "mlp_hidden": 64, "max_seq_len": 512}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """A tokenizer trained on the offline chat data and a tiny random model that matches it."""
    from olmoflow.eval.toy import make_toy_model
    from olmoflow.posttrain.synth import make_chat_data
    from olmoflow.tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("base")
    make_chat_data(d / "chat", seed=0, n_train=200, n_heldout=10)
    texts = [json.dumps(json.loads(line)["messages"]) for line in (d / "chat" / "sft.jsonl").read_text().splitlines()]
    (d / "corpus.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    tok = train_tokenizer([d / "corpus.jsonl"], d / "tok", vocab_size=600, quiet=True, split_digits=True)
    model = make_toy_model(d / "model", tok, seed=0, hf=False, **TINY)
    return tok, model


def _flow(tmp_path: Path, tok: Path, model: Path, **over) -> Path:
    train = {"seq_len": 384, "micro_batch": 4, "steps": 2, "optimizer": {"lr": 1e-3}}
    stages = {
        "chat": {"type": "chat_data", "config": {"n_train": 120, "n_heldout": 6}},
        "sft": {"type": "sft", "config": {**train, "global_batch_tokens": 384 * 4},
                "inputs": {"model": str(model), "tokenizer": str(tok), "data": "${stages.chat}"}},
        "pairs": {"type": "pairs", "config": {"limit": 6, "strong_samples": 2, "max_new_tokens": 12,
                                              "require_better": False, "max_len_delta": 100},
                  "inputs": {"strong": "${stages.sft}", "weak": str(model), "tokenizer": str(tok),
                             "prompts": "${stages.chat}"}},
        "dpo": {"type": "dpo", "config": {"seq_len": 384, "micro_batch": 2, "global_batch_pairs": 2, "steps": 2},
                "inputs": {"model": "${stages.sft}", "tokenizer": str(tok), "data": "${stages.pairs}"}},
        "rlvr": {"type": "rlvr", "config": {"seq_len": 384, "micro_batch": 8, "steps": 2, "prompts_per_step": 2,
                                            "rollout": {"group_size": 2, "max_new_tokens": 8}, "eval_every": 2,
                                            "max_rounds": 1, "active_sampling": False, "eval_samples": 2},
                 "inputs": {"model": "${stages.dpo}", "tokenizer": str(tok), "data": "${stages.chat}/heldout/arith.jsonl",
                            "heldout": "${stages.chat}"}},
        "rlvr_random": {"type": "rlvr", "config": {"seq_len": 384, "micro_batch": 8, "steps": 2, "prompts_per_step": 2,
                                                   "rollout": {"group_size": 2, "max_new_tokens": 8}, "reward": "random",
                                                   "max_rounds": 1, "active_sampling": False},
                        "inputs": {"model": "${stages.dpo}", "tokenizer": str(tok),
                                   "data": "${stages.chat}/heldout/arith.jsonl"}},
    }
    for k, v in over.items():
        stages[k]["config"].update(v)
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({"name": "posttrain-test", "seed": 0, "stages": stages}))
    return path


def test_posttrain_stages_run_as_a_flow_with_report_sections(tmp_path, base):
    tok, model = base
    wd = tmp_path / "wd"
    res = run_flow(load_flow(_flow(tmp_path, tok, model)), wd, quiet=True)
    assert res.executed == list(res.order)
    arts = {name: Path(plan.artifact_dir) for name, plan in res.stages.items()}
    assert (arts["chat"] / "sft.jsonl").is_file() and (arts["chat"] / "heldout" / "arith.jsonl").is_file()
    for stage in ("sft", "dpo", "rlvr", "rlvr_random"):
        assert (arts[stage] / "final" / "model.safetensors").is_file(), stage
        recs = [json.loads(x) for x in (arts[stage] / "metrics.jsonl").read_text().splitlines()]
        # rlvr has held-out prompts: it also scores them before the first step (step 0)
        assert [r["step"] for r in recs] == ([0, 1, 2] if stage == "rlvr" else [1, 2]), stage
    stats = json.loads((arts["pairs"] / "stats.json").read_text())
    assert stats["prompts"] == 6 and stats["kept"] == sum(1 for _ in open(arts["pairs"] / "pairs.jsonl"))
    dpo_recs = [json.loads(x) for x in (arts["dpo"] / "metrics.jsonl").read_text().splitlines()]
    assert {"reward_acc", "reward_margin", "chosen_logratio", "rejected_logratio"} <= dpo_recs[0].keys()
    rl_last = json.loads((arts["rlvr"] / "metrics.jsonl").read_text().splitlines()[-1])
    assert "heldout_acc" in rl_last and "heldout_pass1" in rl_last and "reward_mean" in rl_last
    # lineage: dpo's manifest names the sft and pairs artifacts as its inputs
    dpo_manifest = json.loads((arts["dpo"] / "manifest.json").read_text())
    assert json.dumps(dpo_manifest).count(arts["sft"].name) >= 1
    report, _ = write_report(wd)
    text = Path(report).read_text()
    for title in ("Post-training: SFT", "Post-training: DPO", "Post-training: RLVR"):
        assert title in text
    assert "rlvr_random" in text and "| rlvr | verifier | 0 |" in text and "pass@1 (sampled)" in text


def test_posttrain_stage_refuses_runner_paths_in_its_config(tmp_path, base):
    tok, model = base
    with pytest.raises(OlmoflowError, match="key 'init_from' is set by the runner"):
        run_flow(load_flow(_flow(tmp_path, tok, model, sft={"init_from": "x"})), tmp_path / "wd", quiet=True,
                 dry_run=True)
