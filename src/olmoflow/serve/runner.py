"""The engine loop behind the server: one thread steps the continuous-batching engine; handlers
(on the asyncio event loop) submit requests and read their tokens from per-request queues.

The engine is not thread-safe, so only the loop thread touches it: ``submit`` and ``abort`` leave
commands that the thread applies between steps. The waiting queue is bounded here (``max_waiting``
counts requests not yet admitted, whether still in the command list or in the engine's queue), so a
burst answers 429 instead of growing without limit. An exception in a step fails the sequences then
in flight with an error and the loop goes on serving.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from dataclasses import dataclass, field

from olmoflow.inference.engine import Engine, GenerationRequest, QueueFullError, StepOutput
from olmoflow.serve.metrics import Metrics


@dataclass(eq=False)
class Handle:
    """One submitted sequence. Its queue (possibly shared by the choices of one request) receives
    ``(index, item)``: item is a StepOutput, then None when the sequence finished, or an Exception."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    index: int = 0
    seq_id: int | None = None
    submitted: float = field(default_factory=time.perf_counter)
    last: float | None = None
    aborted: bool = False

    def put(self, item) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (self.index, item))


def _deliver(items: list[tuple[asyncio.Queue, tuple]]) -> None:
    for queue, item in items:
        queue.put_nowait(item)


class AsyncEngine:
    """Runs ``engine.step()`` on a thread while any sequence is waiting or running."""

    def __init__(self, engine: Engine, metrics: Metrics | None = None, max_waiting: int = 64):
        self.engine, self.metrics, self.max_waiting = engine, metrics, max_waiting
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._adds: list[Handle] = []
        self._aborts: list[Handle] = []
        self._live: dict[int, Handle] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="olmoflow-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ called from handlers

    def submit(self, requests: list[GenerationRequest], queue: asyncio.Queue) -> list[Handle]:
        """Queue validated requests (the choices of one API request, all or none) whose outputs go to
        ``queue``; QueueFullError when that would exceed ``max_waiting`` waiting requests."""
        loop = asyncio.get_running_loop()
        handles = [Handle(r, loop, queue, i) for i, r in enumerate(requests)]
        with self._wake:
            if len(self._adds) + self.engine.num_waiting + len(handles) > self.max_waiting:
                raise QueueFullError(f"server busy: {self.max_waiting} requests already waiting; retry later")
            self._adds.extend(handles)
            self._wake.notify()
        return handles

    def abort(self, handles: list[Handle]) -> None:
        """Stop sequences (client gone): their KV slots are free at the next step."""
        with self._wake:
            for h in handles:
                h.aborted = True
                self._aborts.append(h)
            self._wake.notify()

    @property
    def num_running(self) -> int:
        return self.engine.num_running

    @property
    def num_waiting(self) -> int:
        return self.engine.num_waiting + len(self._adds)

    def shutdown(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ the loop thread

    def _apply_commands(self) -> None:
        with self._wake:
            while not (self._stop or self._adds or self._aborts or self.engine.has_work):
                self._wake.wait()
            adds, self._adds = self._adds, []
            aborts, self._aborts = self._aborts, []
        for h in adds:
            if h.aborted:
                continue
            try:
                h.seq_id = self.engine.add(h.request)
            except Exception as e:  # noqa: BLE001 - reported to that request only
                h.put(e)
                continue
            self._live[h.seq_id] = h
        for h in aborts:
            if h.seq_id is not None and self._live.pop(h.seq_id, None) is not None:
                self.engine.abort(h.seq_id)

    def _run(self) -> None:
        while True:
            self._apply_commands()
            if self._stop:
                return
            if not self.engine.has_work:
                continue
            try:
                outs = self.engine.step()
            except Exception as e:  # noqa: BLE001 - one bad step must not take the server down
                traceback.print_exc()
                for sid, h in list(self._live.items()):
                    self.engine.abort(sid)
                    h.put(RuntimeError(f"generation failed: {type(e).__name__}: {e}"))
                self._live.clear()
                continue
            self._dispatch(outs)

    def _dispatch(self, outs: list[StepOutput]) -> None:
        """Hand a step's tokens to their requests: one wake-up of each event loop per step."""
        now = time.perf_counter()
        m = self.metrics
        batches: dict[asyncio.AbstractEventLoop, list] = {}
        for o in outs:
            h = self._live.get(o.seq_id)
            if h is None:
                continue
            if m is not None:
                m.generation_tokens.labels(m.name).inc()
                if h.last is None:
                    m.ttft.labels(m.name).observe(now - h.submitted)
                    m.prompt_tokens.labels(m.name).inc(len(h.request.prompt))
                else:
                    m.itl.labels(m.name).observe(now - h.last)
            h.last = now
            batch = batches.setdefault(h.loop, [])
            batch.append((h.queue, (h.index, o)))
            if o.result is not None:
                if m is not None:
                    m.e2e.labels(m.name).observe(now - h.submitted)
                    m.success.labels(m.name, o.result.finish_reason).inc()
                batch.append((h.queue, (h.index, None)))
                del self._live[o.seq_id]
        for loop, batch in batches.items():
            loop.call_soon_threadsafe(_deliver, batch)
        if m is not None:
            m.running.labels(m.name).set(self.engine.num_running)
            m.waiting.labels(m.name).set(self.num_waiting)
