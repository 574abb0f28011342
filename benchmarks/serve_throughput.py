"""Serving throughput: one ``olmoflow serve`` process, 1 vs 8 vs 32 concurrent streaming clients,
and transformers' ``generate`` serving the same requests one at a time.

The server is the real one (a subprocess on 127.0.0.1, continuous batching, SSE streaming); clients
are asyncio ``httpx`` streams of ``/v1/completions`` (token-id prompts, greedy, ``max_tokens`` new
tokens). Reported per concurrency: total generated tokens/s (usage counts over wall time) and per
CPU-second of the server process (robust to other jobs on a shared machine); time to
first token and inter-token latency percentiles on the server (its /metrics histograms); on the
client, the time to the first text and between SSE chunks (a chunk carries every token queued since
the last; a random model's first tokens are often partial UTF-8 bytes, which stream as text only
once a character is complete, so "first text" lags TTFT). The peer runs
``Olmo3ForCausalLM.generate(do_sample=False)`` with the same weights on each request in turn, in
this process with the same thread count as the server.

    python benchmarks/serve_throughput.py                  # tiny-5m, prompts of 32, 64 new tokens
    python benchmarks/serve_throughput.py --preset tiny-20m --threads 2 --requests-per-stream 4
    python benchmarks/serve_throughput.py --dtype bfloat16   # bf16 weights on server and peer

Ends with ``RESULT ...`` (ratio_8_over_1: target >= 4).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CORPUS = "Open language models need open data, open code and open weights. The quick brown fox jumps. " * 50


def build(preset: str, out: Path, seed: int = 0):
    """Tokenizer + randomly initialised model dir (tokenizer beside the weights), and the model."""
    from olmoflow.model import Olmo, get_preset
    from olmoflow.model.io import save
    from olmoflow.tokenizer import Tok, train_tokenizer

    (out / "corpus.txt").write_text(CORPUS)
    tok_dir = train_tokenizer([out / "corpus.txt"], out / "tok", vocab_size=512, quiet=True)
    cfg = get_preset(preset)
    model = Olmo(cfg, init=False)
    model.init_weights(torch.Generator().manual_seed(seed))
    model.eval()
    save(model, out / "model")
    (out / "model" / "tokenizer.json").write_bytes((Path(tok_dir) / "tokenizer.json").read_bytes())
    return Tok.from_dir(tok_dir), model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, threads: int, max_batch: int, dtype: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from olmoflow.cli import main; sys.exit(main())",
                             "serve", "--model", str(model_dir), "--port", str(port), "--served-model-name", "m",
                             "--max-batch-size", str(max_batch), "--max-waiting", "256", "--log-level", "warning",
                             "--dtype", dtype],
                            env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


async def one_stream(client, url: str, prompt: list[int], max_tokens: int) -> dict:
    body = {"model": "m", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    stamps, tokens = [], 0
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["text"]:
                stamps.append(time.perf_counter())
    return {"ttft": stamps[0] - t0 if stamps else float("nan"), "itl": [b - a for a, b in zip(stamps, stamps[1:])],
            "tokens": tokens}


async def run_load(url: str, prompts: list[list[int]], streams: int, max_tokens: int) -> dict:
    import httpx

    queue = list(prompts)
    results: list[dict] = []

    async def worker(client):
        while queue:
            results.append(await one_stream(client, url, queue.pop(), max_tokens))

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=streams + 4)) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(streams)))
        wall = time.perf_counter() - t0
    tokens = sum(r["tokens"] for r in results)
    itl = sorted(x for r in results for x in r["itl"])
    ttft = sorted(r["ttft"] for r in results if r["ttft"] == r["ttft"])  # (no text at all: nan)
    return {"tok_s": tokens / wall, "tokens": tokens, "wall": wall, "ttft": ttft, "itl": itl}


def server_histograms(url: str) -> dict[str, list[tuple[float, float]]]:
    """Cumulative (le, count) buckets of the server's latency histograms (GET /metrics)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[tuple[float, float]]] = {}
    for fam in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for smp in fam.samples:
            if smp.name.endswith("_bucket"):
                out.setdefault(smp.name[len("olmoflow:"):-len("_bucket")], []).append(
                    (float(smp.labels["le"]), smp.value))
    return out


