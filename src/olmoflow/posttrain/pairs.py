"""Delta-learning preference pairs: ``olmoflow pairs --config FILE``, flow stage ``pairs``.

OLMo 3's DPO data (REFERENCE.md §4) pairs a response from a *stronger* model (chosen) with one from
a much *weaker* model (rejected) for the same prompt: the contrast between them, not the absolute
quality of either, is what DPO learns from ("delta learning"). Both sides are sampled with the one
generation engine. Where a verifier applies to a prompt (a gold arithmetic answer, instruction
constraints, JSON keys; ``olmoflow.posttrain.verifiers``) a verified-correct chosen is preferred
among the strong model's samples and pairs whose chosen does not score higher than the rejected are
dropped; pairs whose token lengths differ by more than ``max_len_delta`` are dropped (length control).
Every filter's count is reported in ``stats.json``.

Prompts: JSONL conversation records (``messages``; the prompt is everything before the last
assistant turn) or ``{"prompt": str | messages}``; other fields (``answer``, ``constraints``,
``verifier``, ...) pass through to the verifiers and into the pair record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from olmoflow.config import Config
from olmoflow.errors import OlmoflowError

__all__ = ["PairsConfig", "build_pairs", "prompt_messages"]


class PairsConfig(Config):
    """Where prompts come from, which models answer them and how pairs are filtered."""

    prompts: list[str] = Field(default_factory=list)
    #: the stronger model (e.g. the final SFT checkpoint, or a bigger model)
    strong: str = ""
    #: the much weaker model (e.g. an early checkpoint, or a smaller model)
    weak: str = ""
    tokenizer: str = ""
    out: str = "runs/pairs"
    #: samples per prompt from the strong model (a verified-correct one is preferred)
    strong_samples: int = Field(4, ge=1)
    weak_samples: int = Field(1, ge=1)
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(128, ge=1)
    #: length control: keep pairs whose token lengths differ by at most this
    max_len_delta: int = Field(100, ge=0)
    #: drop pairs whose prompt + response (either side) is longer than this many tokens (set it to the
    #: DPO stage's seq_len, which refuses longer pairs); None: no limit
    max_len: int | None = Field(None, ge=2)
    #: use at most this many prompts (None: all)
    limit: int | None = Field(None, ge=1)
    #: with a verifier, keep a pair only when chosen scores strictly higher than rejected
    require_better: bool = True
    seed: int = 0
    batch_size: int = Field(32, ge=1)


def prompt_messages(rec: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The prompt of a record: ``prompt`` (string or messages) or the ``messages`` before the last
    assistant turn."""
    if "prompt" in rec:
        p = rec["prompt"]
        if isinstance(p, str):
            return [{"role": "user", "content": p}]
        if isinstance(p, list) and p:
            return p
        raise OlmoflowError(f"{where}: field 'prompt' must be a string or a list of messages")
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise OlmoflowError(f"{where}: a prompt record needs 'prompt' or 'messages'")
    last = max((i for i, m in enumerate(msgs) if isinstance(m, dict) and m.get("role") == "assistant"), default=None)
    prompt = msgs if last is None else msgs[:last]
    if not prompt:
        raise OlmoflowError(f"{where}: no prompt before the first assistant turn")
    return prompt


def _read_prompts(paths: list[str], limit: int | None) -> list[tuple[str, dict[str, Any]]]:
    from olmoflow.io import iter_records

    out = []
    for path in paths:
        for where, rec in iter_records(path):
            out.append((where, rec))
            if limit is not None and len(out) >= limit:
                return out
    if not out:
        raise OlmoflowError(f"no prompts in {', '.join(paths)}")
    return out


def _sample(model_dir: str, tok, prompts: list[list[int]], n: int, cfg: PairsConfig, seed: int, label: str,
            quiet: bool) -> list[list[Any]]:
    """``n`` samples per prompt from ``model_dir``: results[i][k]."""
    from olmoflow.inference.engine import Engine, GenerationRequest, derive_seed
    from olmoflow.model import load

    model = load(model_dir).eval()
    if tok.vocab_size > model.cfg.vocab_size:
        raise OlmoflowError(f"{model_dir}: model vocab_size {model.cfg.vocab_size} is smaller than the tokenizer's "
                            f"{tok.vocab_size} ({cfg.tokenizer})")
    engine = Engine(model, tokenizer=tok, max_batch_size=cfg.batch_size)
    reqs = [GenerationRequest(prompt=p, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                              stop_token_ids=tok.stop_ids, seed=derive_seed(seed, i * n + k))
            for i, p in enumerate(prompts) for k in range(n)]
    from olmoflow.train.metrics import make_progress

    results = []
    progress = make_progress(disable=quiet)
    with progress:
        task = progress.add_task(f"pairs: {label}", total=len(reqs), loss="-", tok_s="-")
        for s in range(0, len(reqs), cfg.batch_size):
            results += engine.generate(reqs[s : s + cfg.batch_size])
            progress.update(task, completed=len(results))
    return [results[i * n : (i + 1) * n] for i in range(len(prompts))]


