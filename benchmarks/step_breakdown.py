"""Where a training step and a decode step spend their time: ours vs transformers, by kernel class.

The ratio targets of ``model_throughput.py`` can only be met in the time that differs between the
two implementations. This script measures what does not: (a) for a training step (fwd+bwd, fp32
CPU), the torch.profiler self time of GEMMs (``aten::mm``/``bmm``/``addmm``, same FLOPs in both),
attention kernels (SDPA) and everything else, with the GEMMs' achieved GFLOP/s, and the ratio
theirs/ours (unprofiled step times) would reach if every non-GEMM, non-attention kernel of ours
cost nothing: transformers' unprofiled step time over our GEMM + attention time; (b) for
cached decoding, the bytes of weights each step must read against the single-core streaming
bandwidth of this machine, i.e. the floor on a step's time that both implementations share, and
the rate at which an 8-row GEMM (a decoding batch of 8) actually streams those weights when they are
not in cache; (c) the GEMM library: the training step's GEMM shapes (forward, input gradient and
weight gradient of every linear layer) through torch's BLAS (MKL in the x86 wheels) and through
numpy's (OpenBLAS), same thread count, i.e. how much of the GEMM floor is the library.

    python benchmarks/step_breakdown.py
    python benchmarks/step_breakdown.py --preset tiny-20m --threads 2

Ends with one ``RESULT key=value ...`` line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from model_throughput import build_pair, timed_pair  # noqa: E402

GEMM = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"}


def classify(key: str) -> str:
    if key in GEMM:
        return "gemm"
    if "scaled_dot_product" in key or "flash_attention" in key:
        return "attention"
    return "other"


def gemm_flops(events) -> float:
    """FLOPs of the profiled 2-D GEMMs (recorded shapes; batched ones are counted as 'gemm' time only)."""
    total = 0.0
    for e in events:
        if e.key == "aten::mm" and len(e.input_shapes) >= 2 and len(e.input_shapes[0]) == 2:
            (m, k), (_, n) = e.input_shapes[0], e.input_shapes[1]
            total += 2.0 * m * k * n * e.count
    return total


def breakdown(steps: dict, n: int) -> dict[str, dict[str, float]]:
    """Seconds per step by kernel class (profiler self CPU time) and GEMM GFLOP/s for each step
    function; the functions are profiled alternately, one step at a time, so load drift on a shared
    machine hits both alike."""
    acc = {name: {"gemm": 0.0, "attention": 0.0, "other": 0.0, "flops": 0.0} for name in steps}
    for fn in steps.values():
        fn()
    for _ in range(n):
        for name, fn in steps.items():
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                fn()
            for e in prof.key_averages():
                acc[name][classify(e.key)] += e.self_cpu_time_total * 1e-6 / n
            acc[name]["flops"] += gemm_flops(prof.key_averages(group_by_input_shape=True)) / n
    for d in acc.values():
        d["gemm_gflops"] = d.pop("flops") / 1e9 / d["gemm"]
    return acc


def stream_bandwidth(nbytes: int, repeats: int = 10) -> float:
    """Bytes/s of one core summing a float32 buffer of ``nbytes`` (larger than the caches)."""
    x = torch.ones(nbytes // 4)
    x.sum()
    t0 = time.perf_counter()
    for _ in range(repeats):
        x.sum()
    return nbytes * repeats / (time.perf_counter() - t0)


def linear_gemms(model: torch.nn.Module, tokens: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Operand pairs, in autograd's layouts, of the three GEMMs of every nn.Linear in a training step
    over ``tokens`` rows: forward ``x Wᵀ``, input gradient ``g W``, weight gradient ``gᵀ x``."""
    out = []
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            d_out, d_in = m.weight.shape
            w, x, g = torch.randn(d_out, d_in), torch.randn(tokens, d_in), torch.randn(tokens, d_out)
            out += [(x, w.t()), (g, w), (g.t(), x)]
    return out


