"""How busy the machine was with work that is not ours, while we measured.

A speedup that needs two cores cannot be judged while something else holds one: the gate
uses this to tell "the code got slower" from "the machine was busy". Linux only (``/proc/stat``);
elsewhere the load is unknown and reported as such.

    foreign = (Δ busy CPU time of the whole machine − Δ CPU time of this process and its reaped
               children) / (wall time × CPUs)
    steal   = Δ steal time / (wall time × CPUs)     (CPU the hypervisor gave to other guests)

Our stage processes count as ours once joined (``os.times`` covers reaped children), so read
the meter after the work's processes have been closed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# foreign + steal above this fraction of the machine: too busy to judge a speedup. PPSD's stages
# wait on each other, so every preemption stalls the pipeline: a process holding 10% of this
# 2-core machine cut the measured PPSD speedup by 15-19% (BENCHMARKS.md); quiet runs read <1%.
BUSY = 0.05


@dataclass(frozen=True)
class MachineLoad:
    wall_s: float
    foreign: float  # fraction of all CPUs used by other processes
    steal: float  # fraction of all CPUs taken by the hypervisor

    @property
    def busy(self) -> bool:
        return self.foreign + self.steal > BUSY

    def describe(self) -> str:
        return (
            f"other processes used {self.foreign:.0%} of the CPUs and the hypervisor took "
            f"{self.steal:.0%} over {self.wall_s:.0f} s"
        )


def _cpu_jiffies() -> tuple[float, float] | None:
    """(busy, steal) seconds of the whole machine since boot, or None off Linux."""
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    v = [int(x) for x in fields[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    # guest time is already inside user/nice on Linux
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter:
    """Start it before measuring, ``stop()`` after the work's processes are joined."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()
        self._own0 = _own_cpu()
        self._cpu0 = _cpu_jiffies()

    def stop(self) -> MachineLoad | None:
        cpu1 = _cpu_jiffies()
        if self._cpu0 is None or cpu1 is None:
            return None
        wall = max(1e-9, time.monotonic() - self._t0)
        capacity = wall * (os.cpu_count() or 1)
        foreign = (cpu1[0] - self._cpu0[0]) - (_own_cpu() - self._own0)
        steal = cpu1[1] - self._cpu0[1]
        return MachineLoad(wall, max(0.0, foreign) / capacity, max(0.0, steal) / capacity)