def hist_pct(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """Percentile of the observations between two snapshots (linear within a bucket)."""
    counts = [(le, a - b) for (le, a), (_, b) in zip(sorted(after), sorted(before))]
    total = counts[-1][1]
    if total <= 0:
        return float("nan")
    prev_le, prev_c = 0.0, 0.0
    for le, c in counts:
        if c >= q * total:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (q * total - prev_c) / max(c - prev_c, 1e-9)
        prev_le, prev_c = le, c
    return prev_le


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far: unlike wall time, other jobs on
    a shared machine do not inflate it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def peer_one_at_a_time(model, prompts: list[list[int]], max_tokens: int, dtype: str) -> float:
    """transformers generate, greedy, one request after the other: generated tokens/s."""
    import transformers

    from olmoflow.model.hf import config_to_hf, to_hf_state

    hf_cfg = transformers.AutoConfig.for_model(**config_to_hf(model.cfg))
    hf = transformers.AutoModelForCausalLM.from_config(hf_cfg, attn_implementation="sdpa").eval()
    hf.load_state_dict(to_hf_state(model.state_dict(), model.cfg), strict=True)
    hf = hf.to(getattr(torch, dtype))
    tokens, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, do_sample=False,
                              eos_token_id=model.cfg.eos_token_id, pad_token_id=model.cfg.pad_token_id)
            tokens += out.shape[1] - ids.shape[1]
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny-5m")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--streams", default="1,8,32", help="concurrency levels (comma separated)")
    p.add_argument("--requests-per-stream", type=int, default=4,
                   help="requests per concurrent stream (1 stream runs 16 requests at least)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server and of the peer")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="weights of the server and of the peer (bfloat16 uses AMX/AVX512-BF16 where the CPU has it)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    levels = [int(s) for s in args.streams.split(",") if s]
    with tempfile.TemporaryDirectory() as d:
        tok, model = build(args.preset, Path(d))
        g = torch.Generator().manual_seed(1)
        n_max = max(levels) * args.requests_per_stream
        pool = [torch.randint(13, tok.vocab_size, (args.prompt_len,), generator=g).tolist() for _ in range(n_max)]
        proc, url = start_server(Path(d) / "model", args.threads, max(levels), args.dtype)
        result: dict[str, float] = {}
        try:
            asyncio.run(run_load(url, pool[:2], 2, 8))  # warm-up
            for s in levels:
                n = max(s * args.requests_per_stream, 16)
                h0, c0 = server_histograms(url), cpu_seconds(proc.pid)
                r = asyncio.run(run_load(url, (pool * 8)[:n], s, args.max_tokens))
                h1, c1 = server_histograms(url), cpu_seconds(proc.pid)
                cpu_tok_s = r["tokens"] / max(c1 - c0, 1e-9)
                itl = {q: hist_pct(h0["inter_token_latency_seconds"], h1["inter_token_latency_seconds"], q) * 1e3
                       for q in (.5, .9, .99)}
                ttft = {q: hist_pct(h0["time_to_first_token_seconds"], h1["time_to_first_token_seconds"], q) * 1e3
                        for q in (.5, .9, .99)}
                print(f"[serve] {s:>2} streams: {r['tokens']} tokens in {r['wall']:.1f}s = {r['tok_s']:.0f} tok/s; "
                      f"{c1 - c0:.1f} server CPU-s = {cpu_tok_s:.0f} tok per server CPU-second\n"
                      f"        client: first text p50/p90/p99 {pct(r['ttft'], .5) * 1e3:.0f}/"
                      f"{pct(r['ttft'], .9) * 1e3:.0f}/{pct(r['ttft'], .99) * 1e3:.0f} ms, between SSE chunks p50/p90/p99 "
                      f"{pct(r['itl'], .5) * 1e3:.1f}/{pct(r['itl'], .9) * 1e3:.1f}/{pct(r['itl'], .99) * 1e3:.1f} ms\n"
                      f"        server: TTFT p50/p90/p99 {ttft[.5]:.0f}/{ttft[.9]:.0f}/{ttft[.99]:.0f} ms, inter-token "
                      f"latency p50/p90/p99 {itl[.5]:.1f}/{itl[.9]:.1f}/{itl[.99]:.1f} ms (/metrics histograms)", flush=True)
                result[f"tok_s_{s}"] = round(r["tok_s"])
                result[f"cpu_tok_s_{s}"] = round(cpu_tok_s)
                result[f"ttft_p50_ms_{s}"] = round(ttft[.5])
                result[f"itl_p50_ms_{s}"] = round(itl[.5], 1)
        finally:
            proc.terminate()
            proc.wait()
        peer = peer_one_at_a_time(model, pool[:8], args.max_tokens, args.dtype)
        print(f"[peer] transformers generate, one request at a time: {peer:.0f} tok/s", flush=True)
        result["peer_tok_s"] = round(peer)
        if "tok_s_1" in result:
            for s in levels[1:]:
                result[f"ratio_{s}_over_1"] = round(result[f"tok_s_{s}"] / result["tok_s_1"], 2)
                result[f"cpu_ratio_{s}_over_1"] = round(result[f"cpu_tok_s_{s}"] / result["cpu_tok_s_1"], 2)
        for s in levels:
            result[f"ratio_{s}_over_peer"] = round(result[f"tok_s_{s}"] / peer, 2)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
