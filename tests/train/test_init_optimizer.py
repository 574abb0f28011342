"""``init_optimizer``: a stage started from a training checkpoint may carry its AdamW moments
(default: a fresh optimizer, as midtraining starts)."""

from __future__ import annotations

import pytest
import torch
from train_testlib import tiny_config

from olmoflow.errors import OlmoflowError
from olmoflow.model import load, save
from olmoflow.train import TrainConfig, pretrain
from olmoflow.train import checkpoint as C
from olmoflow.train import distributed as D
from olmoflow.train.trainer import Trainer


def _trainer(cfg: TrainConfig) -> Trainer:
    return Trainer(cfg, D.init_distributed())


def test_init_optimizer_loads_the_checkpoints_moments_and_fresh_is_the_default(tmp_path, token_data):
    src = TrainConfig.model_validate(tiny_config(tmp_path / "a", token_data, steps=3))
    pretrain(src, quiet=True)
    base = tiny_config(tmp_path / "b", token_data, steps=2, init_from=str(tmp_path / "a" / "final"))
    fresh = _trainer(TrainConfig.model_validate(base))
    assert not fresh.optimizer.state  # nothing carried
    carried = _trainer(TrainConfig.model_validate({**base, "run_dir": str(tmp_path / "c"), "init_optimizer": True}))
    ref = _trainer(TrainConfig.model_validate({**base, "run_dir": str(tmp_path / "ref")}))


    C.load_checkpoint(tmp_path / "a" / "checkpoints" / "step-3", ref.model, ref.optimizer, restore_rng=False)
    names = dict(carried.model.named_parameters())
    ref_names = dict(ref.model.named_parameters())
    for name, p in names.items():
        a, b = carried.optimizer.state[p], ref.optimizer.state[ref_names[name]]
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"]), name
        assert a["exp_avg"].abs().sum() > 0
    assert all(torch.equal(p, ref_names[n]) for n, p in names.items())  # the same weights


def test_init_optimizer_from_a_plain_model_dir_is_a_one_line_error(tmp_path, token_data):
    pretrain(TrainConfig.model_validate(tiny_config(tmp_path / "a", token_data, steps=2)), quiet=True)
    save(load(tmp_path / "a" / "final"), tmp_path / "plain")
    cfg = tiny_config(tmp_path / "b", token_data, steps=2, init_from=str(tmp_path / "plain"), init_optimizer=True)
    with pytest.raises(OlmoflowError, match=r"key 'init_optimizer': .*plain holds no optimizer state"):
        _trainer(TrainConfig.model_validate(cfg))
