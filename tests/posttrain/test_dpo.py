"""DPO: the length-normalised loss against a hand computation, one-line errors for bad input, reference
log-probs computed once and reused on resume, and exact resume from an intermediate checkpoint.
(Loss, rewards and gradients against TRL's DPOTrainer: test_dpo_vs_trl.py.)"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))  # dpoutil.py (tests run with --import-mode=importlib)
from dpoutil import dpo_config, make_model, make_setup, pair_records, write_jsonl  # noqa: E402

from olmoflow.errors import OlmoflowError  # noqa: E402
from olmoflow.model import load  # noqa: E402
from olmoflow.model.io import read_config  # noqa: E402
from olmoflow.posttrain.dpo import DPOObjective, dpo  # noqa: E402
from olmoflow.train.metrics import read_metrics  # noqa: E402
from olmoflow.train.objective import RunContext  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Tokenizer, policy, a different reference and 8 pairs (shared, read-only)."""
    return make_setup(tmp_path_factory.mktemp("dpo"), n_pairs=8)


def _objective(cfg) -> DPOObjective:
    obj = DPOObjective(cfg)
    obj.setup(RunContext(read_config(cfg.init_from), torch.device("cpu"), 0, 1, 0, contextlib.nullcontext))
    return obj


def _mean_response_logp(model, ids: np.ndarray, mask: np.ndarray) -> float:
    """Mean over response tokens of log p(token | prefix), from the full logits of one sequence."""
    x = torch.as_tensor(ids, dtype=torch.long)[None]
    with torch.no_grad():
        logp = F.log_softmax(model(x)[0].double(), dim=-1)  # [T, V]
    positions = np.flatnonzero(mask)  # response tokens; each is predicted from the position before it
    assert positions.min() > 0
    return float(np.mean([float(logp[j - 1, ids[j]]) for j in positions]))


def test_dpo_norm_equals_hand_computation(root, tmp_path):
    """2-pair batch, beta 5: loss = mean of −logsigmoid(5 · (Δ_chosen − Δ_rejected)), Δ = mean response
    log-prob of the policy − that of the reference."""
    pairs = write_jsonl(tmp_path / "two.jsonl", pair_records(2, seed=7))
    cfg = dpo_config(root, run_dir=str(tmp_path / "run"), data={"paths": [str(pairs)]}, loss_type="dpo_norm",
                     beta=5.0)
    obj = _objective(cfg)
    policy, reference = load(cfg.init_from).eval(), load(cfg.reference).eval()
    src = obj.sampler.sources[0]
    losses, rewards = [], []
    for pair in src.pairs:
        d = {side: _mean_response_logp(policy, ids, m) - _mean_response_logp(reference, ids, m)
             for side, ids, m in (("c", pair.chosen, pair.chosen_mask), ("r", pair.rejected, pair.rejected_mask))}
        rewards.append((5.0 * d["c"], 5.0 * d["r"]))
        losses.append(float(-F.logsigmoid(torch.tensor(5.0 * (d["c"] - d["r"]), dtype=torch.float64))))
    items = [src[i] for i in range(2)]
    mb = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
    with torch.no_grad():
        loss_sum, m = obj.loss(policy, mb)
    assert abs(float(loss_sum) / 2 - np.mean(losses)) < 1e-5, (float(loss_sum) / 2, np.mean(losses))
    assert abs(5.0 * float(m["chosen_logratio"]) - sum(r[0] for r in rewards)) < 1e-5
    assert abs(5.0 * float(m["rejected_logratio"]) - sum(r[1] for r in rewards)) < 1e-5
    assert float(m["reward_acc"]) == sum(c > r for c, r in rewards)
    assert float(m["chosen_len"]) == sum(int(p.chosen_mask.sum()) for p in src.pairs)
    assert min(abs(r) for pair in rewards for r in pair) > 1e-3  # a reference equal to the policy would pass trivially


# ---------------------------------------------------------------------------- bad input


def _one_line_error(cfg, pattern: str) -> None:
    with pytest.raises(OlmoflowError) as e:
        dpo(cfg, quiet=True)
    assert "\n" not in str(e.value), str(e.value)
    assert e.match(pattern)


@pytest.mark.parametrize("field", ["chosen", "rejected"])
def test_missing_side_names_file_line_field(root, tmp_path, field):
    records = pair_records(3)
    del records[1][field]
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    _one_line_error(dpo_config(root, run_dir=str(tmp_path / "run"), data={"paths": [str(path)]}),
                    rf"bad\.jsonl:2: missing field '{field}'")


def test_pair_longer_than_seq_len_names_file_line_field(root, tmp_path):
    records = pair_records(3)
    records[2]["rejected"] = [{"role": "assistant", "content": "the big red dog ran " * 30}]
    path = write_jsonl(tmp_path / "long.jsonl", records)
    _one_line_error(dpo_config(root, run_dir=str(tmp_path / "run"), data={"paths": [str(path)]}),
                    r"long\.jsonl:3: prompt \+ rejected is \d+ tokens, longer than seq_len 96")


