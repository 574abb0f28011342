"""The real tiny flow (``olmoflow demo``): packaging, plan, and (slow) the whole thing end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olmoflow.flow.cli import tiny_flow_path
from olmoflow.flow.spec import load_flow, toposort

REPO = Path(__file__).resolve().parents[2]

#: reduced sizes so the end-to-end test takes a couple of minutes on 2 cores
#: the flow's own smoke-test variant (`olmoflow demo --quick`)
SMALL = ["--variant", "quick"]
#: every stage of the tiny flow, in order
STAGES = ["corpus", "curate", "tokenizer", "tokenize", "mix", "pretrain", "evaluate", "chat", "dolmino",
          "dolmino_tok", "midtrain_a", "midtrain_b", "soup", "evaluate_soup", "sft", "sft2", "pairs", "dpo", "rlvr",
          "chat_eval_base", "chat_eval_soup", "chat_eval_sft", "chat_eval_dpo", "chat_eval", "trace_index", "export"]


def test_packaged_tiny_flow_is_the_repo_flow():
    assert tiny_flow_path().read_text() == (REPO / "flows" / "tiny.yaml").read_text()


def test_tiny_flow_plans_every_stage_of_the_model_flow(tmp_path, cli):
    spec = load_flow(tiny_flow_path())
    assert sorted(toposort(spec)) == sorted(STAGES)
    out = cli("run", "--dry-run", str(tiny_flow_path()), "--workdir", str(tmp_path / "w"), *SMALL).stdout
    assert out.count("would run") == len(STAGES)
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_tiny_flow_end_to_end(tmp_path, cli):
    wd = tmp_path / "demo"
    p = cli("demo", "--workdir", str(wd), "--quiet", "--quick")
    assert f"report: {wd / 'REPORT.md'}" in p.stdout and "sample generation:" in p.stdout
    state = json.loads((wd / "flow.json").read_text())
    assert all(state["stages"][n]["status"] == "run" for n in state["order"])
    text = (wd / "REPORT.md").read_text()
    for section in ("## Report card", "## Traced sample", "## Stages", "## Data funnel", "## Training loss", "## Evaluation", "## Sample generation",
                    "## Post-training: SFT", "## Post-training: DPO", "## Post-training: RLVR", "## Lineage",
                    "## Environment"):
        assert section in text
    assert "| decontaminate |" in text and "| minhash_dedup |" in text
    assert "pretrain: 12 logged steps" in text and "(report/loss-pretrain.png)" in text
    assert "Checkpoint sweep: 2 checkpoints" in text and "(report/eval-evaluate.png)" in text
    assert "bits_per_byte/code" in text and "arith_rc" in text
    # lineage of the exported model reaches the demo corpus through every stage
    export_dir = wd / state["stages"]["export"]["artifact"]
    lin = cli("lineage", str(export_dir)).stdout
    for name in ("export (export)", "pretrain (pretrain)", "mix (mix)", "tokenize (tokenize)",
                 "tokenizer (tokenizer)", "curate (curate)", "corpus (demo_corpus)"):
        assert name in lin
    # the export loads in transformers
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(export_dir)
    assert model.config.model_type in ("olmo2", "olmo3")
    # rerun: everything cached
    again = cli("demo", "--workdir", str(wd), "--quiet", "--quick")
    assert again.returncode == 0
    state2 = json.loads((wd / "flow.json").read_text())
    assert all(state2["stages"][n]["status"] == "cached" for n in state2["order"])
    assert {n: s["id"] for n, s in state2["stages"].items()} == {n: s["id"] for n, s in state["stages"].items()}
    # a fresh workdir with the same seed reproduces every artifact id
    wd2 = tmp_path / "demo2"
    cli("demo", "--workdir", str(wd2), "--quiet", "--quick")
    state3 = json.loads((wd2 / "flow.json").read_text())
    assert {n: s["id"] for n, s in state3["stages"].items()} == {n: s["id"] for n, s in state["stages"].items()}
    rel = tmp_path / "release"
    cli("release", str(wd), "--out", str(rel))
    assert (rel / "model" / "model.safetensors").is_file() and (rel / "tokenizer" / "tokenizer.json").is_file()
    ckpts = json.loads((rel / "checkpoints.json").read_text())["checkpoints"]
    assert len([c for c in ckpts if c["stage"] == "pretrain"]) == 2  # every 6 of 12 steps
    assert {"pretrain", "midtrain_a", "midtrain_b", "sft", "sft2", "dpo", "rlvr"} <= {c["stage"] for c in ckpts}
    # fork: continue pretraining from an intermediate checkpoint (upstream stages come from the cache)
    ckpt = wd / state["stages"]["pretrain"]["artifact"] / "checkpoints" / "step-6"
    cli("fork", "--from", str(ckpt), "--flow", str(tiny_flow_path()), "--workdir", str(wd), "--quiet", *SMALL,
        "pretrain.steps=4")
    forked = json.loads((wd / "flow.json").read_text())
    # do not depend on pretrain: cached
    upstream = {"corpus", "curate", "tokenizer", "tokenize", "mix", "chat", "dolmino", "dolmino_tok"}
    assert [n for n in forked["order"] if forked["stages"][n]["status"] == "run"] == [
        n for n in forked["order"] if n not in upstream]
    m = json.loads((wd / forked["stages"]["pretrain"]["artifact"] / "manifest.json").read_text())
    assert m["fork_origin"]["artifact_id"] == state["stages"]["pretrain"]["id"]
    assert m["fork_origin"]["subpath"] == "checkpoints/step-6"
