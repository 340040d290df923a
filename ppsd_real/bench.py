"""The one measurement loop: ``ppsd run``, calibration and the benchmarks all time through it.

How it measures (why each rule is there):
- variants run interleaved, repeat after repeat, so slow drift of the machine (±15 % here
  over minutes) touches every variant alike;
- repeat 0 is a warm-up (allocators, caches, the stage processes' first run) and is excluded;
- the baseline (AR, one thread) runs right before and right after every group of variants,
  and each variant's speedup in a repeat divides by the mean of the two: drift cancels in the
  ratio;
- every output is checked token for token against the AR reference: a lossy speculative run
  is refused, never timed (a baseline that differs, e.g. from other threads' float sums, is
  noted, not refused);
- a ``Bench`` session owns the stage backends it opened and the machine-load meter: it closes
  the backends first and reads the meter after (our stage processes count as ours only once
  joined), so a busy machine is reported with the figures it spoiled.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from ppsd_real.backends.base import PipelineBackend
from ppsd_real.decoders.result import DecodeResult
from ppsd_real.machine_load import LoadMeter, MachineLoad
from ppsd_sim.errors import ConfigError


class NotLossless(RuntimeError):
    """A speculative run's output differed from AR: a bug, never a measurement."""


@dataclass(frozen=True)
class Variant:
    """One thing to time. ``run(rep)`` performs one decode (``rep`` 0 is the warm-up) and
    returns its result, timed by itself (``DecodeResult.time_s``). ``lossless``: its tokens
    must equal the reference (speculative decoders); False only notes a difference."""

    name: str
    run: Callable[[int], DecodeResult]
    lossless: bool = True


@dataclass
class Block:
    """One group of variants in one repeat, with the baseline measured around it."""

    rep: int
    group: int
    base_s: float  # mean of the baseline before and after the group
    results: dict[str, DecodeResult]
    baseline_runs: list[float] = field(default_factory=list)  # the baseline times it measured


@dataclass
class Series:
    """A variant's timed repeats (warm-up excluded), each with the baseline beside it."""

    name: str
    times_s: list[float] = field(default_factory=list)
    base_s: list[float] = field(default_factory=list)
    results: list[DecodeResult] = field(default_factory=list)
    differs_at: int | None = None  # first token that differed from the reference (baselines)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def speedups(self) -> list[float]:
        """Baseline time / this variant's time, repeat by repeat."""
        return [b / t for b, t in zip(self.base_s, self.times_s, strict=True) if t > 0]


@dataclass
class Measurement:
    """Every variant's series; ``baseline`` names the baseline's own series (its runs)."""

    baseline: str
    series: dict[str, Series] = field(default_factory=dict)
    load: MachineLoad | None = None

    def add(self, block: Block) -> None:
        base = self.series.setdefault(self.baseline, Series(self.baseline))
        for t in block.baseline_runs:
            base.times_s.append(t)
            base.base_s.append(t)
        for name, r in block.results.items():
            s = self.series.setdefault(name, Series(name))
            s.times_s.append(r.time_s)
            s.base_s.append(block.base_s)
            s.results.append(r)

    def ratios(self, name: str, over: str | None = None) -> list[float]:
        """``over``'s time / ``name``'s time, repeat by repeat (the speedup of ``name`` over
        ``over`` in each repeat); over the baseline (``over`` None), the baseline measured
        around it. Itself over itself: all 1."""
        over = over or self.baseline
        s, o = self.series[name], self.series[over]
        if name == over:
            return [1.0] * len(s.times_s)
        if over == self.baseline:
            return s.speedups
        if name == self.baseline:
            return [t / b for b, t in zip(o.base_s, o.times_s, strict=True)]
        return [a / b for a, b in zip(o.times_s, s.times_s, strict=True)]

    def speedup(self, name: str, over: str | None = None) -> float:
        """The median of ``ratios``: ``name``'s speedup over ``over`` (default the baseline)."""
        return statistics.median(self.ratios(name, over))

    def median_s(self, name: str) -> float:
        return self.series[name].median_s


def _check(v: Variant, r: DecodeResult, reference: list[int] | None, rep: int) -> int | None:
    """First position where ``r`` differs from the reference (None: equal)."""
    if reference is None or r.tokens == reference:
        return None
    i = next(
        (j for j, (a, b) in enumerate(zip(r.tokens, reference, strict=False)) if a != b),
        min(len(r.tokens), len(reference)),
    )
    if v.lossless:
        raise NotLossless(
            f"{v.name}: output differs from AR at token {i} (repeat {rep}): not lossless"
        )
    return i


