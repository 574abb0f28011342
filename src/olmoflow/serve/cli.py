"""``olmoflow serve --model DIR``: the OpenAI-compatible server and web chat on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import sys

from olmoflow.errors import OlmoflowError

DTYPES = ("float32", "bfloat16", "float16")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmoflow serve", description="Serve a model: OpenAI-compatible API "
                                "(/v1/chat/completions, /v1/completions, ...), /metrics, and a web chat at /.")
    p.add_argument("--model", required=True, help="model dir (flow artifact, checkpoint, HF export) or artifact id")
    p.add_argument("--tokenizer", help="tokenizer dir (default: found beside the model or through its lineage)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("OLMOFLOW_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 routes (default: $OLMOFLOW_API_KEY; none)")
    p.add_argument("--served-model-name", help="the model name clients send (default: --model as given)")
    p.add_argument("--trace-index", help="OlmoTrace index dir: enables POST /v1/trace and highlights in the chat")
    p.add_argument("--max-batch-size", type=int, default=32, help="sequences decoded together (KV slots)")
    p.add_argument("--max-waiting", type=int, default=64, help="requests waiting for a slot before answering 429")
    p.add_argument("--default-max-tokens", type=int, default=256, help="max_tokens when a request sets none")
    p.add_argument("--device", help="cpu / cuda (default: cuda when available)")
    p.add_argument("--dtype", choices=DTYPES, help="cast the weights (default: as stored)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return p


def load_app(args: argparse.Namespace):
    """Load the model and tokenizer named by ``args`` and build the app."""
    try:
        import uvicorn  # noqa: F401

        from olmoflow.serve.app import create_app
    except ImportError as e:
        raise OlmoflowError(f"olmoflow serve needs the serve extra ({e.name} is missing): "
                            "pip install 'olmoflow[serve]'") from None
    from olmoflow.inference.cli import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(args.model, args.tokenizer, args.device, args.dtype)
    if args.trace_index is not None and not os.path.isdir(args.trace_index):
        raise OlmoflowError(f"--trace-index {args.trace_index}: no such directory")
    return create_app(model, tok, args.served_model_name or args.model, api_key=args.api_key,
                      trace_index=args.trace_index, max_batch_size=args.max_batch_size,
                      max_waiting=args.max_waiting, default_max_tokens=args.default_max_tokens)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.max_batch_size < 1 or args.max_waiting < 1 or args.default_max_tokens < 1:
        raise OlmoflowError("--max-batch-size, --max-waiting and --default-max-tokens must be >= 1")
    app = load_app(args)
    import uvicorn

    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"olmoflow serve: warning: listening on {args.host} without --api-key: anyone who can reach this "
              "machine can use the model", file=sys.stderr)
    print(f"olmoflow serve: {args.served_model_name or args.model} on http://{args.host}:{args.port}/ "
          f"(OpenAI API at /v1, metrics at /metrics)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5)
    return 0
