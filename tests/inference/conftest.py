"""Shared fixtures: tiny randomized OLMo 2 / OLMo 3 models (weights std 0.05 so logits are not ties)."""

from __future__ import annotations

import pytest
import torch

from olmoflow.model import ModelConfig, Olmo

CONFIGS = {
    # OLMo 3 with GQA and a sliding window much shorter than the generations
    "olmo3_gqa": dict(flavor="olmo3", vocab_size=256, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=4,
                      n_heads=4, n_kv_heads=2, mlp_hidden=160, max_seq_len=256, sliding_window=8),
    # OLMo 2: full attention everywhere, multi-head attention
    "olmo2": dict(flavor="olmo2", vocab_size=256, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=2,
                  n_heads=4, mlp_hidden=160, max_seq_len=256, rope_theta=10000.0, sliding_window=None),
}


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Random weights with std 0.05 (norm weights around 1): distinct logits, not near-ties."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def make_model(name: str, seed: int = 0, **overrides) -> Olmo:
    model = Olmo(ModelConfig(**{**CONFIGS[name], **overrides})).eval()
    randomize(model, seed)
    return model


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny models gain nothing from more, and a busy machine makes spinning
    OpenMP workers 10-20x slower."""
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def model_maker():
    """``make_model(name, seed=0, **overrides)`` (test modules cannot import conftest in importlib mode)."""
    return make_model


@pytest.fixture(scope="session")
def olmo3_model():
    return make_model("olmo3_gqa")


@pytest.fixture(scope="session")
def tiny_tok_dir(tmp_path_factory):
    """A byte-level BPE tokenizer trained by olmoflow on a few sentences (vocab ~400)."""
    from olmoflow.tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("corpus")
    lines = [
        "The quick brown fox jumps over the lazy dog.",
        "Open language models need open data, open code and open weights.",
        "Hello world! Generation engines decode one token at a time.",
        "Stop strings end generation early; the text excludes them.",
    ]
    (d / "corpus.txt").write_text("\n\n".join(lines * 20) + "\n", encoding="utf-8")
    return train_tokenizer([d / "corpus.txt"], tmp_path_factory.mktemp("tok"), vocab_size=400, quiet=True)