def schedule(
    n_variants: int, repeats: int, group: int | None = None, skip: Iterable[tuple[int, int]] = ()
) -> tuple[list[range], list[tuple[int, int]]]:
    """The groups (variant index ranges) and the (repeat, group) blocks to run in order:
    a warm-up repeat 0 over the groups that still have work, then every block not in
    ``skip``. Nothing left to do: no blocks at all (not even a warm-up)."""
    if repeats < 1:
        raise ConfigError("repeats", f"must be >= 1 (repeat 0 is a warm-up), got {repeats}")
    size = group or max(1, n_variants)
    groups = [range(i, min(i + size, n_variants)) for i in range(0, n_variants, size)]
    groups = groups or [range(0)]
    done = set(skip)
    todo = [(r, g) for r in range(1, repeats + 1) for g in range(len(groups)) if (r, g) not in done]
    return groups, [(0, g) for g in sorted({g for _, g in todo})] + todo


def blocks(
    variants: Sequence[Variant],
    baseline: Variant,
    reference: list[int] | None,
    *,
    repeats: int,
    group: int | None = None,
    skip: Iterable[tuple[int, int]] = (),
    on_run: Callable[[], None] | None = None,
    noted: dict[str, int] | None = None,
) -> Iterator[Block]:
    """The loop itself (``schedule``'s order): each group of ``group`` variants (None: all in
    one) with the baseline before and after it; the warm-up's blocks are not yielded.
    ``skip``: (repeat, group) blocks already measured (a resumed calibration). ``on_run`` is
    called after each variant's run; ``noted`` collects the first differing token of
    variants that need not be lossless."""
    groups, plan = schedule(len(variants), repeats, group, skip)
    before: float | None = None
    prev: tuple[int, int] | None = None
    for rep, g in plan:
        runs: list[float] = []
        if before is None or prev != (rep, g - 1):  # AR is shared only within a repeat
            b0 = baseline.run(rep)
            _check(baseline, b0, reference, rep)
            before = b0.time_s
            runs.append(before)
        results: dict[str, DecodeResult] = {}
        for i in groups[g]:
            v = variants[i]
            r = v.run(rep)
            diff = _check(v, r, reference, rep)
            if diff is not None and noted is not None:
                noted.setdefault(v.name, diff)
            results[v.name] = r
            if on_run is not None:
                on_run()
        b1 = baseline.run(rep)
        _check(baseline, b1, reference, rep)
        runs.append(b1.time_s)
        base = (before + b1.time_s) / 2
        before, prev = b1.time_s, (rep, g)
        if rep > 0:
            yield Block(rep, g, base, results, runs)


def measure(
    variants: Sequence[Variant],
    baseline: Variant,
    reference: list[int] | None,
    *,
    repeats: int,
    group: int | None = None,
    on_run: Callable[[], None] | None = None,
) -> Measurement:
    """Run ``blocks`` to the end and gather every variant's series (see the module doc)."""
    out = Measurement(baseline.name)
    noted: dict[str, int] = {}
    for b in blocks(
        variants, baseline, reference, repeats=repeats, group=group, on_run=on_run, noted=noted
    ):
        out.add(b)
    for name, i in noted.items():
        out.series[name].differs_at = i
    return out


class Bench:
    """A measuring session (a context manager): the backends it opened are closed when it
    ends, then the machine-load meter is read into ``load`` (see the module docstring)."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._meter: LoadMeter | None = None
        self._backends: dict[Any, PipelineBackend] = {}
        self.load: MachineLoad | None = None

    def __enter__(self) -> Bench:
        self._meter = LoadMeter()
        return self

    def backend(self, key: Any, open_: Callable[[], PipelineBackend]) -> PipelineBackend:
        """The backend for ``key`` (opened on first use, closed with the session)."""
        if key not in self._backends:
            self._backends[key] = self._stack.enter_context(open_())
        return self._backends[key]

    def __exit__(self, *exc: object) -> None:
        try:
            self._stack.close()
        finally:
            self.load = self._meter.stop() if self._meter is not None else None


def timed(fn: Callable[[], Any], tokens: Callable[[Any], list[int]] | None = None) -> DecodeResult:
    """A DecodeResult for a call that is not one of our decoders (e.g. ``model.generate``):
    its wall time, and its tokens if ``tokens`` extracts them."""
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    return DecodeResult(tokens=tokens(out) if tokens else [], time_s=dt)
