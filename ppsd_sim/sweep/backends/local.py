"""The default backend: a pool of worker processes on this machine.

Workers are spawned (not forked, so no lock or thread of the parent is inherited) and die with
the parent: a sweep killed with SIGKILL leaves no orphan processes behind.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (no-op elsewhere). Ctrl-C is
    left to the parent, which stops the pool cleanly (no traceback from every worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class LocalBackend:
    """A process pool with at most ``2 × workers`` batches in flight (bounded memory, and
    results flow back while the rest of the sweep is still being submitted)."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalBackend:
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_die_with_parent,
            initargs=(os.getpid(),),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def imap_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
        if self._pool is None:
            raise RuntimeError("enter the backend before using it")
        pool = self._pool
        todo = iter(items)
        pending: set[Future[Any]] = set()

        def refill() -> None:
            while len(pending) < 2 * self.workers:
                item = next(todo, _END)
                if item is _END:
                    return
                pending.add(pool.submit(fn, item))

        refill()
        while pending:
            done, rest = wait(pending, return_when=FIRST_COMPLETED)
            pending.clear()
            pending.update(rest)
            refill()
            for fut in done:
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise RuntimeError(
                        "a sweep worker process died (out of memory, or killed); finished "
                        "points are saved, rerun to resume. From a script, call run_sweep "
                        "under `if __name__ == '__main__':` (workers are spawned)"
                    ) from None
                yield result


_END = object()