def blas_comparison(gemms: list[tuple[torch.Tensor, torch.Tensor]], threads: int, repeats: int):
    """Seconds for all ``gemms`` through torch.mm and through numpy.matmul on the same memory
    (medians of alternating runs); None when numpy's BLAS thread count cannot be set."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    import numpy as np

    np_gemms = [(a.numpy(), b.numpy()) for a, b in gemms]  # views: same strides, no copies

    def run_torch():
        for a, b in gemms:
            torch.mm(a, b)

    def run_numpy():
        for a, b in np_gemms:
            np.matmul(a, b)

    with threadpool_limits(limits=threads, user_api="blas"):
        t_torch, t_numpy, _ = timed_pair(run_torch, run_numpy, warmup=1, repeats=repeats)
    return t_torch, t_numpy


def cold_gemm_bandwidth(model: torch.nn.Module, rows: int, copies: int = 4) -> float:
    """Weight bytes/s of ``rows``-row products over ``copies`` copies of every linear weight (more than
    the caches hold, so every weight comes from memory, as in a decode step), computed as
    ``(W xᵀ)ᵀ`` like our ``Linear`` does for 3-8 rows (MKL's faster kernel for that case)."""
    weights = [m.weight.detach().clone() for _ in range(copies) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    xs = {w.shape[1]: torch.randn(rows, w.shape[1]) for w in weights}

    def run():
        for w in weights:
            torch.mm(w, xs[w.shape[1]].T)

    run()
    t0 = time.perf_counter()
    for _ in range(3):
        run()
    return 3 * sum(w.numel() * 4 for w in weights) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny-5m")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    cfg, ours, theirs = build_pair(args.preset)
    ours.train()
    theirs.train()
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq + 1), generator=torch.Generator().manual_seed(1))
    x, y = ids[:, :-1], ids[:, 1:]

    def step_ours():
        ours.zero_grad(set_to_none=True)
        ours(x, labels=y)[0].backward()  # the trainer's default (fused) loss

    def step_theirs():
        theirs.zero_grad(set_to_none=True)
        theirs(input_ids=x, labels=x).loss.backward()

    res = breakdown({"ours": step_ours, "theirs": step_theirs}, args.steps)
    a, b = res["ours"], res["theirs"]
    tot_a, tot_b = (sum(d[k] for k in ("gemm", "attention", "other")) for d in (a, b))
    # without the profiler (it adds a few µs to every kernel, and transformers runs ~2x as many)
    t_ours, t_theirs, ratio = timed_pair(step_ours, step_theirs, warmup=1, repeats=args.steps + 1)
    print(f"threads={args.threads}  torch {torch.__version__}  {args.preset} fwd+bwd {args.batch}x{args.seq} "
          "(profiler self time, ms per step)")
    print(f"{'':12s}{'ours':>10s}{'transformers':>14s}")
    for k in ("gemm", "attention", "other"):
        print(f"{k:12s}{a[k] * 1e3:10.0f}{b[k] * 1e3:14.0f}")
    print(f"{'total':12s}{tot_a * 1e3:10.0f}{tot_b * 1e3:14.0f}")
    print(f"{'unprofiled':12s}{t_ours * 1e3:10.0f}{t_theirs * 1e3:14.0f}")
    print(f"GEMM GFLOP/s: ours {a['gemm_gflops']:.1f}, transformers {b['gemm_gflops']:.1f}")
    ceiling = t_theirs / (a["gemm"] + a["attention"])
    print(f"ratio (unprofiled) {ratio:.2f}; if every non-GEMM, non-attention kernel of ours were free: {ceiling:.2f}")
    weight_bytes = sum(t.numel() * t.element_size() for n, t in ours.named_parameters() if n != "embed.weight")
    bw = stream_bandwidth(max(256 << 20, 4 * weight_bytes))
    floor_ms = weight_bytes / bw * 1e3
    print(f"decode: {weight_bytes / 1e6:.1f} MB of weights read per step; one core streams {bw / 1e9:.1f} GB/s "
          f"from memory -> >= {floor_ms:.2f} ms per step for any implementation")
    gemm8 = cold_gemm_bandwidth(ours, 8)
    print(f"decode batch 8: an 8-row GEMM streams uncached weights at {gemm8 / 1e9:.1f} GB/s "
          f"-> {weight_bytes / gemm8 * 1e3:.2f} ms per step in the linear layers alone")
    blas = blas_comparison(linear_gemms(ours, args.batch * args.seq), args.threads, args.steps + 1)
    blas_ratio = float("nan")
    if blas is None:
        print("GEMM library comparison skipped: threadpoolctl is not installed")
    else:
        blas_ratio = blas[0] / blas[1]
        print(f"the step's GEMM shapes: torch (MKL) {blas[0] * 1e3:.0f} ms, numpy (OpenBLAS) {blas[1] * 1e3:.0f} ms "
              f"-> OpenBLAS {blas_ratio:.2f}x")
    print(f"RESULT train_gemm_ms={a['gemm'] * 1e3:.0f} train_attention_ms={a['attention'] * 1e3:.0f} "
          f"train_other_ms={a['other'] * 1e3:.0f} peer_total_ms={tot_b * 1e3:.0f} gemm_gflops={a['gemm_gflops']:.1f} "
          f"ratio_now={ratio:.2f} ratio_ceiling={ceiling:.2f} decode_weight_mb={weight_bytes / 1e6:.1f} "
          f"stream_gb_s={bw / 1e9:.1f} decode_floor_ms={floor_ms:.2f} gemm8_gb_s={gemm8 / 1e9:.1f} "
          f"openblas_vs_torch_gemm={blas_ratio:.2f}")


if __name__ == "__main__":
    main()
