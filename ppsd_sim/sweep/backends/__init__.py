"""Where batches run: one small interface, a local process pool (default) and Ray.

A backend maps a picklable function over batches and yields results as they finish (in
any order); the runner writes each one as it arrives. Ray is imported only by its backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from ppsd_sim.errors import ConfigError

BACKENDS = ("local", "ray")


class Backend(Protocol):
    """Runs ``fn`` over items on ``workers`` cores; a context manager owns the workers."""

    name: str
    workers: int

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...

    def imap_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]: ...


def available_cores() -> int:
    """The cores this process may use (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_backend(name: str, workers: int | None = None, address: str | None = None) -> Backend:
    """The named backend (not started yet: enter it)."""
    if name not in BACKENDS:
        raise ConfigError("backend", f"must be one of {', '.join(BACKENDS)}; got {name!r}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ConfigError("workers", f"must be >= 1, got {workers}")
    if name == "local":
        if address is not None:
            raise ConfigError("address", "is only used by the ray backend")
        from ppsd_sim.sweep.backends.local import LocalBackend

        return LocalBackend(workers or available_cores())
    from ppsd_sim.sweep.backends.ray_backend import RayBackend

    return RayBackend(workers, address)