def test_reference_with_another_vocabulary_is_refused(root, tmp_path):
    ref = make_model(tmp_path / "ref512", seed=3, vocab_size=512)
    _one_line_error(dpo_config(root, run_dir=str(tmp_path / "run"), reference=str(ref)),
                    r"key 'reference': .*ref512 has vocab_size=512 but the policy .* has vocab_size=384")


def test_reference_with_another_tokenizer_is_refused(root, tmp_path):
    """Same vocabulary size, but the reference ships a different tokenizer.json; the same one is accepted."""
    other = json.loads((root / "tok" / "tokenizer.json").read_text())
    vocab = other["model"]["vocab"]
    token = max(vocab, key=vocab.get)  # the last merge's token, renamed: another tokenizer of the same size
    vocab["zz" + token] = vocab.pop(token)
    ref = tmp_path / "ref"
    shutil.copytree(root / "reference", ref)
    (ref / "tokenizer.json").write_text(json.dumps(other))
    assert (ref / "tokenizer.json").read_bytes() != (root / "tok" / "tokenizer.json").read_bytes()
    _one_line_error(dpo_config(root, run_dir=str(tmp_path / "run"), reference=str(ref)),
                    r"key 'reference': .*ref/tokenizer\.json differs from the tokenizer .*tok/tokenizer\.json")
    shutil.copy(root / "tok" / "tokenizer.json", ref / "tokenizer.json")
    dpo(dpo_config(root, run_dir=str(tmp_path / "run_ok"), reference=str(ref), steps=1), quiet=True)


# ---------------------------------------------------------------------------- cache and resume

WATCHED = ("loss", "reward_acc", "reward_margin", "chosen_logratio", "rejected_logratio", "grad_norm", "lr")


def _curve(run_dir: Path) -> list[tuple]:
    return [tuple(r[k] for k in ("step", *WATCHED)) for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]


def test_resume_is_exact_and_reuses_the_reference_cache(root, tmp_path):
    """Uninterrupted 4 steps vs resume from the step-2 checkpoint: identical losses and metrics; the
    reference log-probs are read from reference_logps.json (not rewritten), also when the resumed run
    is made longer."""
    full = tmp_path / "full"
    cfg = dict(global_batch_pairs=2, micro_batch=1, steps=4, checkpoint={"every": 2})
    dpo(dpo_config(root, run_dir=str(full), **cfg), quiet=True)
    expected = _curve(full)
    assert [r[0] for r in expected] == [1, 2, 3, 4] and len({r[1] for r in expected}) == 4

    cut = tmp_path / "cut"  # the run as a kill after the step-2 checkpoint leaves it
    shutil.copytree(full, cut)
    shutil.rmtree(cut / "checkpoints" / "step-4")
    shutil.rmtree(cut / "final")
    cache = cut / "reference_logps.json"
    before = (cache.stat().st_mtime_ns, cache.read_bytes())
    dpo(dpo_config(root, run_dir=str(cut), **cfg), quiet=True, resume=True)
    assert _curve(cut) == expected
    assert (cache.stat().st_mtime_ns, cache.read_bytes()) == before

    dpo(dpo_config(root, run_dir=str(cut), **{**cfg, "steps": 6}), quiet=True, resume=True)
    assert [r[0] for r in _curve(cut)] == [1, 2, 3, 4, 5, 6]
    assert (cache.stat().st_mtime_ns, cache.read_bytes()) == before


def test_reference_cache_is_keyed_by_data(root, tmp_path):
    """The cache holds the reference's log-probs of these pairs; other pairs in the same run dir are
    scored again (a stale cache is never used)."""
    run = tmp_path / "run"
    dpo(dpo_config(root, run_dir=str(run), steps=1), quiet=True)
    first = np.asarray(json.loads((run / "reference_logps.json").read_text())["logps"][0])
    reference = load(root / "reference").eval()
    obj = _objective(dpo_config(root, run_dir=str(run)))
    pair = obj.sampler.sources[0].pairs[0]
    hand = [_mean_response_logp(reference, ids, m) * int(m.sum())
            for ids, m in ((pair.chosen, pair.chosen_mask), (pair.rejected, pair.rejected_mask))]
    assert np.allclose(first[0], hand, atol=1e-4)  # sums (loss_type sigmoid) of the reference's log-probs

    other = write_jsonl(tmp_path / "other.jsonl", pair_records(8, seed=5))
    shutil.rmtree(run / "checkpoints")
    dpo(dpo_config(root, run_dir=str(run), steps=1, data={"paths": [str(other)]}), quiet=True)
    assert not np.allclose(np.asarray(json.loads((run / "reference_logps.json").read_text())["logps"][0]), first)
