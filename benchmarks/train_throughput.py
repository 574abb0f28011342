"""Training throughput of ``olmoflow pretrain`` against a plain transformers training loop.

CPU (default): tokens/s of the tiny-1m and tiny-20m presets through the full trainer
(``olmoflow.train.pretrain``: data loading, AdamW, grad clipping, loss-spike guard, metrics),
and of the peer: ``transformers`` ``Olmo3ForCausalLM`` with the same config, batch and AdamW in a
bare loop. ratio = ours / peer at each size.

Packing (``--packing-steps``, default on): documents of mixed lengths (uniform 16..seq_len) trained
as packed sequences with intra-document attention masks (``data.mode: packed``, what SFT and the
long-context stage use) against the peer layout, one document per row padded to the same
``seq_len``, same model, rows per step and AdamW: useful (non-padding) tokens/s of each;
ratio = packed / padded. The point of packing: no compute is spent on padding.

GPU (when CUDA is available): tokens/s/GPU and MFU of a ~1B OLMo 3 config (``olmo3-1b``) in bf16
with ``torch.compile`` on one GPU; skipped cleanly on CPU-only machines.

    python benchmarks/train_throughput.py [--steps N] [--seq-len T] [--micro-batch B] [--sizes tiny-1m,tiny-20m]
                                          [--packing-steps N] [--packing-seq-len T] [--packing-preset P]

Ends with ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from olmoflow.model import get_preset
from olmoflow.model.hf import config_to_hf
from olmoflow.train import TrainConfig, pretrain
from olmoflow.train.metrics import read_metrics

#: dense bf16 peak FLOP/s by GPU name fragment (for MFU)
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def write_random_tokens(out: Path, vocab: int, n_tokens: int, doc_len: int = 500, seed: int = 0) -> Path:
    """A token dataset (olmoflow.data.tokens) of random documents."""
    from olmoflow.data.tokens import ShardWriter, dtype_for, write_meta

    out.mkdir(parents=True, exist_ok=True)
    toks = np.random.default_rng(seed).integers(2, vocab, size=n_tokens)
    toks[doc_len - 1 :: doc_len] = 0  # EOS closes every document
    with ShardWriter(out, "bench-00000", "bench", dtype_for(vocab)) as w:
        for i, start in enumerate(range(0, n_tokens, doc_len)):
            w.add(toks[start : start + doc_len], f"bench-{i}")
    write_meta(out, [w.entry], vocab, 0, "random")
    return out


def ours(preset: str, steps: int, seq_len: int, micro: int, workdir: Path, **cfg_extra) -> float:
    """Median tokens/s of the trainer after 2 warm-up steps."""
    model = get_preset(preset)
    data = write_random_tokens(workdir / f"data-{preset}", model.vocab_size, (steps + 2) * seq_len * micro + seq_len + 1)
    cfg = TrainConfig(run_dir=str(workdir / f"run-{preset}"), model=preset, data={"paths": [str(data)]},
                      seq_len=seq_len, micro_batch=micro, global_batch_tokens=seq_len * micro, steps=steps + 2,
                      checkpoint={"every": 0}, **cfg_extra)
    pretrain(cfg, quiet=True)
    rates = [r["tokens_per_s"] for r in read_metrics(Path(cfg.run_dir) / "metrics.jsonl")][2:]
    return statistics.median(rates)


def peer(preset: str, steps: int, seq_len: int, micro: int) -> float:
    """Median tokens/s of transformers' Olmo3ForCausalLM in a bare AdamW loop (same config/batch)."""
    import transformers

    cfg = get_preset(preset)
    hf_cfg = config_to_hf(cfg)
    config = transformers.AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    rates = []
    for i in range(steps + 2):
        ids = torch.randint(2, cfg.vocab_size, (micro, seq_len + 1), generator=gen)
        t0 = time.perf_counter()
        out = model(input_ids=ids[:, :-1], labels=ids[:, :-1])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            rates.append(seq_len * micro / (time.perf_counter() - t0))
    return statistics.median(rates)


