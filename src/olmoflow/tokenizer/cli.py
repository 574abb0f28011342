"""``olmoflow tokenizer ...``: train a tokenizer, encode text with one, render a chat."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmoflow tokenizer", description="byte-level BPE tokenizer tools")
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train a byte-level BPE tokenizer on Dolma JSONL or text files")
    t.add_argument("--input", nargs="+", required=True, type=Path, metavar="PATH",
                   help="JSONL (.jsonl/.json[.gz|.zst], field 'text') or text files, or directories of them")
    t.add_argument("--out", required=True, type=Path, metavar="DIR", help="output tokenizer directory")
    t.add_argument("--vocab-size", required=True, type=int, metavar="N",
                   help="total vocabulary size, including 13 special tokens and 256 byte symbols")
    t.add_argument("--min-frequency", type=int, default=2, metavar="K", help="min pair count to merge (2)")
    t.add_argument("--max-docs", type=int, default=None, metavar="M", help="train on a random sample of M docs")
    t.add_argument("--seed", type=int, default=0, metavar="S", help="seed for --max-docs sampling (0)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("encode", help="print the token ids (and pieces) of a text")
    e.add_argument("--tokenizer", required=True, type=Path, metavar="DIR")
    e.add_argument("text", nargs="?", help="text to encode (default: stdin)")
    e.add_argument("--pieces", action="store_true", help="show each token's text")

    c = sub.add_parser("chat", help="render a conversation (JSON list of messages) with the chat template")
    c.add_argument("messages", type=Path, help="JSON file: a list of messages, or {messages, tools}")
    c.add_argument("--generation-prompt", action="store_true", help="append <|im_start|>assistant")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from olmoflow.errors import OlmoflowError

    if args.cmd == "train":
        from olmoflow.tokenizer.train import train_tokenizer

        train_tokenizer(args.input, args.out, vocab_size=args.vocab_size, min_frequency=args.min_frequency,
                        max_docs=args.max_docs, quiet=args.quiet, seed=args.seed)
    elif args.cmd == "encode":
        from olmoflow.tokenizer.tok import Tok

        tok = Tok.from_dir(args.tokenizer)
        if args.text is not None:
            text = args.text
        else:
            try:
                text = sys.stdin.read()
            except UnicodeDecodeError as e:
                raise OlmoflowError(f"stdin: not UTF-8 text ({e.reason})") from None
        ids = tok.encode(text)
        if args.pieces:
            for i in ids:
                print(f"{i}\t{tok.decode([i])!r}")
        else:
            print(" ".join(map(str, ids)))
        print(f"{len(ids)} tokens, {len(text.encode('utf-8')) / max(len(ids), 1):.2f} bytes/token", file=sys.stderr)
    elif args.cmd == "chat":
        from olmoflow.tokenizer.chat import apply_chat_template

        try:
            data = json.loads(args.messages.read_text())
        except (OSError, ValueError) as e:
            raise OlmoflowError(f"{args.messages}: cannot read JSON ({e})") from None
        messages, tools = (data.get("messages", []), data.get("tools")) if isinstance(data, dict) else (data, None)
        sys.stdout.write(apply_chat_template(messages, tools, add_generation_prompt=args.generation_prompt))
    return 0
