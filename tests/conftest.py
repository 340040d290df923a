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


LONG_ENV = "PPSD_LONG_TESTS"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``long`` (each a minute or more of real runs on two cores, whose behaviour
    a quicker test or CI's own speed-gate step also covers) run only with PPSD_LONG_TESTS=1,
    so the default run stays near ten minutes."""
    import os

    if os.environ.get(LONG_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"long test: run with {LONG_ENV}=1")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)
