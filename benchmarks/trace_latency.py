"""Trace-index build speed, index size per token and the latency of tracing a 458-token response
(OlmoTrace's reported response length) over a synthetic corpus of >= 100M tokens, against infini-gram
(the engine behind AI2's OlmoTrace) on the same tokens.

The corpus: Zipf-distributed words of a 50k-word vocabulary with a sentence delimiter every ~15 words, in
documents of 100-700 tokens. The response: 458 tokens, about half copied in 20-60-token runs from random
documents (so there are spans to find) and half fresh Zipf words. Measured, in one run:

* ours: ``build_index`` tokens/s; ``trace_text`` (the whole answer: spans, counts, ranking, merging,
  documents with snippets and BM25) and ``trace_tokens`` (the spans only), median of 5 warm runs;
* infini-gram 2.6 (if installed): its prebuilt indexer on the same tokens (written in its format, built
  offline), and ``attribute()``, its OlmoTrace span finder (maximal spans, delimiters, min length, max
  count), median of 5 warm runs;
* bytes per token of both indexes (both are memory-mapped; this is what the page cache holds).

    python benchmarks/trace_latency.py                 # 100M tokens (a few minutes on 2 cores)
    python benchmarks/trace_latency.py --tokens 2e7    # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

N_WORDS = 50_000
RESPONSE_TOKENS = 458


def make_corpus(root: Path, n_tokens: int, seed: int = 0) -> tuple[Path, list[np.ndarray]]:
    """A word-level tokenizer and a token dataset of ~``n_tokens`` tokens; returns (dataset dir, a few docs)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from olmoflow.data.tokens import ShardWriter, dtype_for, write_meta

    vocab = {f"w{i}": i for i in range(N_WORDS)}
    dot, eos = N_WORDS, N_WORDS + 1
    vocab["."] = dot
    vocab["<|endoftext|>"] = eos
    tok = Tokenizer(models.WordLevel(vocab, unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    (root / "tok").mkdir(parents=True)
    tok.save(str(root / "tok" / "tokenizer.json"))
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(N_WORDS) + 2.7)
    cum = np.cumsum(p / p.sum())
    words = np.searchsorted(cum, rng.random(n_tokens)).astype(np.uint16)
    words[rng.random(n_tokens) < 1 / 15] = dot
    lengths = rng.integers(100, 700, size=n_tokens // 100 + 1)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    bounds = bounds[bounds < n_tokens]
    out = root / "data"
    out.mkdir()
    sample = []
    with ShardWriter(out, "web-00000", "web", dtype_for(len(vocab))) as w:
        for k in range(len(bounds)):
            doc = words[bounds[k] : bounds[k + 1] if k + 1 < len(bounds) else n_tokens]
            w.add(np.append(doc, eos), f"doc{k}")
            if k % 997 == 0:
                sample.append(doc)
    write_meta(out, [w.entry], len(vocab), eos, str(root / "tok"))
    return out, sample


def make_response(sample: list[np.ndarray], seed: int = 1) -> list[int]:
    """458 tokens: copied runs of 20-60 tokens from corpus documents, alternating with fresh words."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(N_WORDS) + 2.7)
    out: list[int] = []
    while len(out) < RESPONSE_TOKENS:
        doc = sample[int(rng.integers(len(sample)))]
        n = int(rng.integers(20, 60))
        a = int(rng.integers(0, max(len(doc) - n, 1)))
        out += doc[a : a + n].tolist()
        out += rng.choice(N_WORDS, size=int(rng.integers(10, 40)), p=p / p.sum()).tolist()
    return out[:RESPONSE_TOKENS]


def median_time(fn, runs: int = 5) -> float:
    fn()  # warm the page cache and any lazily loaded state
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def dir_bytes(path: Path, names: tuple[str, ...]) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file() and f.name.startswith(names))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=float, default=1e8, help="corpus size in tokens (default 1e8)")
    ap.add_argument("--no-peer", action="store_true", help="skip infini-gram")
    ap.add_argument("--keep", help="build in this directory and keep it (default: a temporary one)")
    args = ap.parse_args()
    n_tokens = int(args.tokens)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="trace_bench_"))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    try:
        from olmoflow.trace import TraceIndex, build_index, trace_text
        from olmoflow.trace.tracer import _encode, trace_tokens

        t0 = time.perf_counter()
        data, sample = make_corpus(root, n_tokens)
        print(f"corpus: {n_tokens:,} tokens in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        meta = build_index([data], root / "idx", quiet=True)
        build_s = time.perf_counter() - t0
        ours_build = meta["n_tokens"] / build_s
        ours_bpt = dir_bytes(root / "idx", ("shard-",)) / meta["n_tokens"]
        print(f"ours: index built in {build_s:.1f} s ({ours_build:,.0f} tokens/s), {ours_bpt:.2f} bytes/token "
              f"(tokens + suffix array + document offsets; {meta['bytes_per_token']} with records and unigrams)")
        index = TraceIndex.open(root / "idx")
        ids = make_response(sample)
        text = " ".join(index.tokenizer.id_to_token(i) for i in ids)
        enc_ids, offs = _encode(index, text, "response")
        assert enc_ids == ids
        result = trace_text(index, text)
        ours_trace = median_time(lambda: trace_text(index, text))
        ours_spans = median_time(lambda: trace_tokens(index, enc_ids, offs, text))
        n_spans = len(result["spans"])
        print(f"ours: trace_text of {len(ids)} tokens: {ours_trace:.3f} s median ({n_spans} spans, "
              f"{sum(len(s['documents']) for s in result['spans'])} documents); spans only {ours_spans:.3f} s")
        fields = {"tokens": meta["n_tokens"], "ours_build_tok_s": round(ours_build), "ours_bytes_per_token":
                  round(ours_bpt, 2), "ours_trace_s": round(ours_trace, 4), "ours_spans_s": round(ours_spans, 4),
                  "spans": n_spans}
        peer = None
        if not args.no_peer:
            try:
                from olmoflow.trace import infinigram

                t0 = time.perf_counter()
                infinigram.build(index, root / "ig", mem_gib=8)
                peer_build_s = time.perf_counter() - t0
                eng = infinigram.engine(index, root / "ig")
                peer = eng
            except Exception as e:  # noqa: BLE001 - the peer is optional: say why it is missing
                print(f"infini-gram: not measured ({type(e).__name__}: {e})")
        if peer is not None:
            dot = index.tokenizer.token_to_id(".")

            def attribute():
                return peer.attribute(input_ids=ids, delim_ids=[dot], min_len=3, max_cnt=10, enforce_bow=False)

            peer_spans = attribute()["spans"]
            peer_s = median_time(attribute)
            peer_bpt = dir_bytes(root / "ig", ("tokenized.", "table.", "offset.")) / meta["n_tokens"]
            print(f"infini-gram: indexed (export + its prebuilt indexer, 1 part) in {peer_build_s:.1f} s "
                  f"({meta['n_tokens'] / peer_build_s:,.0f} tokens/s), {peer_bpt:.2f} bytes/token; "
                  f"attribute(): {peer_s:.3f} s median ({len(peer_spans)} spans)")
            fields.update({"peer_build_tok_s": round(meta["n_tokens"] / peer_build_s), "peer_bytes_per_token":
                           round(peer_bpt, 2), "peer_attribute_s": round(peer_s, 4),
                           "ratio_spans_vs_peer": round(peer_s / ours_spans, 3),
                           "ratio_trace_vs_peer": round(peer_s / ours_trace, 3)})
        (root / "result.json").write_text(json.dumps(fields))
        print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
