"""Staged base training in a flow: pretrain -> midtrain (two seeds) -> soup -> long_context (YaRN),
the microanneal table, their bad-input errors, and a midtrain resumed after SIGKILL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from olmoflow.errors import OlmoflowError
from olmoflow.flow import load_flow, parse_flow, run_flow
from olmoflow.flow.store import read_manifest
from olmoflow.model import load

TOY_PLUGIN = str(Path(__file__).with_name("toy_stages.py").resolve())
MODEL = {"model": "tiny-1m", "model_overrides": {"vocab_size": 400, "sliding_window": 16}}
GEOM = {"seq_len": 32, "micro_batch": 2, "global_batch_tokens": 64}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def staged_flow(**over) -> dict:
    stages = {
        "pre_tokens": {"type": "toy_tokens", "config": {"vocab_size": 400, "n_docs": 200}},
        "new_tokens": {"type": "toy_tokens", "config": {"vocab_size": 400, "n_docs": 150, "seed": 11}},
        "pretrain": {"type": "pretrain", "config": {**MODEL, **GEOM, "steps": 6},
                     "inputs": {"data": "${stages.pre_tokens}"}},
        "mid_a": {"type": "midtrain",
                  "config": {**GEOM, "steps": 5, "schedule": {"name": "linear", "warmup_steps": 1},
                             "mix": {"pre": 0.5, "new": 0.5}, "checkpoint": {"every": 2}},
                  "inputs": {"init_from": "${stages.pretrain}", "pre": "${stages.pre_tokens}",
                             "new": "${stages.new_tokens}"}},
        "mid_b": {"type": "midtrain", "config": {**GEOM, "steps": 5, "seed": 1, "mix": {"pre": 0.5, "new": 0.5}},
                  "inputs": {"init_from": "${stages.pretrain}", "pre": "${stages.pre_tokens}",
                             "new": "${stages.new_tokens}"}},
        "soup": {"type": "soup", "config": {"max_seqs": 8},
                 "inputs": {"a": "${stages.mid_a}", "b": "${stages.mid_b}", "val": "${stages.pre_tokens}"}},
        "long": {"type": "long_context", "config": {"seq_len": 128, "micro_batch": 1, "global_batch_tokens": 128,
                                                    "steps": 3, "mix": {"pre": 0.34, "new": 0.66}},
                 "inputs": {"init_from": "${stages.soup}", "pre": "${stages.pre_tokens}", "new": "${stages.new_tokens}"}},
    }
    for name, cfg in over.items():
        stages[name]["config"].update(cfg)
    return {"name": "staged", "seed": 3, "plugins": [TOY_PLUGIN], "stages": stages}


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    torch.set_num_threads(1)
    wd = tmp_path_factory.mktemp("staged")
    res = run_flow(parse_flow(staged_flow(), base_dir=wd), wd / "w", quiet=True)
    return {n: s.artifact_dir for n, s in res.stages.items()} | {"workdir": wd / "w"}


def test_midtrain_starts_from_pretrain_mixes_datasets_and_decays_to_exactly_zero(staged):
    recs = _metrics(staged["mid_a"])
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5]
    assert recs[-1]["lr"] == 0.0 and recs[0]["lr"] > 0  # linear to exactly 0 on the last step
    cfg = json.loads((staged["mid_a"] / "config.json").read_text())
    assert cfg["data"]["mixture"] == pytest.approx({"new/web": 0.5, "pre/web": 0.5})  # one source each, kept apart
    assert Path(cfg["init_from"]) == staged["pretrain"] / "final" and cfg["schedule"]["name"] == "linear"
    assert not cfg["init_optimizer"]  # a fresh optimizer by default


def test_soup_is_the_mean_of_its_ingredients_with_lineage(staged):
    a = load_file(str(staged["mid_a"] / "final" / "model.safetensors"))
    b = load_file(str(staged["mid_b"] / "final" / "model.safetensors"))
    s = load_file(str(staged["soup"] / "final" / "model.safetensors"))
    assert set(s) == set(a)
    for k in s:
        assert torch.equal(s[k], ((a[k].double() + b[k].double()) / 2).float()), k
    rec = json.loads((staged["soup"] / "soup.json").read_text())
    assert [i["input"] for i in rec["ingredients"]] == ["a", "b"] and rec["seq_len"] == 32
    assert all(not Path(i["path"]).is_absolute() for i in rec["ingredients"])
    m = read_manifest(staged["soup"])
    assert set(m["inputs"]) >= {"a", "b", "val"}
    held = json.loads((staged["soup"] / "heldout.json").read_text())
    assert set(held["ingredients"]) == {"a", "b"} and held["tokens"] > 0
    from olmoflow.flow.report import write_report

    report = write_report(staged["workdir"])[0].read_text()
    assert "## Model soup" in report and "mean of ingredients" in report


def test_long_context_extends_with_yarn_on_full_layers_and_packed_documents(staged):
    m = load(staged["long"] / "final")
    y = m.cfg.rope_scaling
    assert (y.factor, y.original_max_seq_len, y.beta_fast, y.beta_slow) == (4.0, 32, 32.0, 1.0)  # 128 / 32
    assert m.cfg.rope_scaling_sliding is None and m.rotary["sliding"].scale == 1.0 and m.rotary["full"].scale > 1
    assert m.cfg.max_seq_len >= 128
    cfg = json.loads((staged["long"] / "config.json").read_text())
    assert cfg["data"]["mode"] == "packed" and cfg["seq_len"] == 128
    assert cfg["data"]["mixture"] == pytest.approx({"pre/web": 0.34, "new/web": 0.66})
    assert _metrics(staged["long"])[-1]["lr"] == 0.0


def test_long_context_model_equals_transformers_olmo3_with_the_same_rope_parameters(staged, tmp_path):
    """The extended model (YaRN on full layers only) exported to HF gives transformers' logits, on a
    sequence longer than the sliding window and 4x the original context."""
    transformers = pytest.importorskip("transformers")
    from olmoflow.model.hf import export_hf

    ours = load(staged["long"] / "final").eval()
    export_hf(ours, tmp_path / "hf")
    hf_cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_cfg["rope_parameters"]["full_attention"]["rope_type"] == "yarn"
    assert hf_cfg["rope_parameters"]["sliding_attention"]["rope_type"] == "default"
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", attn_implementation="sdpa").eval()
    ids = torch.randint(2, 256, (2, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(ids) - hf(input_ids=ids).logits).abs().max().item() < 1e-5


def test_microanneal_ranks_candidates_against_the_shared_baseline(staged, tmp_path):
    flow = staged_flow()
    flow["stages"]["cand_tokens"] = {"type": "toy_tokens", "config": {"vocab_size": 400, "n_docs": 100, "seed": 12}}
    flow["stages"]["anneal"] = {
        "type": "microanneal",
        "config": {**GEOM, "steps": 3, "tasks": ["passkey:64"], "limit": 2},
        "inputs": {"init_from": "${stages.pretrain}", "baseline": "${stages.pre_tokens}",
                   "narrow": "${stages.cand_tokens}", "wide": "${stages.new_tokens}"},
    }
    for k in ("mid_a", "mid_b", "soup", "long"):
        flow["stages"].pop(k)
    from olmoflow.eval.toy import make_toy_tokenizer

    flow["stages"]["anneal"]["inputs"]["tokenizer"] = str(make_toy_tokenizer(tmp_path / "tok"))
    res = run_flow(parse_flow(flow, base_dir=tmp_path), tmp_path / "w", quiet=True)
    out = res.stages["anneal"].artifact_dir
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"start", "baseline", "narrow", "wide"}
    cfgs = {n: json.loads((out / "runs" / n / "config.json").read_text()) for n in ("baseline", "narrow", "wide")}
    assert cfgs["baseline"]["data"]["mixture"] == {"baseline/web": 1.0}
    assert cfgs["narrow"]["data"]["mixture"] == pytest.approx({"baseline/web": 0.5, "narrow/web": 0.5})
    assert {c["steps"] for c in cfgs.values()} == {3}  # same tokens for every anneal
    table = (out / "table.md").read_text()
    assert "narrow (Δ)" in table and "wide (Δ)" in table and "Ranking" in table
    assert (out / "deltas.png").is_file()


@pytest.mark.parametrize("stage, config, match", [
    ("mid_a", {"mix": {"pre": 0.5, "dolmino": 0.5}}, r"key 'mix' names dataset\(s\) \['dolmino'\] that are not inputs"),
    ("long", {"seq_len": 120}, r"key 'seq_len': 120 is not a multiple of the model's sliding_window 16"),
    ("long", {"yarn": {"factor": 1.0}}, r"yarn\.factor.*must be > 1"),
    ("long", {"seq_len": 32, "global_batch_tokens": 32}, r"key 'yarn\.factor': 1 must be > 1"),
])
def test_bad_staged_input_is_a_one_line_error_naming_the_key(tmp_path, stage, config, match):
    flow = staged_flow(**{stage: config})
    with pytest.raises(OlmoflowError, match=match) as e:
        run_flow(parse_flow(flow, base_dir=tmp_path), tmp_path / "w", quiet=True)
    assert "\n" not in str(e.value).strip()


def test_killed_midtrain_resumes_to_the_uninterrupted_result(tmp_path, flow_file, cli, sigkill_run):
    flow = staged_flow(mid_a={"steps": 30, "checkpoint": {"every": 5}})
    for k in ("mid_b", "soup", "long"):
        flow["stages"].pop(k)
    path, wd = flow_file(flow, "staged.yaml"), tmp_path / "w"
    sigkill_run(path, wd, "artifacts/mid_a-*/checkpoints/step-5/manifest.json")
    (left,) = (wd / "artifacts").glob("mid_a-*")
    assert not (left / "COMPLETE").exists()
    done = sorted(int(p.parent.name[5:]) for p in (left / "checkpoints").glob("step-*/manifest.json"))
    assert done and done[-1] < 30
    p = cli("run", str(path), "--workdir", str(wd))
    assert f"stage mid_a: resuming from step {done[-1]} (of 30)" in p.stdout
    ref = run_flow(load_flow(path), tmp_path / "ref", quiet=True).stages["mid_a"].artifact_dir

    def curve(d):
        return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in _metrics(d)]

    assert curve(left) == curve(ref) and len(curve(left)) == 30
    assert (left / "final" / "model.safetensors").read_bytes() == (ref / "final" / "model.safetensors").read_bytes()
    assert read_manifest(left)["id"] == read_manifest(ref)["id"]


def test_microanneal_ranking_follows_the_first_task_and_knows_lower_is_better():
    from olmoflow.flow.stages.microanneal import table

    res = {"start": {"gen (exact_match)": 0.1, "ppl (bits_per_byte)": 2.0},
           "baseline": {"gen (exact_match)": 0.2, "ppl (bits_per_byte)": 1.8},
           "x": {"gen (exact_match)": 0.3, "ppl (bits_per_byte)": 1.9},
           "y": {"gen (exact_match)": 0.3, "ppl (bits_per_byte)": 1.7},
           "z": {"gen (exact_match)": 0.1, "ppl (bits_per_byte)": 1.0}}
    last = table(res, ["x", "y", "z"])[-1]
    assert last.index("1. y") < last.index("2. x") < last.index("3. z")
    assert "y (+0.1; better than the baseline anneal on 2 of 2)" in last
    assert "x (+0.1; better than the baseline anneal on 1 of 2)" in last
