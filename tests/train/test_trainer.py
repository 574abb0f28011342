"""End-to-end pretraining on CPU: learning, exact resume after SIGKILL, bad input, init_from."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from train_testlib import TINY_MODEL, learnable_docs, random_docs, tiny_config, write_token_dataset

from olmoflow.cli import main as olmoflow_main
from olmoflow.model import ModelConfig, Olmo, load
from olmoflow.train import TrainConfig, pretrain
from olmoflow.train.metrics import read_metrics

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _cfg(tmp_path, data_dir, **kw) -> TrainConfig:
    return TrainConfig.model_validate(tiny_config(tmp_path / "run", data_dir, **kw))


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}


def _write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_loss_goes_down_on_learnable_corpus(tmp_path):
    data = write_token_dataset(tmp_path / "tok", {"count": learnable_docs(200)})
    cfg = _cfg(tmp_path, data, steps=40, optimizer={"lr": 1e-2}, global_batch_tokens=256, micro_batch=8)
    out = pretrain(cfg, quiet=True)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    assert len(losses) == 40 and out["step"] == 40
    assert losses[0] > 6.0  # ~ln(512) at init
    assert sum(losses[-5:]) / 5 < losses[0] - 2.0
    rec = read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]
    assert {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "skipped"} <= rec.keys()
    assert rec["tokens"] == 40 * 256
    # run dir products: intermediate/final checkpoint + final/ model dir, loadable
    assert (tmp_path / "run" / "checkpoints" / "step-40" / "manifest.json").is_file()
    model = load(tmp_path / "run" / "final")
    assert model.cfg.d_model == 64
    # the same run_dir again without --resume is refused
    with pytest.raises(Exception, match="already has checkpoints; pass --resume"):
        pretrain(cfg, quiet=True)
    # init_from: a new run starting from the trained weights starts where the old one ended
    # (model architecture comes from the checkpoint, whatever preset the config names)
    second = TrainConfig.model_validate({**cfg.model_dump(), "run_dir": str(tmp_path / "run2"), "steps": 1,
                                         "init_from": out["checkpoint"], "model": "tiny-1m"})
    loss2 = pretrain(second, quiet=True)["loss"]
    assert loss2 < losses[0] - 2.0 and abs(loss2 - losses[-1]) < 0.5
    # ... and from the same weights exported in transformers format
    from olmoflow.model.hf import export_hf

    hf_dir = export_hf(tmp_path / "run" / "final", tmp_path / "hf")
    third = TrainConfig.model_validate({**second.model_dump(), "run_dir": str(tmp_path / "run3"),
                                        "init_from": str(hf_dir)})
    assert abs(pretrain(third, quiet=True)["loss"] - loss2) < 1e-5


def test_init_from_applies_overrides_that_keep_the_weights_shapes(tmp_path):
    """A long-context / midtraining run starts from a checkpoint and changes its context length and
    RoPE (YaRN): those overrides apply; shape-changing ones that disagree are one-line errors."""
    from olmoflow.model import save
    from olmoflow.train import distributed as D
    from olmoflow.train.trainer import Trainer, plan

    ckpt = save(Olmo(ModelConfig(**TINY_MODEL)), tmp_path / "base")
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(40, 0)})
    yarn = {"factor": 4.0, "original_max_seq_len": 128}

    def cfg(**overrides):
        return _cfg(tmp_path, data, init_from=str(ckpt), seq_len=64, model_overrides=overrides)

    t = Trainer(cfg(max_seq_len=512, rope_scaling=yarn, vocab_size=TINY_MODEL["vocab_size"] - 3),
                D.init_distributed(), quiet=True)
    t.log.close()
    assert t.model_cfg.max_seq_len == 512 and t.model_cfg.rope_scaling.factor == 4.0
    assert t.model_cfg.vocab_size == TINY_MODEL["vocab_size"]  # the embedding keeps its rows
    assert torch.equal(t.model.embed.weight, load(ckpt).embed.weight)
    assert plan(cfg(n_kv_heads=None, head_dim=16), check_data=False)  # null = derive; equal = fine
    with pytest.raises(Exception, match=r"model_overrides.d_model': 128 differs from the init_from"):
        plan(cfg(d_model=128), check_data=False)
    with pytest.raises(Exception, match=r"model_overrides.vocab_size': \d+ is larger"):
        plan(cfg(vocab_size=TINY_MODEL["vocab_size"] + 1), check_data=False)
    with pytest.raises(Exception, match="model_overrides on"):
        plan(cfg(rope_scaling={"factor": "big"}), check_data=False)


def test_packed_mode_with_validation(tmp_path):
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(80, 0), "code": random_docs(40, 1)})
    val = write_token_dataset(tmp_path / "val", {"web": random_docs(20, 5)})
    cfg = _cfg(tmp_path, data, steps=4, eval_every=2, eval_batches=2,
               data={"paths": [str(data)], "val_paths": [str(val)], "mode": "packed",
                     "mixture": {"web": 0.3, "code": 0.7}})
    out = pretrain(cfg, quiet=True)
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [("val_loss" in r) for r in recs] == [False, True, False, True]
    # the last update runs at the end of the cosine: final_lr_ratio (0.1) × peak (3e-3)
    assert [r["lr"] for r in recs][::3] == pytest.approx([1.5e-3, 3e-4])
    assert 5.5 < out["val_loss"] < 7.0


def test_validation_sequences_cover_every_val_source(tmp_path):
    """Validation uses the first eval_batches × micro_batch sequences of a fixed (seeded) order over
    all val sources, not the first sequences of the alphabetically first source."""
    from olmoflow.train import distributed as D
    from olmoflow.train.trainer import Trainer

    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(40, 0)})
    val = write_token_dataset(tmp_path / "val", {"arxiv": random_docs(100, 5), "web": random_docs(100, 6)})
    cfg = _cfg(tmp_path, data, eval_batches=4, data={"paths": [str(data)], "val_paths": [str(val)]})
    samplers = []
    for seed in (0, 1):
        t = Trainer(TrainConfig.model_validate({**cfg.model_dump(), "seed": seed, "run_dir": str(tmp_path / f"r{seed}")}),
                    D.init_distributed(), quiet=True)
        t.log.close()
        samplers.append(t.objective.val_sampler)
    sampler, other = samplers
    n = cfg.eval_batches * cfg.micro_batch
    assert {sampler.source_of(0, i) for i in range(n)} == {"arxiv", "web"}
    first = [sampler.get(0, i)["input_ids"].tolist() for i in range(n)]
    assert first == [other.get(0, i)["input_ids"].tolist() for i in range(n)]  # same val set for any seed


def test_exact_resume_after_sigkill_is_bit_identical(tmp_path):
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(300, 0), "code": random_docs(100, 1)})
    base = tiny_config(tmp_path / "killed", data, steps=60, global_batch_tokens=64,
                       checkpoint={"every": 5}, spike_warmup=5)
    cfg_file = _write_yaml(tmp_path / "cfg.yaml", base)
    cmd = [sys.executable, "-m", "olmoflow.cli", "pretrain", "--config", str(cfg_file), "--quiet"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker = tmp_path / "killed" / "checkpoints" / "step-10" / "manifest.json"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (tmp_path / "killed" / "checkpoints" / "step-60").exists()
    killed_at = len(read_metrics(tmp_path / "killed" / "metrics.jsonl"))
    assert 10 <= killed_at < 60
    # resume (in this process, one thread like the subprocess: saves a second interpreter start)
    resumed_out = pretrain(TrainConfig.model_validate(base), quiet=True, resume=True)
    assert resumed_out["step"] == 60
    # the same run without interruption (in this process, also one thread)
    ref_cfg = TrainConfig.model_validate({**base, "run_dir": str(tmp_path / "ref")})
    pretrain(ref_cfg, quiet=True)

    def curve(run):
        return [(r["step"], r["loss"], r["grad_norm"], r["lr"], r["skipped"]) for r in read_metrics(tmp_path / run / "metrics.jsonl")]

    resumed, ref = curve("killed"), curve("ref")
    assert [s for s, *_ in resumed] == list(range(1, 61))
    assert resumed == ref
    a = load(tmp_path / "killed" / "final").state_dict()
    b = load(tmp_path / "ref" / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def _run_cli(args, capsys) -> tuple[int, str]:
    rc = olmoflow_main(["pretrain", *args])
    return rc, capsys.readouterr().err.strip()


@pytest.mark.parametrize("case", ["missing_shard", "dtype", "divisible", "schedule", "seq_len"])
def test_bad_input_is_one_line_error_before_training(tmp_path, capsys, case):
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(50, 0)})
    cfg = tiny_config(tmp_path / "run", data)
    expect = {
        "missing_shard": r"web-00000\.bin: token shard listed in meta\.json not found",
        "dtype": r"meta\.json: dtype uint16 cannot hold vocab_size 70000",
        "divisible": r"global_batch_tokens=100 is not divisible by seq_len × micro_batch × processes",
        "schedule": r"key 'schedule\.name'",
        "seq_len": r"seq_len.*exceeds the model's max_seq_len 128",
    }[case]
    if case == "missing_shard":
        (data / "web-00000.bin").unlink()
    elif case == "dtype":
        meta = json.loads((data / "meta.json").read_text())
        meta["vocab_size"] = 70000
        (data / "meta.json").write_text(json.dumps(meta))
        cfg["model"]["vocab_size"] = 70016
    elif case == "divisible":
        cfg["global_batch_tokens"] = 100
    elif case == "schedule":
        cfg["schedule"]["name"] = "cosine_restarts"
    else:
        cfg["seq_len"], cfg["global_batch_tokens"] = 256, 512
    rc, err = _run_cli(["--config", str(_write_yaml(tmp_path / "c.yaml", cfg)), "--quiet"], capsys)
    assert rc == 1
    assert len(err.splitlines()) == 1, err
    assert re.search(expect, err), err
    assert not read_metrics(tmp_path / "run" / "metrics.jsonl")  # no step ran


def test_dry_run_prints_plan_without_training(tmp_path, capsys):
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(50, 0)})
    cfg = _write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path / "run", data))
    rc = olmoflow_main(["pretrain", "--config", str(cfg), "--dry-run", "--json", "global_batch_tokens=256"])
    plan = json.loads(capsys.readouterr().out)
    assert rc == 0 and plan["accum_steps"] == 4 and plan["steps"] == 6 and plan["total_tokens"] == 6 * 256
    assert plan["parameters"] == sum(p.numel() for p in Olmo(ModelConfig(**TINY_MODEL)).parameters())
    mem = plan["memory_per_gpu_bf16"]  # fp32 weights + grads + 2 AdamW moments: 16 bytes a parameter
    assert mem["params_grads_optimizer_gib"] == pytest.approx(16 * plan["parameters"] / 1024**3)
    assert mem["total_gib"] == pytest.approx(mem["params_grads_optimizer_gib"] + mem["activations_gib"] + mem["logits_gib"])
    assert not (tmp_path / "run").exists()
    # a mixture naming a source the data does not have: data not ready (as training would say)
    rc = olmoflow_main(["pretrain", "--config", str(cfg), "--dry-run", "data.mixture={books: 1.0}"])
    err = capsys.readouterr().err
    assert rc == 1 and "data.mixture names unknown source(s) ['books'] (available: ['web'])" in err


def test_shipped_configs_load_and_plan(tmp_path):
    from olmoflow.config import load_config
    from olmoflow.train import plan

    root = Path(__file__).resolve().parents[2] / "flows"
    big = load_config(TrainConfig, root / "olmo3_7b_pretrain.yaml")
    p = plan(big, world_size=64, check_data=False)
    assert p["global_batch_tokens"] == 512 * 8192 and p["accum_steps"] == 8
    assert 7.0e9 < p["parameters"] < 7.5e9 and big.optimizer.lr == 3e-4 and big.schedule.warmup_steps == 2000
    # the tiny config trains (shortened) on a freshly written dataset
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(200, 0, vocab=4096)}, vocab_size=4096)
    tiny = load_config(TrainConfig, root / "tiny_pretrain.yaml",
                       [f"data.paths=[{data}]", f"run_dir={tmp_path / 'run'}", "steps=2", "micro_batch=2",
                        "global_batch_tokens=256"])
    assert pretrain(tiny, quiet=True)["step"] == 2


def test_spike_guard_skips_updates_in_training(tmp_path):
    """With a hair-trigger guard (0.01σ) ordinary steps count as spikes: those updates are skipped
    (weights unchanged), counted in metrics, and the run goes on."""
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(100, 0)})
    cfg = _cfg(tmp_path, data, steps=10, spike_sigma=0.01, spike_warmup=3, tensorboard=True,
               checkpoint={"every": 1})
    out = pretrain(cfg, quiet=True)
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    skipped = [r["step"] for r in recs if r["skipped"]]
    assert skipped and out["skipped_total"] == len(skipped) == recs[-1]["skipped_total"]
    ckpts = tmp_path / "run" / "checkpoints"
    for step in skipped:
        before = load(ckpts / f"step-{step - 1}").state_dict()
        after = load(ckpts / f"step-{step}").state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)


def test_activation_checkpointing_keeps_losses_and_names(tmp_path):
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(100, 0)})
    plain = pretrain(_cfg(tmp_path, data, steps=3), quiet=True)
    ac_cfg = TrainConfig.model_validate(tiny_config(tmp_path / "ac", data, steps=3, activation_checkpointing=True))
    ac = pretrain(ac_cfg, quiet=True)
    assert abs(plain["loss"] - ac["loss"]) < 1e-6
    a, b = load(tmp_path / "run" / "final").state_dict(), load(tmp_path / "ac" / "final").state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.slow
def test_torch_compile_matches_eager(tmp_path):
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(100, 0)})
    eager = pretrain(_cfg(tmp_path, data, steps=3), quiet=True)
    cfg = TrainConfig.model_validate(tiny_config(tmp_path / "c", data, steps=3, compile=True,
                                                 activation_checkpointing=True))
    compiled = pretrain(cfg, quiet=True)
    assert abs(eager["loss"] - compiled["loss"]) < 1e-5


def test_bad_model_override_names_the_field(tmp_path):
    from olmoflow.config import ConfigError
    from olmoflow.train.config import resolve_model_config

    def resolve(**kw):
        return resolve_model_config(TrainConfig.model_validate({"model": "tiny-1m", "steps": 1, **kw}))

    with pytest.raises(ConfigError, match=r"key 'nheads': unknown key \(did you mean 'n_heads'\?\)"):
        resolve(model_overrides={"nheads": 5})
    with pytest.raises(ConfigError, match=r"key 'rope_scaling.factor'"):
        resolve(model_overrides={"rope_scaling": {"factor": "x"}})
    with pytest.raises(ConfigError, match="unknown model preset 'tiny-9m'"):
        resolve(model="tiny-9m")
    assert resolve(model_overrides={"vocab_size": 300}).vocab_size == 300


def test_validation_results_are_logged_whatever_log_every(tmp_path):
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(40, 0)})
    val = write_token_dataset(tmp_path / "val", {"web": random_docs(10, 5)})
    cfg = _cfg(tmp_path, data, steps=5, eval_every=2, eval_batches=1, log_every=3,
               data={"paths": [str(data)], "val_paths": [str(val)]})
    pretrain(cfg, quiet=True)
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [(r["step"], "val_loss" in r) for r in recs] == [(2, True), (3, False), (4, True), (5, True)]
