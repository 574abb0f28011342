"""``olmoflow generate``: stream a model's continuation of a prompt (or a chat reply) to the terminal.

Flags, ``--config FILE`` (YAML) and ``key=value`` overrides fill one :class:`GenerateConfig`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from olmoflow.config import Config, config_from_args
from olmoflow.errors import OlmoflowError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class GenerateConfig(Config):
    """``olmoflow generate``: what to load, the prompt, and the sampling settings."""

    #: native checkpoint dir, training run artifact (its final checkpoint), HF export dir, or artifact id (prefix)
    model: str
    #: prompt text (the user message with ``chat``)
    prompt: str
    #: apply the chat template and stop at the end of the turn
    chat: bool = False
    #: tokenizer dir (None: beside the model, or found through its artifact's lineage)
    tokenizer: str | None = None
    max_new_tokens: int = Field(128, ge=1)
    #: 0 = greedy
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    seed: int = 0
    stop: list[str] = Field(default_factory=list)
    #: cpu / cuda (None: cuda when available)
    device: str | None = None
    #: cast the weights (None: as stored)
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    #: a prompt longer than the model's context: refuse (False) or keep its last tokens with a warning
    truncate: bool = False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="olmoflow generate", description="Generate text from a model, streaming tokens.")
    p.add_argument("--config", help="YAML with any GenerateConfig field (flags and key=value overrides win)")
    p.add_argument("--model", help="native checkpoint dir, training run artifact, HF export dir, or an artifact id "
                   "(unique prefix of >= 4 characters, as in the run's tables)")
    p.add_argument("--prompt", help="prompt text (the user message with --chat)")
    p.add_argument("--chat", action="store_true", default=None,
                   help="apply the chat template and stop at the end of the turn")
    p.add_argument("--tokenizer", help="tokenizer dir (default: beside the model, or through its artifact's lineage)")
    p.add_argument("--truncate", action="store_true", default=None,
                   help="keep the end of a prompt longer than the model's context (with a warning) instead of refusing")
    p.add_argument("--max-new-tokens", type=int, help="default 128")
    p.add_argument("--temperature", type=float, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float)
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", help="stop string (repeatable)")
    p.add_argument("--device", help="cpu / cuda (default: cuda when available)")
    p.add_argument("--dtype", choices=list(_DTYPES), help="cast the weights (default: as stored)")
    p.add_argument("--quiet", action="store_true", help="do not print the summary line on stderr")
    p.add_argument("overrides", nargs="*", help="key=value overrides (e.g. temperature=0.8)")
    return p


def find_tokenizer_dir(model_path: str | Path, explicit: str | None = None) -> Path:
    """The tokenizer directory: ``explicit``, else found from the model by the one rule of
    :func:`olmoflow.artifacts.find_tokenizer` (beside the model, or through its artifact's lineage)."""
    if explicit is not None:
        p = Path(explicit)
        if not (p / "tokenizer.json").is_file() and not (p.is_file() and p.suffix == ".json"):
            raise OlmoflowError(f"{p}: no tokenizer.json there")
        return p
    from olmoflow.artifacts import find_tokenizer
    from olmoflow.model.io import find_model_dir

    return find_tokenizer(find_model_dir(model_path))


def fit_prompt(prompt: list[int], context: int, max_new_tokens: int, truncate: bool) -> list[int]:
    """``prompt`` if it leaves room for at least one new token in a ``context``-token model; a longer
    one is refused (one-line error naming both lengths) or, with ``truncate``, left-truncated to keep
    its last ``context - min(max_new_tokens, context // 2)`` tokens, with a warning on stderr."""
    if len(prompt) < context:
        return prompt
    if not truncate:
        raise OlmoflowError(f"the prompt is {len(prompt)} tokens, the model's context is {context}: shorten it, "
                            "or pass --truncate to keep its last tokens")
    keep = context - min(max_new_tokens, context // 2)
    print(f"warning: the prompt is {len(prompt)} tokens, the model's context is {context}: kept its last {keep} "
          "tokens (left-truncated)", file=sys.stderr)
    return prompt[-keep:]


def _check_device(device: str) -> None:
    """A one-line error for a device torch does not know or this machine does not have."""
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, ValueError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
        raise OlmoflowError(f"--device {device}: not available here ({reason})") from None


def load_model_and_tokenizer(model_ref: str, tokenizer: str | None = None, device: str | None = None,
                             dtype: str | None = None):
    """(model, Tok) for a command-line ``--model`` (path or artifact id), ``--tokenizer`` (None: the
    one rule of :func:`find_tokenizer_dir`), ``--device`` (None: cuda when available) and ``--dtype``
    (None: as stored); one-line errors for a missing device or a tokenizer larger than the model's vocab."""
    from olmoflow.artifacts import resolve_model
    from olmoflow.model import load
    from olmoflow.model.io import stored_dtype
    from olmoflow.tokenizer import Tok

    model_path = resolve_model(model_ref)
    tok = Tok.from_dir(find_tokenizer_dir(model_path, tokenizer))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    _check_device(device)
    model = load(model_path, device=device, dtype=_DTYPES[dtype] if dtype else stored_dtype(model_path))
    if tok.vocab_size > model.cfg.vocab_size:
        raise OlmoflowError(
            f"tokenizer has {tok.vocab_size} tokens but the model's vocab_size is {model.cfg.vocab_size}"
        )
    return model, tok


def main(argv: list[str]) -> int:
    args = _parser().parse_intermixed_args(argv)
    cfg = config_from_args(GenerateConfig, args, args.overrides)
    from olmoflow.inference.engine import Engine, GenerationRequest
    from olmoflow.tokenizer import apply_chat_template

    model, tok = load_model_and_tokenizer(cfg.model, cfg.tokenizer, cfg.device, cfg.dtype)
    if cfg.chat:
        text = apply_chat_template([{"role": "user", "content": cfg.prompt}], add_generation_prompt=True)
        stop_ids = tok.stop_ids
    else:
        text, stop_ids = cfg.prompt, [tok.eos_id]
    prompt = tok.encode(text)
    if not prompt:
        raise OlmoflowError("the prompt is empty")
    prompt = fit_prompt(prompt, model.cfg.max_seq_len, cfg.max_new_tokens, cfg.truncate)
    req = GenerationRequest(
        prompt=prompt, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        top_k=cfg.top_k, stop_token_ids=stop_ids, stop_strings=cfg.stop, seed=cfg.seed,
    )

    def on_token(_i: int, _tok: int, delta: str) -> None:
        if delta:
            sys.stdout.write(delta)
            sys.stdout.flush()

    t0 = time.perf_counter()
    [res] = Engine(model, tokenizer=tok, max_batch_size=1).generate([req], stream_callback=on_token)
    dt = time.perf_counter() - t0
    sys.stdout.write("\n")
    sys.stdout.flush()
    if not args.quiet:
        print(
            f"[{res.finish_reason}: {len(res.token_ids)} tokens in {dt:.2f}s, "
            f"{len(res.token_ids) / max(dt, 1e-9):.1f} tok/s, prompt {res.n_prompt_tokens} tokens]",
            file=sys.stderr,
        )
    return 0
