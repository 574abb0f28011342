"""Fixtures for tests/train; helpers live in train_testlib.py (importable: this dir is on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from train_testlib import random_docs, write_token_dataset  # noqa: E402


@pytest.fixture
def token_data(tmp_path):
    """A random two-source token dataset."""
    return write_token_dataset(tmp_path / "tokens", {"web": random_docs(150, 0), "code": random_docs(60, 1)})


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: faster for tiny models on a shared 2-core box, and the same thread
    count as the subprocess runs (OMP_NUM_THREADS=1) so results compare bit for bit."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
