"""Torch's intra-op thread count, set for a block and restored after it: the one place that
changes it (a count left behind by one measurement silently changes the next one's baseline)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ppsd_sim.errors import ConfigError


def all_cores() -> int:
    """The thread count of the "AR all cores" baseline: every CPU of this machine."""
    return os.cpu_count() or 1


def check_threads(n: int, field: str = "--threads") -> int:
    """Refuse a thread count below 1 or above this machine's cores (oversubscribed threads
    time contention between themselves, not the model)."""
    cores = all_cores()
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= cores:
        raise ConfigError(
            field, f"must be an integer in 1..{cores} (this machine's cores), got {n!r}"
        )
    return n


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run the block with ``n`` torch threads, then restore the previous count."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
