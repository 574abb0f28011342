"""SFT: packing isolates conversations, labels cover assistant tokens only, and the loss equals
transformers' Olmo3ForCausalLM loss with -100 outside the assistant tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from olmoflow.model import ModelConfig, Olmo
from olmoflow.posttrain.sft import PackedChatSource, chat_labels
from olmoflow.train.data import IGNORE_INDEX, collate

CFG = dict(flavor="olmo3", vocab_size=300, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=4, n_heads=4,
           n_kv_heads=2, mlp_hidden=128, max_seq_len=256, sliding_window=8)


class Ex:
    """A tokenized conversation (the fields SFT reads from a ChatExample)."""

    def __init__(self, ids, mask, source="t.jsonl:1"):
        self.ids, self.mask, self.source = np.asarray(ids, np.int32), np.asarray(mask, bool), source


def _conversations(n: int, seed: int = 0) -> list[Ex]:
    """Random token conversations: alternating user (unmasked) and assistant (masked) runs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ids, mask = [], []
        for turn in range(int(rng.integers(2, 5))):
            k = int(rng.integers(3, 12))
            ids += rng.integers(2, CFG["vocab_size"], k).tolist()
            mask += [turn % 2 == 1] * k
        out.append(Ex(ids, mask))
    return out


def _model(seed: int = 0) -> Olmo:
    torch.manual_seed(seed)
    m = Olmo(ModelConfig(**CFG))
    with torch.no_grad():  # non-trivial norms so that a leak across documents would show
        for name, p in m.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return m.eval()


def test_chat_labels_are_next_assistant_tokens():
    ids = np.array([10, 11, 12, 13, 14, 15])
    mask = np.array([0, 0, 1, 1, 0, 1], bool)
    assert chat_labels(ids, mask).tolist() == [IGNORE_INDEX, 12, 13, IGNORE_INDEX, 15, IGNORE_INDEX]


def test_packed_loss_equals_sum_of_per_conversation_losses():
    """Masks really isolate documents: the packed batch's CE sum = Σ each conversation alone."""
    convs = _conversations(12, seed=1)
    src = PackedChatSource("t", convs, seq_len=64, pad_token_id=1)
    assert len(src) < len(convs)  # several conversations share a sequence
    model = _model()
    batch = collate([src[i] for i in range(len(src))])
    with torch.no_grad():
        _, packed = model(batch["input_ids"], doc_ids=batch["doc_ids"], labels=batch["labels"], reduction="sum",
                          z_loss=0.0)
        alone = 0.0
        n_alone = 0
        for c in convs:
            ids = torch.as_tensor(c.ids, dtype=torch.long)[None]
            labels = torch.as_tensor(chat_labels(c.ids.astype(np.int64), c.mask))[None]
            _, parts = model(ids, labels=labels, reduction="sum", z_loss=0.0)
            alone += float(parts["ce"])
            n_alone += int(parts["n_tokens"])
    assert int(packed["n_tokens"]) == n_alone == sum(int(c.mask[1:].sum()) for c in convs)
    assert abs(float(packed["ce"]) - alone) <= 1e-5 * abs(alone)


def test_one_conversation_per_sequence_without_packing():
    convs = _conversations(5, seed=2)
    src = PackedChatSource("t", convs, seq_len=64, pad_token_id=1, pack=False)
    assert len(src) == 5
    item = src[3]
    n = len(convs[3].ids)
    assert item["input_ids"][:n].tolist() == convs[3].ids.tolist() and set(item["doc_ids"][n:].tolist()) == {1}
    assert (item["labels"][n:] == IGNORE_INDEX).all()


def test_conversation_longer_than_sequence_is_refused():
    with pytest.raises(Exception, match=r"t\.jsonl:1: conversation of 70 tokens exceeds seq_len 64"):
        PackedChatSource("t", [Ex(list(range(2, 72)), [True] * 70)], seq_len=64, pad_token_id=1)


def test_sft_loss_equals_transformers_olmo3_loss(tmp_path):
    transformers = pytest.importorskip("transformers")
    from olmoflow.model.hf import export_hf

    model = _model(3)
    hf_dir = export_hf(model, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="sdpa").eval()
    assert type(hf).__name__ == "Olmo3ForCausalLM"
    for c in _conversations(4, seed=4):
        ids = torch.as_tensor(c.ids, dtype=torch.long)[None]
        hf_labels = torch.where(torch.as_tensor(c.mask)[None], ids, torch.full_like(ids, -100))
        with torch.no_grad():
            ref = hf(input_ids=ids, labels=hf_labels).loss
            ours, _ = model(ids, labels=torch.as_tensor(chat_labels(c.ids.astype(np.int64), c.mask))[None],
                            z_loss=0.0)
        assert abs(float(ours) - float(ref)) < 1e-5, (float(ours), float(ref))
