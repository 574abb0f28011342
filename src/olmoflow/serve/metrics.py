"""Prometheus metrics of the server (``GET /metrics``), named like vLLM's where they mean the same.

One :class:`Metrics` per app, on its own registry (several servers in one process, e.g. tests, do not
collide). The engine thread records token timings; the handlers record HTTP errors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "olmoflow:"
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
            7.5, 10.0, 20.0, 40.0, 80.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Requests running/waiting, token counters and latency histograms."""

    def __init__(self, model_name: str):
        r = self.registry = CollectorRegistry()
        labels = ["model_name"]
        self.running = Gauge(PREFIX + "num_requests_running", "Sequences in the running batch.", labels, registry=r)
        self.waiting = Gauge(PREFIX + "num_requests_waiting", "Sequences waiting for a KV slot.", labels, registry=r)
        self.prompt_tokens = Counter(PREFIX + "prompt_tokens", "Prompt tokens prefilled.", labels, registry=r)
        self.generation_tokens = Counter(PREFIX + "generation_tokens", "Tokens generated.", labels, registry=r)
        self.ttft = Histogram(PREFIX + "time_to_first_token_seconds", "Time from request to its first token.",
                              labels, buckets=_LATENCY, registry=r)
        self.itl = Histogram(PREFIX + "inter_token_latency_seconds", "Time between consecutive tokens of a sequence.",
                             labels, buckets=_LATENCY, registry=r)
        self.e2e = Histogram(PREFIX + "e2e_request_latency_seconds", "Time from request to its last token.",
                             labels, buckets=_LATENCY, registry=r)
        self.success = Counter(PREFIX + "request_success", "Finished sequences by finish reason.",
                               labels + ["finished_reason"], registry=r)
        self.errors = Counter(PREFIX + "http_errors", "Requests answered with an error, by status.",
                              labels + ["status"], registry=r)
        self.name = model_name
        for m in (self.running, self.waiting, self.prompt_tokens, self.generation_tokens, self.ttft, self.itl, self.e2e):
            m.labels(model_name)  # present (at 0) from the start

    def render(self) -> bytes:
        return generate_latest(self.registry)
