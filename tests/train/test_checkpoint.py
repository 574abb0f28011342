"""Checkpoints: exact round trip, atomic saves, corruption detection, pruning, model.load compat."""

from __future__ import annotations

import pytest
import torch
from train_testlib import TINY_MODEL

from olmoflow.model import ModelConfig, Olmo, load
from olmoflow.train import checkpoint as C
from olmoflow.train.config import OptimizerConfig
from olmoflow.train.optim import build_optimizer


def _trained(seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(**TINY_MODEL)
    model = Olmo(cfg)
    opt = build_optimizer(model, OptimizerConfig(lr=1e-2))
    x = torch.randint(0, cfg.vocab_size, (2, 16))
    for _ in range(2):
        model(x).float().logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
    return cfg, model, opt


def test_round_trip_restores_model_optimizer_rng_exactly(tmp_path):
    cfg, model, opt = _trained()
    torch.manual_seed(123)
    path = C.save_checkpoint(tmp_path, 2, model, opt, {"data_position": {"epoch": 0, "index": 8}}, cfg)
    expected_rand = torch.rand(3)
    assert path == tmp_path / "step-2" and (path / C.MANIFEST).is_file()
    fresh = Olmo(cfg)
    fresh_opt = build_optimizer(fresh, OptimizerConfig(lr=1e-2))
    torch.manual_seed(999)
    state = C.load_checkpoint(path, fresh, fresh_opt)
    assert state["step"] == 2 and state["data_position"] == {"epoch": 0, "index": 8}
    assert torch.equal(torch.rand(3), expected_rand)  # RNG restored
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), k
    sa, sb = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name]))
    # the checkpoint dir is also a plain model dir
    loaded = load(path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_save_killed_half_way_leaves_no_valid_checkpoint(tmp_path, monkeypatch):
    cfg, model, opt = _trained()
    C.save_checkpoint(tmp_path, 1, model, opt, {}, cfg)

    def crash(*a, **k):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(C, "_write_manifest", crash)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(tmp_path, 2, model, opt, {}, cfg)
    assert not (tmp_path / "step-2").exists()
    assert C.latest_checkpoint(tmp_path) == tmp_path / "step-1"
    partial = tmp_path / ".tmp-step-2"
    assert (partial / "model.safetensors").is_file()  # the half-written save is there, but invalid
    with pytest.raises(C.CheckpointError, match="not a complete checkpoint"):
        C.load_checkpoint(partial, Olmo(cfg))
    # a step-N directory without a manifest (e.g. copied by hand, interrupted) is never "latest"
    (tmp_path / "step-3").mkdir()
    (tmp_path / "step-3" / "model.safetensors").write_bytes(b"x")
    assert C.latest_checkpoint(tmp_path) == tmp_path / "step-1"


@pytest.mark.parametrize("victim", ["model.safetensors", "dcp/__0_0.distcp", "trainer.json"])
def test_corrupted_file_is_detected_on_load_naming_it(tmp_path, victim):
    cfg, model, opt = _trained()
    path = C.save_checkpoint(tmp_path, 5, model, opt, {}, cfg)
    f = path / victim
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte, same size
    f.write_bytes(bytes(data))
    with pytest.raises(C.CheckpointError, match=rf"{victim}: sha256 .* corrupt checkpoint") as e:
        C.load_checkpoint(path, Olmo(cfg), build_optimizer(Olmo(cfg), OptimizerConfig()))
    assert "\n" not in str(e.value)
    f.write_bytes(bytes(data[:-10]))  # truncated: caught by the cheap size check already
    with pytest.raises(C.CheckpointError, match="size"):
        C.verify_checkpoint(path, full=False)
    assert C.latest_checkpoint(tmp_path) is None


def test_keep_last_prunes_old_checkpoints(tmp_path):
    cfg, model, opt = _trained()
    for step in (1, 2, 3, 4):
        C.save_checkpoint(tmp_path, step, model, opt, {}, cfg)
        C.prune_checkpoints(tmp_path, keep_last=2)
    assert [s for s, _ in C.list_checkpoints(tmp_path)] == [3, 4]
    C.prune_checkpoints(tmp_path, keep_last=None)
    assert len(C.list_checkpoints(tmp_path)) == 2


def test_same_state_gives_byte_identical_checkpoints(tmp_path):
    """No random ids or absolute paths inside: artifact hashes of identical runs agree."""
    cfg, model, opt = _trained()
    a = C.save_checkpoint(tmp_path / "a", 3, model, opt, {"x": 1}, cfg)
    b = C.save_checkpoint(tmp_path / "b", 3, model, opt, {"x": 1}, cfg)
    assert (a / C.MANIFEST).read_bytes() == (b / C.MANIFEST).read_bytes()
    files = C.verify_checkpoint(a)["files"]
    assert {"model.safetensors", "config.json", "trainer.json", "rng.json", "dcp/.metadata"} <= files.keys()
