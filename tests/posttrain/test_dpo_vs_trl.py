"""DPO against the peer: TRL's ``DPOTrainer`` (``loss_type="sigmoid"``, an explicit ``ref_model``) on our
weights exported to transformers gives the same loss, rewards and gradients as :class:`DPOObjective`.

TRL is driven as a user would drive it: a ``Dataset`` of conversational prompt/chosen/rejected, the
tokenizer directory olmoflow writes (its chat template is ``CHAT_TEMPLATE``) loaded with
``AutoTokenizer``, TRL's own tokenization and collator, then ``compute_loss`` on a collated batch.
Our side reads the same pairs from a JSONL file through ``DPOObjective.setup`` (tokenization via the
chat template, reference log-probs from the reference model on disk).

Two settings a user of TRL on CPU must know, both made explicit here:
- ``bf16=False``: transformers' TrainingArguments default to bf16 where the CPU supports it, and the
  reference model is then run under bf16 autocast (the log-probs differ from fp32 by ~1e-2).
- TRL's completion is everything after the generation prompt, i.e. also the ``\\n`` the chat template
  writes after an assistant's ``<|im_end|>``; the model never generates it (it stops at
  ``<|im_end|>``), so olmoflow does not score it. The token ids are identical; the test checks that
  the masks differ by exactly that one token per sequence and removes it from TRL's completion mask
  before comparing. This is the only difference.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # dpoutil.py (tests run with --import-mode=importlib)
from dpoutil import dpo_config, make_setup, pair_records  # noqa: E402

trl = pytest.importorskip("trl", reason="TRL is not installed (pip install trl==1.16.0): no peer to compare DPO with")
datasets = pytest.importorskip("datasets", reason="datasets (a TRL dependency) is not installed")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from olmoflow.model import load  # noqa: E402
from olmoflow.model.hf import export_hf, to_hf_state  # noqa: E402
from olmoflow.model.io import read_config  # noqa: E402
from olmoflow.posttrain.dpo import DPOObjective  # noqa: E402
from olmoflow.train.objective import RunContext  # noqa: E402

N_PAIRS = 4
BETA = 0.5
GRAD_KEYS = ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.1.mlp.down_proj.weight", "lm_head.weight")


class Peers:
    """Our objective + policy, and TRL's trainer on the same weights, tokenizer and pairs."""

    def __init__(self, root):
        make_setup(root, N_PAIRS)
        self.cfg = dpo_config(root, beta=BETA, loss_type="sigmoid")
        self.objective = DPOObjective(self.cfg)
        self.objective.setup(RunContext(read_config(self.cfg.init_from), torch.device("cpu"), 0, 1, 0,
                                        contextlib.nullcontext))
        self.source = self.objective.sampler.sources[0]
        self.policy = load(self.cfg.init_from).train()
        hf_policy = AutoModelForCausalLM.from_pretrained(export_hf(self.policy, root / "hf_policy"))
        hf_reference = AutoModelForCausalLM.from_pretrained(export_hf(load(self.cfg.reference), root / "hf_ref"))
        tokenizer = AutoTokenizer.from_pretrained(self.cfg.tokenizer)
        args = trl.DPOConfig(output_dir=str(root / "trl"), beta=BETA, loss_type=["sigmoid"], bf16=False,
                             use_cpu=True, per_device_train_batch_size=N_PAIRS, max_length=None, report_to="none")
        self.trainer = trl.DPOTrainer(model=hf_policy, ref_model=hf_reference, args=args, processing_class=tokenizer,
                                      train_dataset=datasets.Dataset.from_list(pair_records(N_PAIRS)))
        self.newline = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("\n"))

    def trl_batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """TRL's collated batch ([chosen; rejected]) as its collator makes it."""
        return self.trainer.data_collator([self.trainer.train_dataset[i] for i in indices])

    def trl_scored(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """TRL's batch with the trailing ``\\n`` after ``<|im_end|>`` out of the completion mask."""
        batch = self.trl_batch(indices)
        mask = batch["completion_mask"].clone()
        last = mask.shape[1] - 1 - mask.flip(1).argmax(1)
        assert (batch["input_ids"][torch.arange(len(last)), last] == torch.tensor(self.newline)).all()
        mask[torch.arange(len(last)), last] = 0
        return {**batch, "completion_mask": mask}

    def trl_loss(self, indices: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        """TRL's mean loss (differentiable) and the batch metrics it logged."""
        model = self.trainer.model.train()
        loss = self.trainer.compute_loss(model, self.trl_scored(indices))
        return loss, {k: v[-1] for k, v in self.trainer._metrics["train"].items()}

    def our_loss(self, indices: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        """Our mean loss (differentiable) and mean metrics over the pairs ``indices``."""
        items = [self.source[i] for i in indices]
        mb = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0]}
        loss_sum, metrics = self.objective.loss(self.policy, mb)
        return loss_sum / len(indices), {k: float(v) / len(indices) for k, v in metrics.items()}


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    return Peers(tmp_path_factory.mktemp("dpo_trl"))


def test_trl_scores_the_same_tokens(peers):
    """Same token ids per side; TRL's completion = our response tokens + the template's trailing ``\\n``."""
    batch = peers.trl_batch(list(range(N_PAIRS)))
    ids, completion = batch["input_ids"], batch["completion_mask"].bool()
    for i, pair in enumerate(peers.source.pairs):
        for row, seq, mask in ((i, pair.chosen, pair.chosen_mask), (N_PAIRS + i, pair.rejected, pair.rejected_mask)):
            n = len(seq)
            assert ids[row, :n].tolist() == seq.tolist()
            assert not completion[row, n:].any()  # padding
            ours = np.flatnonzero(mask)
            theirs = torch.nonzero(completion[row]).flatten().numpy()
            assert theirs.tolist() == [*ours.tolist(), n - 1]  # + the last token of the sequence...
            assert ours[-1] == n - 2 and seq[-1] in peers.newline  # ...the "\n" after <|im_end|>


def test_loss_and_rewards_equal_trl(peers):
    """Per pair and for a batch of all pairs: loss, chosen/rejected rewards, margin, accuracy."""
    for indices in ([[i] for i in range(N_PAIRS)] + [list(range(N_PAIRS))]):
        with torch.no_grad():
            theirs_loss, theirs = peers.trl_loss(indices)
            ours_loss, ours = peers.our_loss(indices)
        assert abs(float(ours_loss) - float(theirs_loss)) < 1e-5, (indices, float(ours_loss), float(theirs_loss))
        assert abs(BETA * ours["chosen_logratio"] - theirs["rewards/chosen"]) < 1e-5
        assert abs(BETA * ours["rejected_logratio"] - theirs["rewards/rejected"]) < 1e-5
        assert abs(ours["reward_margin"] - theirs["rewards/margins"]) < 1e-5
        assert ours["reward_acc"] == theirs["rewards/accuracies"]
    assert abs(theirs["rewards/chosen"]) > 1e-2  # the reference differs: the log-ratios are not zero


def test_gradients_equal_trl(peers):
    """d loss / d (embedding, a q_proj, an MLP down projection, lm_head) agree within 1e-5."""
    indices = list(range(N_PAIRS))
    peers.trainer.model.zero_grad(set_to_none=True)
    peers.policy.zero_grad(set_to_none=True)
    peers.trl_loss(indices)[0].backward()
    peers.our_loss(indices)[0].backward()
    ours = to_hf_state({k: p.grad for k, p in peers.policy.named_parameters()}, peers.policy.cfg)
    theirs = dict(peers.trainer.model.named_parameters())
    for key in GRAD_KEYS:
        g = theirs[key].grad
        assert g is not None and float(g.abs().max()) > 1e-3, key
        assert torch.allclose(ours[key], g, atol=1e-5, rtol=0), (key, float((ours[key] - g).abs().max()))
