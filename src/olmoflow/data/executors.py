"""Executors run the same shard tasks: inline, a local process pool, or local Ray.

``map(fn, arg_tuples, desc, on_done)`` returns results in argument order, so outputs never depend on
which worker finished first.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import nullcontext
from typing import Any

from olmoflow.errors import OlmoflowError, require


def _progress(quiet: bool, unit: str = "shards", stderr: bool = False):
    """A bar counting ``unit`` done, with elapsed time and ETA (nothing when ``quiet``); ``stderr``
    keeps stdout for a command's summary lines."""
    if quiet:
        return nullcontext(None)
    from olmoflow.progress import progress_bar

    return progress_bar(unit=unit, stderr=stderr, elapsed=True)


def _mp_context():
    """forkserver where available, else spawn.

    Not fork: rensa (Rust/rayon) and tokenizers keep thread pools, and a process forked after the
    parent used them can deadlock. Like any multiprocessing code, a script calling this from its top
    level needs an ``if __name__ == "__main__":`` guard.
    """
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["olmoflow.data.pipeline", "olmoflow.data.tokenize"])
        return ctx
    return mp.get_context("spawn")


class LocalExecutor:
    """Process pool with ``workers`` processes (inline when workers == 1)."""

    def __init__(self, workers: int = 2, quiet: bool = False):
        self.workers = max(1, int(workers))
        self.quiet = quiet
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, fn: Callable[..., Any], args: Sequence[tuple], desc: str = "",
            on_done: Callable[[], None] | None = None) -> list[Any]:
        results: list[Any] = [None] * len(args)
        with _progress(self.quiet) as prog:
            task = prog.add_task(desc, total=len(args)) if prog else None
            if self.workers == 1 or len(args) <= 1:
                for i, a in enumerate(args):
                    results[i] = fn(*a)
                    if prog:
                        prog.advance(task)
                    if on_done:
                        on_done()
                return results
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=_mp_context())
            futs = {self._pool.submit(fn, *a): i for i, a in enumerate(args)}
            pending = set(futs)
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for f in finished:
                        results[futs[f]] = f.result()
                        if prog:
                            prog.advance(task)
                        if on_done:
                            on_done()
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        return results


class RayExecutor:
    """The same tasks as Ray remote functions on a local Ray instance (``num_cpus=workers``)."""

    def __init__(self, workers: int = 2, quiet: bool = False):
        self.ray = require("ray", "ray")
        self.workers = max(1, int(workers))
        self.quiet = quiet
        self._started = False
        if not self.ray.is_initialized():
            self.ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                          ignore_reinit_error=True, configure_logging=False)
            self._started = True

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False

    def map(self, fn: Callable[..., Any], args: Sequence[tuple], desc: str = "",
            on_done: Callable[[], None] | None = None) -> list[Any]:
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = [remote.remote(*a) for a in args]
        index = {r: i for i, r in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        with _progress(self.quiet) as prog:
            task = prog.add_task(desc + " (ray)", total=len(refs)) if prog else None
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for r in ready:
                    try:
                        results[index[r]] = ray.get(r)
                    except ray.exceptions.RayTaskError as e:
                        # raise the task's own exception, as the local pool does: an OlmoflowError
                        # stays a one-line message instead of a remote traceback
                        if isinstance(e.cause, Exception):
                            raise e.cause from None
                        raise
                    if prog:
                        prog.advance(task)
                    if on_done:
                        on_done()
        return results


def make_executor(kind: str, workers: int, quiet: bool = False) -> LocalExecutor | RayExecutor:
    if kind == "local":
        return LocalExecutor(workers, quiet)
    if kind == "ray":
        return RayExecutor(workers, quiet)
    raise OlmoflowError(f"unknown executor {kind!r} (choose local or ray)")
