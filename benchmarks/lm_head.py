"""One LM-head loss step (forward + backward), chunked op vs the logits path: time and peak memory.

Peer: the logits path, ``lm_loss(F.linear(h, W), targets, reduction="sum")`` (the model's ``lm_head``
+ ``lm_loss``), which holds [tokens, vocab] float32 logits and their gradient. Ours:

* ``loss``: ``lm_head_loss`` (CE + z-loss with the gradients computed in forward, what
  ``Olmo.forward(labels=...)`` and the trainer run), ``--chunk`` rows at a time;
* ``logprobs``: ``token_logprobs`` (per-token log-probs and logsumexp, logits recomputed in
  backward), with the same CE + z-loss computed from its outputs downstream: what a post-training
  objective with its own per-token weighting pays.

Peak memory: each variant runs one step in a fresh process; the growth of the process's max RSS
over that step above the inputs (h, W, targets). Time: all variants in one process, one warm-up
step each, then ``--repeats`` rounds that time each variant once in turn (so load from other
processes on a shared machine hits them alike); the best round per variant is reported.

    python benchmarks/lm_head.py                       # V=100278, N=2048, d=512, fp32
    python benchmarks/lm_head.py --d 1024 --autocast   # bf16 autocast GEMMs, fp32 params

Ends with one ``RESULT key=value ...`` line (ratio = logits time / ours; mem_ratio = ours / logits).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

VARIANTS = ("logits", "loss", "logprobs")


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _step_fn(variant: str, h: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, chunk: int, autocast: bool):
    from olmoflow import model as M

    def ctx():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)

    def logits_path():
        with ctx():
            logits = F.linear(h, w)
        return M.lm_loss(logits, targets, reduction="sum")[0]

    def loss_path():
        fn = getattr(M, "lm_head_loss", None) or M.fused_lm_loss  # fused_lm_loss: before the chunked op
        with ctx():
            return fn(h, w, targets, reduction="sum", chunk_size=chunk)[0]

    def logprobs_path():
        with ctx():
            logp, lse, _ = M.token_logprobs(h, w, targets, chunk_size=chunk)
        return -logp.sum() + 1e-5 * lse.pow(2).sum()

    fn = {"logits": logits_path, "loss": loss_path, "logprobs": logprobs_path}[variant]

    def step():
        h.grad = w.grad = None
        fn().backward()

    return step


def _inputs(args):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(args.tokens, args.d, generator=g).requires_grad_()
    w = (0.02 * torch.randn(args.vocab, args.d, generator=g)).requires_grad_()
    targets = torch.randint(0, args.vocab, (args.tokens,), generator=g)
    targets[::10] = -100  # some ignored rows, as in packed batches
    return h, w, targets


def peak_mib(args) -> float:
    """Max-RSS growth over one step of ``args.variant`` (call in a fresh process)."""
    h, w, targets = _inputs(args)
    step = _step_fn(args.variant, h, w, targets, args.chunk, args.autocast)
    base = _max_rss_mib()
    step()
    return _max_rss_mib() - base


def best_times(steps: dict, repeats: int) -> dict[str, float]:
    """Best seconds per step of each step function, timed in alternation after one warm-up each."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: min(ts) for name, ts in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=100278)
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--autocast", action="store_true", help="bf16 autocast around the head (fp32 params)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant in this process
    args = p.parse_args()
    if args.variant:
        print(json.dumps({"peak_mib": peak_mib(args)}))
        return
    variants = args.variants.split(",")
    res = {v: {} for v in variants}
    for v in variants:
        cmd = [sys.executable, __file__, "--variant", v] + sys.argv[1:]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res[v]["peak_mib"] = json.loads(out.strip().splitlines()[-1])["peak_mib"]
    h, w, targets = _inputs(args)
    steps = {v: _step_fn(v, h, w, targets, args.chunk, args.autocast) for v in variants}
    for v, sec in best_times(steps, args.repeats).items():
        res[v]["seconds"] = sec
        print(f"{v:9s} {sec:8.3f} s/step  peak {res[v]['peak_mib']:8.0f} MiB", flush=True)
    dtype = "bf16-autocast" if args.autocast else "fp32"
    kv = [f"V={args.vocab}", f"N={args.tokens}", f"d={args.d}", f"chunk={args.chunk}", f"dtype={dtype}"]
    base = res.get("logits")
    for v in ("loss", "logprobs"):
        if v in res:
            kv += [f"{v}_s={res[v]['seconds']:.3f}", f"{v}_mib={res[v]['peak_mib']:.0f}"]
            if base:
                kv += [f"{v}_ratio={base['seconds'] / res[v]['seconds']:.2f}",
                       f"{v}_mem_ratio={res[v]['peak_mib'] / base['peak_mib']:.3f}"]
    if base:
        kv += [f"logits_s={base['seconds']:.3f}", f"logits_mib={base['peak_mib']:.0f}"]
    print("RESULT " + " ".join(kv))


if __name__ == "__main__":
    main()
