"""Fixtures: a tokenizer, tiny OLMo 3 model dirs, and real ``olmoflow serve`` processes on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
httpx = pytest.importorskip("httpx", reason="the serve extra is not installed: pip install -e '.[serve]'")

API_KEY = "sk-olmoflow-test"
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Open language models need open data, open code and open weights.",
    "Hello world! Generation engines decode one token at a time.",
    "Stop strings end generation early; the text excludes them.",
    "What time is it in Oslo? Call the clock tool with the city.",
]


def tiny_model(vocab_size: int, seed: int = 0, max_seq_len: int = 512):
    """A randomly initialised OLMo 3 (GQA, sliding window 16) with distinct logits (std 0.05)."""
    from olmoflow.model import ModelConfig, Olmo

    cfg = ModelConfig(flavor="olmo3", vocab_size=vocab_size, eos_token_id=0, pad_token_id=1, d_model=64, n_layers=4,
                      n_heads=4, n_kv_heads=2, mlp_hidden=160, max_seq_len=max_seq_len, sliding_window=16)
    model = Olmo(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g) if "norm" in name
                    else 0.05 * torch.randn(p.shape, generator=g))
    return model


def rig_chain(model, chain: list[int], scale: float = 30.0) -> None:
    """Make greedy decoding follow ``chain``: token chain[j] is always followed by chain[j+1].

    Attention and MLP outputs are zeroed (the residual stream is the token's embedding), chain
    token j's embedding is the j-th unit vector and the head maps it to its successor: a bigram
    model built from the real architecture, so a test can make the model emit exact text."""
    d = model.cfg.d_model
    assert len(chain) - 1 <= d and len(set(chain[:-1])) == len(chain) - 1, "chain tokens must be distinct"
    with torch.no_grad():
        for block in model.blocks:
            block.attn.o.weight.zero_()
            block.mlp.down.weight.zero_()
        model.embed.weight[:, : len(chain)] = 0
        model.lm_head.weight[:, : len(chain)] = 0
        for j, t in enumerate(chain[:-1]):
            model.embed.weight[t] = 0
            model.embed.weight[t, j] = 1.0
            model.lm_head.weight[chain[j + 1], j] = scale / d**0.5


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory) -> Path:
    from olmoflow.tokenizer import train_tokenizer

    d = tmp_path_factory.mktemp("corpus")
    (d / "corpus.txt").write_text("\n\n".join(CORPUS * 20) + "\n", encoding="utf-8")
    return train_tokenizer([d / "corpus.txt"], tmp_path_factory.mktemp("tok"), vocab_size=400, quiet=True)


@pytest.fixture(scope="session")
def tok(tok_dir):
    from olmoflow.tokenizer import Tok

    return Tok.from_dir(tok_dir)


def save_model_dir(model, tok_dir: Path, out: Path) -> Path:
    """A model dir as a user has it: weights, config and the tokenizer beside them."""
    from olmoflow.model.io import save

    save(model, out)
    shutil.copy(tok_dir / "tokenizer.json", out / "tokenizer.json")
    return out


@pytest.fixture(scope="session")
def model_dir(tok, tok_dir, tmp_path_factory) -> Path:
    return save_model_dir(tiny_model(tok.vocab_size), tok_dir, tmp_path_factory.mktemp("model"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``olmoflow serve`` in a subprocess on 127.0.0.1:<free port>; stopped by ``close``."""

    def __init__(self, model_dir: Path, *args: str, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from olmoflow.cli import main; sys.exit(main())", "serve",
             "--model", str(model_dir), "--port", str(self.port), "--served-model-name", "tiny",
             "--log-level", "warning", *args],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"server did not come up in 120 s:\n{log.read_text()}")
            time.sleep(0.2)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def server(model_dir, tmp_path_factory):
    """The main test server: random tiny model, API key required, 4 KV slots, waiting queue of 4."""
    s = Server(model_dir, "--api-key", API_KEY, "--max-batch-size", "4", "--max-waiting", "4",
               log=tmp_path_factory.mktemp("logs") / "server.log")
    yield s
    s.close()


@pytest.fixture(scope="session")
def client(server):
    openai = pytest.importorskip("openai", reason="the official openai client is not installed")
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def screenshot_dir(tmp_path: Path) -> Path:
    """Where browser tests save screenshots: $OLMOFLOW_SCREENSHOT_DIR if set, else the test's tmp dir."""
    d = Path(os.environ.get("OLMOFLOW_SCREENSHOT_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def browser():
    """Headless system Chromium driven by Selenium through the system chromedriver."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        pytest.skip("system Chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,800"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def helpers():
    """This module (tiny_model, rig_chain, save_model_dir, Server) for tests that build their own server."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def open_server(model_dir, tmp_path_factory):
    """A server without an API key, 32 slots and 64 waiting places (load test, web page)."""
    s = Server(model_dir, "--max-batch-size", "32", "--max-waiting", "64",
               log=tmp_path_factory.mktemp("logs") / "open_server.log")
    yield s
    s.close()
