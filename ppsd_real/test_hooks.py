"""A documented test hook: an artificial control delay per speculative step.

Setting ``PPSD_TEST_TICK_DELAY_S=<seconds>`` in the environment makes every PPSD stage step and
every EESD draft step busy-wait that long, while AR is untouched. It exists so a test can show
that the speed gate (``ppsd calibrate regress``) really trips on a slowdown; stage processes
inherit the environment, so it reaches the distributed backend too. Unset, it costs nothing.
"""

from __future__ import annotations

import os
import time

from ppsd_sim.errors import ConfigError

TICK_DELAY_ENV = "PPSD_TEST_TICK_DELAY_S"


def tick_delay() -> float:
    """The injected delay in seconds (0 when unset)."""
    raw = os.environ.get(TICK_DELAY_ENV)
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ConfigError(TICK_DELAY_ENV, f"must be a number of seconds in [0, 1], got {raw!r}")
    return value


def spin(seconds: float) -> None:
    """Busy-wait (a sleep would free the core and hide the cost from a pinned stage)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
