"""Settings for the whole test session.

The tests' in-process torch work (tiny models, a few tokens per decode) runs on one thread, as
`ppsd run` times its schemes: on two busy cores, torch's default of one thread per core made
the tiny-model tests up to 30x slower (threads spinning against each other and against the
other processes), which timed nothing a test asserts. Tests that need more threads set them
for their block with ``ppsd_real.threads.torch_threads``, which restores this count.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    try:
        import torch
    except ImportError:  # the simulator alone is installed
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
