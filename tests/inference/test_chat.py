"""`olmoflow chat`: streamed replies, kept history, dimmed <think> content."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import torch

from olmoflow.inference.chat import DIM, RESET, ThinkStyler, chat_loop, strip_think

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_think_section_is_dimmed_even_when_tags_are_split_across_deltas():
    s = ThinkStyler(color=True)
    out = "".join(s.feed(d) for d in ["Hi <th", "ink>let me", " think</thi", "nk>42", " done"]) + s.flush()
    assert out == f"Hi {DIM}let me think{RESET}42 done"
    plain = ThinkStyler(color=False)
    assert "".join(plain.feed(d) for d in ["<think>a</think>b"]) + plain.flush() == "<think>a</think>b"
    unfinished = ThinkStyler(color=True)
    assert unfinished.feed("<think>still going") + unfinished.flush() == f"{DIM}still going{RESET}"


def test_history_keeps_turns_without_reasoning_and_commands_work():
    seen: list[list[dict]] = []

    def reply(messages, on_delta):
        seen.append([dict(m) for m in messages])
        text = f"<think>t{len(seen)}</think>answer {len(seen)}"
        for ch in text:
            on_delta(ch)
        return text

    out = io.StringIO()
    final = chat_loop(reply, ["hello\n", "again\n", "/system be brief\n", "third\n", "/reset\n", "fresh\n"], out,
                      color=False)
    assert seen[1] == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "answer 1"},
                       {"role": "user", "content": "again"}]
    assert seen[2][0] == {"role": "system", "content": "be brief"} and len(seen[2]) == 6
    assert final == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "fresh"},
                     {"role": "assistant", "content": "answer 4"}]
    assert "<think>t1</think>answer 1" in out.getvalue()  # streamed as it came
    assert strip_think("<think>x</think> y ") == "y"


def test_chat_command_streams_replies_from_a_real_model(tmp_path, tiny_tok_dir):
    from olmoflow.model import ModelConfig, Olmo, save
    from olmoflow.tokenizer import Tok

    tok = Tok.from_dir(tiny_tok_dir)
    torch.manual_seed(0)
    model_dir = save(Olmo(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=2, mlp_hidden=64,
                                      max_seq_len=256, eos_token_id=tok.token_id("<|endoftext|>"),
                                      pad_token_id=tok.token_id("<|pad|>"))), tmp_path / "m")
    for f in Path(tiny_tok_dir).iterdir():
        (Path(model_dir) / f.name).write_bytes(f.read_bytes())
    run = subprocess.run([sys.executable, "-m", "olmoflow.cli", "chat", "--model", str(model_dir),
                          "--max-new-tokens", "8", "--no-color"], input="hi there\nsecond\n/exit\n",
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": SRC})
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("assistant: ") == 2
