"""Throughput of our model and generation engine against transformers, same weights, same inputs.

(a) training step (forward + backward, no optimizer), fp32 CPU: our ``Olmo`` with the trainer's
    default loss (``model(ids, labels=...)``: the fused, chunked LM head + CE + z-loss) vs
    transformers' ``Olmo3ForCausalLM`` built from the same config (``config_to_hf``) with the same
    weights and its ``labels=`` loss, at the tiny-5m and tiny-20m presets;
(b) cached greedy decoding: our ``Engine`` vs ``model.generate(do_sample=False, use_cache=True)``,
    same prompt batch and number of new tokens (the greedy tokens are compared too);
(c) on a CUDA device: training MFU of olmo3-1b in bf16 (skipped on CPU).

Runs with no arguments in a few minutes on 2 cores; each measurement alternates ours / theirs,
repeats, and reports median times and the median of per-pair ratios. Ends with one
``RESULT key=value ...`` line.

    python benchmarks/model_throughput.py
    python benchmarks/model_throughput.py --presets tiny-20m --train-batch 16 --seq 512 --threads 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from olmoflow.inference import Engine, GenerationRequest
from olmoflow.model import Olmo, get_preset
from olmoflow.model.hf import config_to_hf, to_hf_state

H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of an H100 SXM


def build_pair(preset: str, seed: int = 0, dtype=torch.float32, device="cpu"):
    """Our model and transformers' model with identical weights."""
    import transformers

    cfg = get_preset(preset)
    ours = Olmo(cfg, init=False)
    ours.init_weights(torch.Generator().manual_seed(seed))
    ours = ours.to(device, dtype)
    hf_cfg = transformers.AutoConfig.for_model(**config_to_hf(cfg))
    theirs = transformers.AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="sdpa").to(device, dtype)
    theirs.load_state_dict(to_hf_state(ours.state_dict(), cfg), strict=True)
    return cfg, ours, theirs


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_pair(fn_ours, fn_theirs, warmup: int, repeats: int) -> tuple[float, float, float]:
    """Median seconds of each function and the median of the per-pair ratios theirs/ours.

    Calls alternate, and each ratio compares two adjacent calls, so load changes on a shared
    machine cancel in the ratio.
    """
    for _ in range(warmup):
        fn_ours()
        fn_theirs()
    a, b = [], []
    for _ in range(repeats):
        for fn, acc in ((fn_ours, a), (fn_theirs, b)):
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            acc.append(time.perf_counter() - t0)
    return statistics.median(a), statistics.median(b), statistics.median([y / x for x, y in zip(a, b)])


def bench_train(preset: str, batch: int, seq: int, warmup: int, repeats: int) -> dict[str, float]:
    cfg, ours, theirs = build_pair(preset)
    ours.train()
    theirs.train()
    ids = torch.randint(0, cfg.vocab_size, (batch, seq + 1), generator=torch.Generator().manual_seed(1))
    x, y = ids[:, :-1], ids[:, 1:]

    def step_ours():
        ours.zero_grad(set_to_none=True)
        loss, _ = ours(x, labels=y)  # what the trainer runs (loss_impl: fused)
        loss.backward()

    def step_theirs():
        theirs.zero_grad(set_to_none=True)
        theirs(input_ids=x, labels=x).loss.backward()

    t_ours, t_theirs, ratio = timed_pair(step_ours, step_theirs, warmup, repeats)
    n = batch * seq
    return {"ours_tok_s": n / t_ours, "peer_tok_s": n / t_theirs, "ratio": ratio}


def bench_decode(preset: str, batch: int, prompt_len: int, new_tokens: int, warmup: int, repeats: int):
    cfg, ours, theirs = build_pair(preset)
    ours.eval()
    theirs.eval()
    theirs.generation_config.eos_token_id = None  # always generate exactly new_tokens
    ids = torch.randint(2, cfg.vocab_size, (batch, prompt_len), generator=torch.Generator().manual_seed(2))
    engine = Engine(ours, max_batch_size=batch)
    reqs = [GenerationRequest(prompt=row.tolist(), max_new_tokens=new_tokens) for row in ids]
    out: dict[str, list] = {}

    def run_ours():
        out["ours"] = [r.token_ids for r in engine.generate(reqs)]

    def run_theirs():
        with torch.inference_mode():
            g = theirs.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, use_cache=True, pad_token_id=cfg.pad_token_id,
            )
        out["theirs"] = g[:, prompt_len:].tolist()

    t_ours, t_theirs, ratio = timed_pair(run_ours, run_theirs, warmup, repeats)
    same = sum(a == b for a, b in zip(out["ours"], out["theirs"])) / batch
    n = batch * new_tokens
    return {"ours_tok_s": n / t_ours, "peer_tok_s": n / t_theirs, "ratio": ratio, "same_tokens": same}


