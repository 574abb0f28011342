"""``olmoflow chat --model DIR``: an interactive terminal chat on the generation engine.

Each reply streams token by token; the conversation (system prompt + turns) is kept and rendered
with the one chat template every turn; ``<think>…</think>`` reasoning is shown dimmed and is not
carried into the history (as OLMo 3 Think's template drops earlier reasoning). Commands:
``/reset`` clears the history, ``/system TEXT`` sets the system prompt, ``/exit`` (or Ctrl-D) quits.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from olmoflow.errors import OlmoflowError

__all__ = ["ThinkStyler", "chat_loop", "main", "strip_think"]

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
DIM, RESET = "\x1b[2m", "\x1b[0m"


class ThinkStyler:
    """Turns a stream of text deltas into terminal output with the ``<think>`` section dimmed.

    Tags may arrive split across deltas, so text that could be the start of a tag is held back
    until the next delta decides it."""

    def __init__(self, color: bool = True):
        self.color, self.inside, self.pending = color, False, ""

    def feed(self, delta: str) -> str:
        text, out = self.pending + delta, []
        self.pending = ""
        while text:
            tag = THINK_CLOSE if self.inside else THINK_OPEN
            i = text.find(tag)
            if i >= 0:
                out.append(text[:i])
                out.append((RESET if self.inside else DIM) if self.color else tag)
                self.inside = not self.inside
                text = text[i + len(tag):]
                continue
            keep = next((k for k in range(min(len(tag) - 1, len(text)), 0, -1) if tag.startswith(text[-k:])), 0)
            out.append(text[: len(text) - keep])
            self.pending = text[len(text) - keep:]
            break
        return "".join(out)

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return text + (RESET if self.inside and self.color else "")


def strip_think(text: str) -> str:
    """A reply without its ``<think>…</think>`` section (what the history keeps)."""
    start = text.find(THINK_OPEN)
    end = text.find(THINK_CLOSE)
    if start >= 0 and end > start:
        return (text[:start] + text[end + len(THINK_CLOSE):]).strip()
    return text.strip()


def chat_loop(reply: Callable[[list[dict], Callable[[str], None]], str], lines: Iterable[str], out: TextIO,
              system: str | None = None, color: bool = True) -> list[dict]:
    """Run the chat over input ``lines``; ``reply(messages, on_delta)`` streams one answer. Returns the
    final history (for tests and scripts)."""
    history: list[dict] = []

    def messages() -> list[dict]:
        return ([{"role": "system", "content": system}] if system else []) + history

    out.write("olmoflow chat — /reset, /system TEXT, /exit\n")
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            history.clear()
            out.write("(history cleared)\n")
            continue
        if line.startswith("/system"):
            system = line[len("/system"):].strip() or None
            out.write(f"(system prompt {'set' if system else 'cleared'})\n")
            continue
        history.append({"role": "user", "content": line})
        styler = ThinkStyler(color)
        out.write("assistant: ")

        def on_delta(delta: str, styler: ThinkStyler = styler) -> None:
            out.write(styler.feed(delta))
            out.flush()

        text = reply(messages(), on_delta)
        out.write(styler.flush() + "\n")
        history.append({"role": "assistant", "content": strip_think(text)})
    return messages()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmoflow chat", description="Chat with a model in the terminal (streaming).")
    p.add_argument("--model", required=True, help="model dir (flow artifact, checkpoint or HF export) or an artifact "
                   "id (unique prefix of >= 4 characters)")
    p.add_argument("--tokenizer", help="tokenizer dir (default: beside the model, or through its artifact's lineage)")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-color", action="store_true", help="print <think> tags instead of dimming")
    return p


def main(argv: list[str]) -> int:
    from olmoflow.artifacts import resolve_model
    from olmoflow.inference.cli import find_tokenizer_dir
    from olmoflow.inference.engine import Engine, GenerationRequest, derive_seed
    from olmoflow.model import load
    from olmoflow.tokenizer import Tok

    args = _parser().parse_args(argv)
    model_path = resolve_model(args.model)
    tok = Tok.from_dir(find_tokenizer_dir(model_path, args.tokenizer))
    model = load(model_path).eval()
    if tok.vocab_size > model.cfg.vocab_size:
        raise OlmoflowError(f"tokenizer has {tok.vocab_size} tokens but the model's vocab_size is {model.cfg.vocab_size}")
    engine = Engine(model, tokenizer=tok, max_batch_size=1)
    turn = [0]

    def reply(messages: list[dict], on_delta: Callable[[str], None]) -> str:
        prompt = tok.encode_chat(messages, add_generation_prompt=True)
        room = model.cfg.max_seq_len - len(prompt)
        if room < 1:
            raise OlmoflowError(f"the conversation is {len(prompt)} tokens, the model's context is "
                                f"{model.cfg.max_seq_len}: /reset to start over")
        req = GenerationRequest(prompt=prompt, max_new_tokens=min(args.max_new_tokens, room),
                                temperature=args.temperature, top_p=args.top_p, stop_token_ids=tok.stop_ids,
                                seed=derive_seed(args.seed, turn[0]))
        turn[0] += 1
        [res] = engine.generate([req], stream_callback=lambda _i, _t, delta: on_delta(delta))
        return res.text or ""

    color = not args.no_color and sys.stdout.isatty()
    try:
        chat_loop(reply, _input_lines(), sys.stdout, system=args.system, color=color)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
    return 0


def _input_lines():
    interactive = sys.stdin.isatty()
    while True:
        try:
            yield input("you: ") if interactive else sys.stdin.readline() or _eof()
        except EOFError:
            return


def _eof():
    raise EOFError
