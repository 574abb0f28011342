"""``olmoflow trace``: build a trace index, and trace text (or a model's generation) back to the training data.

    olmoflow trace index --data TOKENS [--data MIX ...] [--curation CURATE_DIR ...] [--sft CHATS.jsonl] --out INDEX
    olmoflow trace --index INDEX --text "some model output" [--prompt "..."] [--json]
    olmoflow trace --index INDEX --model MODEL --prompt "..." [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from olmoflow.errors import OlmoflowError


def _index_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmoflow trace index",
                                description="Build a suffix-array trace index over token datasets.")
    p.add_argument("--data", action="append", required=True, help="token dataset dir (tokenize/mix output); repeatable")
    p.add_argument("--out", required=True, help="index directory (replaced)")
    p.add_argument("--curation", action="append", default=[],
                   help="curate output dir whose per-document curation records to join; repeatable")
    p.add_argument("--tokenizer", help="tokenizer dir or tokenizer.json (default: the one named in the data's meta.json)")
    p.add_argument("--sft", action="append", default=[],
                   help="SFT conversation file (JSONL/Parquet chat records) to index too, tokenized as SFT does "
                   "(written as a token dataset beside --out); repeatable; needs --tokenizer")
    p.add_argument("--shard-tokens", type=int, default=500_000_000, help="tokens per suffix-array shard")
    p.add_argument("--quiet", action="store_true")
    return p


def _trace_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmoflow trace",
                                description="Trace text (or a model's generation) back to the training documents. "
                                "'olmoflow trace index --help' builds an index.")
    p.add_argument("--index", required=True, help="trace index directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to trace (a model output)")
    src.add_argument("--model", help="generate from this model for --prompt, then trace the generation")
    p.add_argument("--prompt", default="", help="the prompt (ranks documents with BM25; the model's input with --model)")
    p.add_argument("--tokenizer", help="the model's tokenizer dir (default: beside the model); must be the index's")
    p.add_argument("--chat", action="store_true", help="with --model: apply the chat template")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--min-tokens", type=int, default=3, help="shortest span kept (tokens)")
    p.add_argument("--max-count", type=int, default=10, help="drop spans occurring more often than this")
    p.add_argument("--fraction", type=float, default=0.05, help="keep about ceil(fraction * L) spans")
    p.add_argument("--json", action="store_true", help="print the result as JSON (docs/trace.md)")
    p.add_argument("--no-color", action="store_true")
    return p


def generate(model: str, prompt: str, index_tokenizer: Path, tokenizer: str | None = None, chat: bool = False,
             max_new_tokens: int = 64) -> str:
    """Greedy generation from ``model`` for ``prompt``; refuses a model whose tokenizer is not the index's."""
    from olmoflow.artifacts import resolve_model
    from olmoflow.inference.cli import find_tokenizer_dir
    from olmoflow.inference.engine import Engine, GenerationRequest
    from olmoflow.model import load
    from olmoflow.tokenizer import Tok, apply_chat_template
    from olmoflow.trace.index import tokenizer_fingerprint

    model_path = resolve_model(model)
    tok_dir = find_tokenizer_dir(model_path, tokenizer)
    mine, theirs = tokenizer_fingerprint(tok_dir), tokenizer_fingerprint(index_tokenizer)
    if mine != theirs:
        raise OlmoflowError(f"model tokenizer {tok_dir} (fingerprint {mine}) is not the trace index's tokenizer "
                            f"{index_tokenizer} (fingerprint {theirs}); build the index from this model's data")
    tok = Tok.from_dir(tok_dir)
    m = load(model_path, device="cpu")
    if chat:
        text, stop = apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True), tok.stop_ids
    else:
        text, stop = prompt, [tok.eos_id]
    ids = tok.encode(text)
    if not ids:
        raise OlmoflowError("--prompt is empty: a model needs a prompt to generate from")
    req = GenerationRequest(prompt=ids, max_new_tokens=max_new_tokens, temperature=0.0, stop_token_ids=stop)
    [res] = Engine(m, tokenizer=tok, max_batch_size=1).generate([req])
    return res.text if res.text is not None else tok.decode(res.token_ids)


def index_main(argv: list[str]) -> int:
    from olmoflow.trace.index import build_index

    a = _index_parser().parse_args(argv)
    data = list(a.data)
    if a.sft:
        from olmoflow.trace.chat import chat_token_dataset

        if a.tokenizer is None:
            raise OlmoflowError("--sft needs --tokenizer (the tokenizer SFT used)")
        chats = Path(a.out).with_name(Path(a.out).name + "-sft-tokens")
        chat_token_dataset(a.sft, a.tokenizer, chats)
        data.append(str(chats))
    meta = build_index(data, a.out, tokenizer=a.tokenizer, curation=a.curation, shard_tokens=a.shard_tokens,
                       quiet=a.quiet)
    print(f"trace index {a.out}: {meta['n_tokens']:,} tokens, {meta['n_docs']:,} documents "
          f"({meta['n_docs_seen']:,} as trained, repeats folded), {len(meta['shards'])} shard(s), "
          f"{meta['bytes_per_token']} bytes/token, built at {meta['build_tokens_per_s']:,.0f} tokens/s")
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "index":
        return index_main(argv[1:])
    from olmoflow.trace import TraceIndex, render_terminal, trace_text

    a = _trace_parser().parse_args(argv)
    index = TraceIndex.open(a.index)
    text = a.text
    if a.model is not None:
        text = generate(a.model, a.prompt, index.tokenizer_path, a.tokenizer, a.chat, a.max_new_tokens)
        if not text.strip():
            raise OlmoflowError(f"the model generated only whitespace for --prompt {a.prompt!r}: nothing to trace")
    elif a.tokenizer is not None:
        index = TraceIndex.open(a.index, tokenizer=a.tokenizer, verify=False)
    result: dict[str, Any] = trace_text(index, text, prompt=a.prompt, min_tokens=a.min_tokens,
                                        max_count=a.max_count, fraction=a.fraction)
    if a.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        print(render_terminal(result, color=not a.no_color and sys.stdout.isatty()))
    return 0