def build_pairs(cfg: PairsConfig, quiet: bool = False) -> dict[str, Any]:
    """Sample, verify, filter and write ``OUT/pairs.jsonl`` + ``OUT/stats.json``; returns the stats."""
    from olmoflow.posttrain.verifiers import verify
    from olmoflow.tokenizer import Tok

    for key in ("strong", "weak", "tokenizer"):
        if not getattr(cfg, key):
            raise OlmoflowError(f"pairs needs '{key}'")
    if not cfg.prompts:
        raise OlmoflowError("pairs needs 'prompts' (JSONL files)")
    tok = Tok.from_dir(cfg.tokenizer)
    records = _read_prompts(cfg.prompts, cfg.limit)
    prompts = [prompt_messages(rec, where) for where, rec in records]
    # the prompt as the model will see it in DPO and chat: with the record's tool specs
    ids = [tok.encode_chat(p, rec.get("tools"), add_generation_prompt=True) for p, (_, rec) in zip(prompts, records)]
    strong = _sample(cfg.strong, tok, ids, cfg.strong_samples, cfg, cfg.seed, "strong", quiet)
    weak = _sample(cfg.weak, tok, ids, cfg.weak_samples, cfg, cfg.seed + 1, "weak", quiet)
    counts = {"prompts": len(records), "kept": 0, "not_better": 0, "length_delta": 0, "empty_response": 0,
              "too_long": 0}
    verified = {"chosen_correct": 0, "rejected_correct": 0, "with_verifier": 0}
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for (where, rec), prompt, prompt_ids, s_res, w_res in zip(records, prompts, ids, strong, weak):
        s_scored = [(verify(rec, r.text or ""), r) for r in s_res]
        w_scored = [(verify(rec, r.text or ""), r) for r in w_res]
        # chosen: the strong sample with the highest verified score (first on ties: seeded order)
        (c_score, c_reason), chosen = max(s_scored, key=lambda x: -1.0 if x[0][0] is None else x[0][0])
        # rejected: the weak sample with the lowest score (the clearest contrast)
        (r_score, r_reason), rejected = min(w_scored, key=lambda x: 2.0 if x[0][0] is None else x[0][0])
        if not (chosen.text or "").strip() or not (rejected.text or "").strip():
            counts["empty_response"] += 1
            continue
        if c_score is not None:
            verified["with_verifier"] += 1
            verified["chosen_correct"] += int(c_score >= 1.0)
            verified["rejected_correct"] += int((r_score or 0.0) >= 1.0)
            if cfg.require_better and not c_score > (r_score or 0.0):
                counts["not_better"] += 1
                continue
        n_c, n_r = len(chosen.token_ids), len(rejected.token_ids)
        if cfg.max_len is not None and len(prompt_ids) + max(n_c, n_r) + 1 > cfg.max_len:
            counts["too_long"] += 1
            continue
        if abs(n_c - n_r) > cfg.max_len_delta:
            counts["length_delta"] += 1
            continue
        counts["kept"] += 1
        extra = {k: v for k, v in rec.items() if k not in ("messages", "prompt", "chosen", "rejected")}
        lines.append(json.dumps({
            "id": str(rec.get("id", where)), "prompt": prompt,
            "chosen": {"role": "assistant", "content": chosen.text},
            "rejected": {"role": "assistant", "content": rejected.text},
            "chosen_score": c_score, "rejected_score": r_score, "chosen_tokens": n_c, "rejected_tokens": n_r,
            "source": where, **extra,
        }, ensure_ascii=False))
    (out_dir / "pairs.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    stats = {**counts, **verified, "strong": cfg.strong, "weak": cfg.weak, "seed": cfg.seed}
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    if not lines:
        raise OlmoflowError(f"pairs: every pair was filtered out ({counts}); see {out_dir / 'stats.json'}")
    return stats
