"""Schedules, AdamW parameter groups, batch arithmetic, loss-spike guard."""

from __future__ import annotations

import math

import pytest
import torch
from train_testlib import TINY_MODEL

from olmoflow.config import ConfigError, load_config
from olmoflow.model import ModelConfig, Olmo
from olmoflow.train.config import ScheduleConfig, TrainConfig, batch_plan
from olmoflow.train.optim import build_optimizer, param_groups
from olmoflow.train.schedule import lr_factor
from olmoflow.train.spike import SpikeGuard


def test_cosine_with_warmup():
    s = ScheduleConfig(name="cosine", warmup_steps=10, final_lr_ratio=0.1)
    assert lr_factor(s, 0, 100) == pytest.approx(0.1)
    assert lr_factor(s, 9, 100) == pytest.approx(1.0)
    assert lr_factor(s, 10, 100) < 1.0  # the peak is used once (by the last warmup update)
    assert lr_factor(s, 54, 100) == pytest.approx(0.1 + 0.9 * 0.5)  # midpoint of the cosine
    assert lr_factor(s, 99, 100) == pytest.approx(0.1)  # the last step (0-based) of the run
    vals = [lr_factor(s, i, 100) for i in range(9, 100)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))


def test_wsd_linear_constant():
    wsd = ScheduleConfig(name="wsd", warmup_steps=5, decay_fraction=0.2, final_lr_ratio=0.0)
    assert lr_factor(wsd, 50, 100) == 1.0 and lr_factor(wsd, 79, 100) == 1.0
    assert lr_factor(wsd, 80, 100) < 1.0 and lr_factor(wsd, 89, 100) == pytest.approx(0.5)
    assert lr_factor(wsd, 99, 100) == 0.0
    lin = ScheduleConfig(name="linear", warmup_steps=0)
    assert lr_factor(lin, 0, 10) == pytest.approx(0.9) and lr_factor(lin, 4, 10) == pytest.approx(0.5)
    assert lr_factor(lin, 9, 10) == 0.0
    const = ScheduleConfig(name="constant", warmup_steps=4)
    assert lr_factor(const, 1, 10) == 0.5 and lr_factor(const, 9, 10) == 1.0


def test_schedules_end_at_their_final_lr_on_the_last_executed_step():
    """The trainer asks for steps 0 .. total-1: the last update runs at the schedule's end value
    (linear: 0), the peak is used exactly once (warmup's last step), and every decay step counts
    (OLMo-core: lr of update number step+1)."""
    total = 8
    lrs = {name: [lr_factor(ScheduleConfig(name=name, warmup_steps=2, final_lr_ratio=floor, decay_fraction=0.5), i, total)
                  for i in range(total)]
           for name, floor in (("cosine", 0.1), ("wsd", 0.1), ("linear", 0.0))}
    for name, vals in lrs.items():
        assert vals[0] == pytest.approx(0.5) and vals[1] == 1.0, name  # warmup: 1/2, then the peak
        assert vals.count(1.0) == (3 if name == "wsd" else 1), (name, vals)
        assert all(a > b for a, b in zip(vals[1:], vals[2:])) or name == "wsd", (name, vals)
    assert lrs["linear"][-1] == 0.0
    assert lrs["cosine"][-1] == pytest.approx(0.1)
    assert lrs["wsd"] == pytest.approx([0.5, 1.0, 1.0, 1.0, 0.775, 0.55, 0.325, 0.1])  # decay: the last 4 steps


def test_unknown_schedule_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"schedule\.name.*'cosine', 'wsd', 'linear' or 'constant'"):
        load_config(TrainConfig, None, ["steps=1", "schedule.name=exponential"])


def test_weight_decay_groups():
    """REFERENCE §3 / OLMo 2-3 (decay_embeddings: false, decay_norm_and_bias: true; OLMo-core overrides
    only embeddings.weight): weight decay on every parameter except the input embedding."""
    model = Olmo(ModelConfig(**TINY_MODEL))
    groups = param_groups(model, TrainConfig(steps=1).optimizer)
    decay = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert no_decay == {"embed.weight"}
    assert "lm_head.weight" in decay and "norm.weight" in decay
    assert decay | no_decay == {n for n, _ in model.named_parameters()}
    # opting out of decay on norms (and any other 1-d parameter)
    groups = param_groups(model, TrainConfig(steps=1, optimizer={"decay_norms": False}).optimizer)
    decay = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    assert "norm.weight" not in decay and "lm_head.weight" in decay
    assert all(p.ndim >= 2 for n, p in model.named_parameters() if n in decay)
    opt = build_optimizer(model, TrainConfig(steps=1).optimizer)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.1]


def test_global_batch_must_divide():
    cfg = TrainConfig(steps=1, seq_len=32, micro_batch=2, global_batch_tokens=192)
    assert batch_plan(cfg, 1).accum_steps == 3
    with pytest.raises(ConfigError, match=r"global_batch_tokens=192 is not divisible by .* 32 × 2 × 2 = 128"):
        batch_plan(cfg, 2)
    assert TrainConfig(tokens=1000, global_batch_tokens=256).total_steps() == math.ceil(1000 / 256)
    with pytest.raises(ConfigError, match="exactly one of 'steps' or 'tokens'"):
        load_config(TrainConfig, None, [])


def test_spike_guard_skips_outliers_after_warmup():
    g = SpikeGuard(window=128, sigma=6.0, warmup=10)
    gen = torch.Generator().manual_seed(0)
    assert not g.should_skip(100.0, 1.0)  # warm-up: no history yet
    for _ in range(50):
        x = 3.0 + 0.01 * float(torch.randn(1, generator=gen))
        assert not g.should_skip(x, 1.0 + 0.01 * x)
        g.record(x, 1.0 + 0.01 * x)
    assert g.should_skip(3.5, 1.03)  # loss spike
    assert g.should_skip(3.0, 5.0)  # grad-norm spike
    assert g.should_skip(float("nan"), 1.0)
    assert not g.should_skip(3.01, 1.03)
    h = SpikeGuard(window=128, warmup=10)
    h.load_state_dict(g.state_dict())
    assert h.should_skip(3.5, 1.03) and list(h.losses) == list(g.losses)
