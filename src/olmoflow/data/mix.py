"""Mix token datasets to target per-source ratios or token counts (up- or down-sampling documents).

For each source the target token count is met by whole passes over its documents (upsampling) plus
a seeded random subset for the remainder (downsampling); documents are never split. The result is
a token dataset (:mod:`olmoflow.data.tokens`) whose document records keep each document's id and
source and say how often it ``repeats`` in the mix, plus ``mix.json`` recording available, target
and achieved tokens.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from olmoflow.data.executors import _progress
from olmoflow.data.tokens import ShardWriter, dtype_for, open_token_dataset, write_meta
from olmoflow.errors import OlmoflowError


def parse_mapping(items: str | list[str] | None, kind: type = float) -> dict[str, Any]:
    """Parse ``a=0.3,b=0.7`` (or a list of ``a=0.3``) into a dict."""
    if not items:
        return {}
    if isinstance(items, str):
        items = [items]
    out: dict[str, Any] = {}
    for chunk in items:
        for part in chunk.split(","):
            part = part.strip()
            if not part:
                continue
            if "=" not in part:
                raise OlmoflowError(f"expected name=value, got {part!r}")
            k, v = part.split("=", 1)
            try:
                out[k.strip()] = kind(float(v)) if kind is int else kind(v)
            except ValueError:
                raise OlmoflowError(f"{k}: not a number: {v!r}") from None
    return out


def _select(lengths: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Document indices (with repetition) whose lengths sum to about ``target`` tokens."""
    total = int(lengths.sum())
    if total == 0 or target <= 0:
        return np.zeros(0, dtype=np.int64)
    passes = target // total
    chosen = [rng.permutation(len(lengths)) for _ in range(passes)]
    remaining = target - passes * total
    if remaining > 0:
        perm = rng.permutation(len(lengths))
        cum = np.cumsum(lengths[perm])
        k = int(np.searchsorted(cum, remaining, side="left")) + 1  # smallest prefix reaching the target
        chosen.append(perm[: min(k, len(perm))])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def mix(
    inputs: dict[str, str | Path],
    output: str | Path,
    ratios: dict[str, float] | None = None,
    tokens: dict[str, int] | None = None,
    total_tokens: int | None = None,
    seed: int = 0,
    quiet: bool = False,
) -> dict[str, Any]:
    """Write a mix of the token datasets ``inputs`` ({source: dir}) to ``output``; returns mix.json.

    Give ``ratios`` (normalised) with ``total_tokens``, or explicit per-source ``tokens`` (then
    ``total_tokens`` optionally rescales them).
    """
    if not inputs:
        raise OlmoflowError("mix: no inputs (use --input source=DIR)")
    if (ratios is None) == (tokens is None):
        raise OlmoflowError("mix: give exactly one of ratios or tokens")
    targets_spec = ratios if ratios is not None else tokens
    assert targets_spec is not None
    unknown = sorted(set(targets_spec) - set(inputs))
    if unknown:
        raise OlmoflowError(f"mix: no input for source(s) {unknown} (inputs: {sorted(inputs)})")
    if any(v < 0 for v in targets_spec.values()):
        raise OlmoflowError("mix: ratios/tokens must be >= 0")
    if ratios is not None:
        if not total_tokens:
            raise OlmoflowError("mix: --ratios needs --total-tokens")
        s = sum(ratios.values())
        if s <= 0:
            raise OlmoflowError("mix: ratios sum to 0")
        targets = {k: int(round(total_tokens * v / s)) for k, v in ratios.items()}
    else:
        assert tokens is not None
        targets = {k: int(v) for k, v in tokens.items()}
        if total_tokens:
            s = sum(targets.values()) or 1
            targets = {k: int(round(total_tokens * v / s)) for k, v in targets.items()}
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    datasets = {name: open_token_dataset(p) for name, p in inputs.items()}
    vocab = {d.vocab_size for d in datasets.values()}
    eos = {d.eos_token_id for d in datasets.values()}
    if len(vocab) > 1 or len(eos) > 1:
        raise OlmoflowError(f"mix: inputs use different tokenizers (vocab sizes {sorted(vocab)})")
    vocab_size, eos_id = vocab.pop(), eos.pop()
    shards, manifest = [], {}
    for name in sorted(targets):
        ds = datasets[name]
        own = [s for s in ds.shards if s.source == name] or ds.shards
        refs = [(si, i) for si, sh in enumerate(own) for i in range(sh.n_docs)]
        lengths = np.concatenate([np.diff(sh.idx) for sh in own]).astype(np.int64)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        picked = _select(lengths, targets[name], rng)
        repeats = np.bincount(picked, minlength=len(lengths))
        n_picked_tokens = int(lengths[picked].sum())
        records: dict[int, dict[str, Any]] = {}  # parsed once per picked document
        with (_progress(quiet, unit="tokens", stderr=True) as prog,
              ShardWriter(out, f"{name}-00000", name, dtype_for(vocab_size)) as w):
            bar = prog.add_task(f"mix {name}", total=n_picked_tokens) if prog else None
            for j, k in enumerate(picked.tolist()):
                si, i = refs[k]
                rec = records.get(k)
                if rec is None:
                    rec = records[k] = own[si].record(i)
                w.add(own[si].document(i), rec["id"], rec["source"], repeats=int(repeats[k]))
                if prog and j % 1024 == 1023:
                    prog.update(bar, completed=w.n_tokens)
            if prog:
                prog.update(bar, completed=n_picked_tokens)
        shards.append(w.entry)
        n_tok, avail = w.n_tokens, int(lengths.sum())
        manifest[name] = {
            "input": str(inputs[name]), "available_tokens": avail, "available_docs": len(lengths),
            "target_tokens": targets[name], "tokens": n_tok, "docs": int(len(picked)),
            "unique_docs": int(np.count_nonzero(repeats)), "repetition": round(n_tok / avail, 4) if avail else 0.0,
        }
    total = sum(s["n_tokens"] for s in shards)
    mix_info = {
        "seed": seed, "ratios": ratios, "tokens": tokens, "total_tokens_requested": total_tokens,
        "total_tokens": total, "sources": manifest,
        "achieved_ratios": {k: round(v["tokens"] / total, 4) if total else 0.0 for k, v in manifest.items()},
    }
    (out / "mix.json").write_text(json.dumps(mix_info, indent=1))
    tokenizer = next(iter(datasets.values())).meta.get("tokenizer", "")
    write_meta(out, shards, vocab_size, eos_id, tokenizer)
    if not quiet:
        for k, v in manifest.items():
            print(f"mix {k}: {v['tokens']} tokens ({v['docs']} docs, {v['repetition']}x of available)")
    return mix_info