def bench_gpu_mfu(preset: str, batch: int, seq: int, steps: int) -> dict[str, float]:
    """fwd+bwd+AdamW step throughput in bf16 on one GPU; MFU against the H100 bf16 peak."""
    cfg = get_preset(preset)
    with torch.device("cuda"):
        model = Olmo(cfg)  # initialised on the GPU (a CPU init of 1B+ parameters is slow)
    model = model.to(torch.bfloat16).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq + 1), device="cuda")
    x, y = ids[:, :-1], ids[:, 1:]
    times = []
    for i in range(steps + 3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, _ = model(x, labels=y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    tok_s = batch * seq / statistics.median(times)
    mfu = cfg.flops_per_token(seq) * tok_s / H100_BF16_PEAK
    return {"tok_s": tok_s, "mfu": mfu}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="tiny-5m,tiny-20m", help="training-step presets (comma separated; empty: skip)")
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--decode-preset", default="tiny-5m")
    p.add_argument("--decode-batches", default="1,8", help="prompt batch sizes for decoding (comma separated)")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads for both implementations (1 by default: tiny models gain little "
                        "from more, and spinning OpenMP workers collapse on a shared/busy machine)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--gpu-preset", default="olmo3-1b")
    p.add_argument("--gpu-batch", type=int, default=4)
    p.add_argument("--gpu-seq", type=int, default=2048)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result: dict[str, float] = {}

    print(f"threads={args.threads}  torch {torch.__version__}")
    for preset in filter(None, args.presets.split(",")):
        r = bench_train(preset, args.train_batch, args.seq, args.warmup, args.repeats)
        print(f"[train fwd+bwd] {preset} batch {args.train_batch}x{args.seq}: ours {r['ours_tok_s']:.0f} tok/s, "
              f"transformers {r['peer_tok_s']:.0f} tok/s, ratio {r['ratio']:.2f}")
        key = preset.replace("tiny-", "")
        result[f"train_{key}_ours_tok_s"] = round(r["ours_tok_s"])
        result[f"train_{key}_peer_tok_s"] = round(r["peer_tok_s"])
        result[f"train_{key}_ratio"] = round(r["ratio"], 2)

    for batch in (int(b) for b in args.decode_batches.split(",") if b):
        r = bench_decode(args.decode_preset, batch, args.prompt_len, args.new_tokens, args.warmup, args.repeats)
        print(f"[cached greedy decode] {args.decode_preset} batch {batch}, prompt {args.prompt_len}, "
              f"{args.new_tokens} new: ours {r['ours_tok_s']:.0f} tok/s, transformers {r['peer_tok_s']:.0f} tok/s, "
              f"ratio {r['ratio']:.2f}, identical greedy rows {r['same_tokens']:.0%}")
        result.update({f"decode_b{batch}_ours_tok_s": round(r["ours_tok_s"]),
                       f"decode_b{batch}_peer_tok_s": round(r["peer_tok_s"]),
                       f"decode_b{batch}_ratio": round(r["ratio"], 2),
                       f"decode_b{batch}_same_tokens": round(r["same_tokens"], 2)})

    if torch.cuda.is_available():
        r = bench_gpu_mfu(args.gpu_preset, args.gpu_batch, args.gpu_seq, steps=10)
        print(f"[gpu bf16 train] {args.gpu_preset} {args.gpu_batch}x{args.gpu_seq}: {r['tok_s']:.0f} tok/s, "
              f"MFU {r['mfu']:.1%} (of {H100_BF16_PEAK / 1e12:.0f} TFLOP/s)")
        result.update(gpu_tok_s=round(r["tok_s"]), gpu_mfu=round(r["mfu"], 3))
    else:
        print("[gpu bf16 train] skipped: no CUDA device")
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