def packing_run(preset: str, steps: int, seq_len: int, micro: int, seed: int = 0) -> dict[str, float]:
    """Useful tokens/s of packed-with-document-masks batches vs one padded document per row."""
    from olmoflow.model import Olmo
    from olmoflow.train.data import IGNORE_INDEX, PackedSource, TokenShard

    cfg = get_preset(preset)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(16, seq_len + 1, size=(steps + 2) * micro * 3)
    docs = [np.append(rng.integers(2, cfg.vocab_size, size=n - 1), cfg.eos_token_id) for n in lengths]
    flat = np.concatenate(docs).astype(np.int64)
    idx = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    shard = TokenShard(path=Path("mem"), source="bench", tokens=flat, idx=idx, docs_path=Path("mem"))
    packed = PackedSource("bench", [shard], seq_len, cfg.pad_token_id)

    def padded(i: int) -> dict[str, np.ndarray]:
        d = docs[i]
        ids = np.full(seq_len, cfg.pad_token_id, dtype=np.int64)
        labels = np.full(seq_len, IGNORE_INDEX, dtype=np.int64)
        ids[: len(d)], labels[: len(d) - 1] = d, d[1:]
        mask = np.zeros(seq_len, dtype=np.int64)
        mask[: len(d)] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    def run(get) -> float:
        torch.manual_seed(seed)
        model = Olmo(cfg)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
        rates = []
        for step in range(steps + 2):
            rows = [get(step * micro + j) for j in range(micro)]
            batch = {k: torch.from_numpy(np.stack([r[k] for r in rows])) for k in rows[0]}
            t0 = time.perf_counter()
            loss, parts = model(batch["input_ids"], doc_ids=batch.get("doc_ids"),
                                attention_mask=batch.get("attention_mask"), labels=batch["labels"], reduction="sum")
            (loss / parts["n_tokens"].clamp(min=1)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if step >= 2:
                rates.append(int((batch["labels"] != IGNORE_INDEX).sum()) / (time.perf_counter() - t0))
        return statistics.median(rates)

    a = run(lambda i: packed[i])
    b = run(padded)
    fill = float(np.mean([(packed[i]["labels"] != IGNORE_INDEX).mean() for i in range(min(len(packed), 50))]))
    return {"packed_tok_s": a, "padded_tok_s": b, "packed_fill": fill}


def gpu_run(steps: int, workdir: Path) -> dict[str, float]:
    """tokens/s/GPU and MFU of olmo3-1b, bf16 + torch.compile, seq 4096 (one GPU)."""
    seq, micro = 4096, 2
    cfg = get_preset("olmo3-1b")
    tok_s = ours("olmo3-1b", steps, seq, micro, workdir, precision="bf16", compile=True)
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    mfu = cfg.flops_per_token(seq) * tok_s / peak if peak else float("nan")
    return {"gpu_1b_tok_s_per_gpu": tok_s, "gpu_1b_mfu": mfu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="tiny-1m,tiny-20m")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--gpu-steps", type=int, default=20)
    ap.add_argument("--packing-steps", type=int, default=6, help="0 skips the packing comparison")
    ap.add_argument("--packing-seq-len", type=int, default=512)
    ap.add_argument("--packing-preset", default="tiny-5m")
    args = ap.parse_args(argv)
    result: dict[str, str] = {}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.micro_batch}×{args.seq_len}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for preset in args.sizes.split(","):
            key = preset.replace("-", "_")
            a = ours(preset, args.steps, args.seq_len, args.micro_batch, work)
            b = peer(preset, args.steps, args.seq_len, args.micro_batch)
            print(f"{preset:10s} {get_preset(preset).num_params() / 1e6:6.1f}M params  "
                  f"olmoflow {a:9.0f} tok/s   transformers loop {b:9.0f} tok/s   ratio {a / b:.2f}")
            result[f"{key}_tok_s"] = f"{a:.0f}"
            result[f"{key}_peer_tok_s"] = f"{b:.0f}"
            result[f"{key}_ratio"] = f"{a / b:.2f}"
        if args.packing_steps:
            p = packing_run(args.packing_preset, args.packing_steps, args.packing_seq_len, args.micro_batch)
            ratio = p["packed_tok_s"] / p["padded_tok_s"]
            print(f"packing   {args.packing_preset}, docs of 16..{args.packing_seq_len} tokens, {args.micro_batch} rows "
                  f"× {args.packing_seq_len}: packed with document masks {p['packed_tok_s']:9.0f} useful tok/s "
                  f"(rows {p['packed_fill']:.0%} full)   one padded document per row {p['padded_tok_s']:9.0f} "
                  f"useful tok/s   ratio {ratio:.2f}")
            result["packed_tok_s"] = f"{p['packed_tok_s']:.0f}"
            result["padded_tok_s"] = f"{p['padded_tok_s']:.0f}"
            result["packing_ratio"] = f"{ratio:.2f}"
        if torch.cuda.is_available():
            g = gpu_run(args.gpu_steps, work)
            print(f"olmo3-1b on {torch.cuda.get_device_name(0)}: {g['gpu_1b_tok_s_per_gpu']:.0f} tok/s/GPU, "
                  f"MFU {g['gpu_1b_mfu']:.1%} (reference: OLMo 1B ≈ 44K tok/s/GPU on H100)")
            result["gpu_1b_tok_s_per_gpu"] = f"{g['gpu_1b_tok_s_per_gpu']:.0f}"
            result["gpu_1b_mfu"] = f"{g['gpu_1b_mfu']:.3f}"
        else:
            print("no CUDA device: GPU throughput / MFU skipped")
            result["gpu"] = "skipped"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
