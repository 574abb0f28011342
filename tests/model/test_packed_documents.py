"""Packed sequences with document masks: every document's logits equal those of the document run
alone (within 1e-5), on every attention path the model has (full boolean masks through SDPA, and
blocked sliding-window attention), with sliding-window layers, documents longer than the window,
trailing padding, and YaRN on the full layers (the long-context setting)."""

from __future__ import annotations

import pytest
import torch

import olmoflow.model.olmo as olmo_mod
from olmoflow.model import ModelConfig, Olmo, YarnConfig

CFG = dict(vocab_size=300, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=4, n_heads=4, n_kv_heads=2,
           mlp_hidden=128, max_seq_len=512, sliding_window=16)
LAYOUTS = [[40, 11, 57, 20], [128], [5, 90, 29, 3]]  # doc lengths per row (a row's remainder is padding)
T = 128


def _model(yarn: bool) -> Olmo:
    cfg = ModelConfig(**CFG, rope_scaling=YarnConfig(factor=4.0, original_max_seq_len=32) if yarn else None)
    assert set(cfg.layer_types) == {"full", "sliding"}
    m = Olmo(cfg, init=False)
    m.init_weights(torch.Generator().manual_seed(0))
    return m.eval()


@pytest.mark.parametrize("path", ["blocked_sliding", "full_mask_sdpa"])
@pytest.mark.parametrize("yarn", [False, True])
def test_packed_documents_equal_each_document_alone(monkeypatch, path, yarn):
    if path == "full_mask_sdpa":  # never use the blocked kernel: every layer gets a boolean mask
        monkeypatch.setattr(olmo_mod, "sliding_block_size", lambda window, t: None)
    else:
        assert olmo_mod.sliding_block_size(16, T) is not None  # the blocked path is the one taken at T
    m = _model(yarn)
    g = torch.Generator().manual_seed(1)
    ids = torch.full((len(LAYOUTS), T), 1, dtype=torch.long)
    doc_ids = torch.zeros(len(LAYOUTS), T, dtype=torch.long)
    docs = []
    for r, lengths in enumerate(LAYOUTS):
        pos = 0
        for k, n in enumerate(lengths):
            d = torch.randint(2, 300, (n,), generator=g)
            ids[r, pos:pos + n], doc_ids[r, pos:pos + n] = d, k
            docs.append((r, pos, d))
            pos += n
        doc_ids[r, pos:] = len(lengths)  # padding: a document of its own
    with torch.no_grad():
        packed = m(ids, doc_ids=doc_ids)
        for r, pos, d in docs:
            alone = m(d[None])
            assert (packed[r, pos:pos + len(d)] - alone[0]).abs().max().item() < 1e-5, (r, pos, len(d))
