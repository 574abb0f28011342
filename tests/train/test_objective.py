"""The loop/objective seam: a new kind of training plugs into the one loop (optimizer, schedule,
checkpoints with exact resume, logging, callbacks) by writing an Objective, nothing else."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from train_testlib import TINY_MODEL, random_docs, tiny_config, write_token_dataset

from olmoflow.train import TrainConfig
from olmoflow.train.callbacks import Callback
from olmoflow.train.metrics import read_metrics
from olmoflow.train.objective import Objective
from olmoflow.train.trainer import train


class EvenTargets(Objective):
    """Cross-entropy on the even-valued targets only, over a seeded stream of random sequences:
    a masked token mean (like SFT) whose normalizer differs from the token count."""

    name = "even"
    metric_names = ("loss", "n_even")

    def __init__(self, n_micro: int, micro: int, seq: int = 16):
        self.n_micro, self.micro, self.seq = n_micro, micro, seq
        self.index = 0  # the resumable state: which batch comes next

    def _seqs(self, index: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(1000 + index)
        return torch.randint(2, TINY_MODEL["vocab_size"], (self.n_micro * self.micro, self.seq + 1), generator=g)

    def next_batch(self, model):
        rows = self._seqs(self.index)
        return [rows[a * self.micro : (a + 1) * self.micro] for a in range(self.n_micro)]

    def normalizer(self, mb):
        return int((mb[:, 1:] % 2 == 0).sum())

    def loss(self, model, mb):
        logits = model(mb[:, :-1]).float()
        targets = mb[:, 1:]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        w = (targets.reshape(-1) % 2 == 0).float()
        loss_sum = (ce * w).sum()
        return loss_sum, {"loss": loss_sum.detach(), "n_even": w.sum()}

    def commit(self):
        self.index += 1

    def step_tokens(self):
        return self.n_micro * self.micro * self.seq

    def state_dict(self):
        return {"index": self.index}

    def load_state_dict(self, state):
        self.index = int(state["index"])


class Recorder(Callback):
    def __init__(self):
        self.steps, self.ended = [], None

    def on_step_end(self, step, total_steps, model, run_dir, record):
        self.steps.append(step)
        record["my_metric"] = step * 10

    def on_train_end(self, step, model, run_dir):
        self.ended = step


def _cfg(tmp_path: Path, name: str, **kw) -> TrainConfig:
    data = write_token_dataset(tmp_path / "tok", {"web": random_docs(20, 0)})  # the LM data the config names
    return TrainConfig.model_validate(tiny_config(tmp_path / name, data, **kw))


def test_custom_objective_loss_is_its_masked_mean_and_callbacks_run(tmp_path):
    cfg = _cfg(tmp_path, "run", steps=3, optimizer={"lr": 1e-3})
    obj = EvenTargets(n_micro=2, micro=2)
    rec = Recorder()
    train(cfg, obj, quiet=True, callbacks=[rec])
    logged = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in logged] == [1, 2, 3] and rec.steps == [1, 2, 3] and rec.ended == 3
    assert [r["my_metric"] for r in logged] == [10, 20, 30]  # a callback's keys are logged with the step
    assert obj.index == 3 and logged[-1]["tokens"] == 3 * 4 * 16

    # step 1's logged loss is the even-target mean over the whole global batch on the initial weights
    from olmoflow.model import Olmo

    torch.manual_seed(0)
    model = Olmo(_resolved(cfg), init=False)
    model.init_weights(generator=torch.Generator().manual_seed(cfg.seed))
    fresh = EvenTargets(n_micro=2, micro=2)
    mbs = fresh.next_batch(model)
    with torch.no_grad():
        total = sum(fresh.loss(model, mb)[0] for mb in mbs)
    n = sum(fresh.normalizer(mb) for mb in mbs)
    assert abs(logged[0]["loss"] - float(total) / n) < 1e-5
    assert logged[0]["n_even"] == 1.0  # the metric sum divided by the same normalizer


def test_custom_objective_same_losses_under_any_accumulation(tmp_path):
    """4 micro batches of 1 vs 1 of 4 rows: the global normalizer makes them the same mean."""
    a = _run(tmp_path, "a", EvenTargets(n_micro=4, micro=1))
    b = _run(tmp_path, "b", EvenTargets(n_micro=1, micro=4))
    for x, y in zip(a, b, strict=True):
        assert abs(x["loss"] - y["loss"]) < 1e-5 and abs(x["grad_norm"] - y["grad_norm"]) < 1e-4


def test_custom_objective_resumes_exactly(tmp_path):
    """Resume from step 3 of a 6-step run: the objective's state comes back from the checkpoint and
    steps 4-6 repeat the uninterrupted run bit for bit (CPU)."""
    import shutil

    full = _run(tmp_path, "full", EvenTargets(2, 2), steps=6, checkpoint={"every": 3})
    shutil.copytree(tmp_path / "full", tmp_path / "part")
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "step-6")
    cfg = TrainConfig.model_validate({**_cfg(tmp_path, "full", steps=6).model_dump(),
                                      "run_dir": str(tmp_path / "part"), "checkpoint": {"every": 3}})
    obj = EvenTargets(2, 2)
    train(cfg, obj, quiet=True, resume=True)
    assert obj.index == 6
    resumed = read_metrics(tmp_path / "part" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [(r["loss"], r["grad_norm"]) for r in resumed] == [(r["loss"], r["grad_norm"]) for r in full]


def _run(tmp_path, name, obj, steps=4, **kw):
    cfg = _cfg(tmp_path, name, steps=steps, optimizer={"lr": 3e-3}, **kw)
    train(cfg, obj, quiet=True)
    return read_metrics(tmp_path / name / "metrics.jsonl")


def _resolved(cfg):
    from olmoflow.train.config import resolve_model_config

    return resolve_model_config(cfg)
