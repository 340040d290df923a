"""A measured (or assumed) latency: median plus spread and optionally the raw samples."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate


@dataclass(frozen=True)
class Timing:
    """A latency in seconds. ``median`` is what the models use; spread and samples are kept so
    that a reader can judge the noise behind every prediction."""

    median: float
    lo: float | None = None
    hi: float | None = None
    samples: tuple[float, ...] = field(default=())

    @classmethod
    def of_samples(cls, samples: Sequence[float]) -> Timing:
        """Median and min–max of raw samples (warm-up already excluded by the caller)."""
        if not samples:
            raise ConfigError("samples", "need at least one sample")
        xs = [float(s) for s in samples]
        return cls(statistics.median(xs), min(xs), max(xs), tuple(xs))

    def scaled(self, factor: float) -> Timing:
        """The same timing multiplied by a factor (samples dropped: they were not measured)."""
        return Timing(
            self.median * factor,
            None if self.lo is None else self.lo * factor,
            None if self.hi is None else self.hi * factor,
        )

    def to_dict(self) -> dict[str, Any] | float:
        if self.lo is None and self.hi is None and not self.samples:
            return self.median
        out: dict[str, Any] = {"median": self.median}
        if self.lo is not None:
            out["lo"] = self.lo
        if self.hi is not None:
            out["hi"] = self.hi
        if self.samples:
            out["samples"] = list(self.samples)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Timing:
        """A bare number (seconds) or {median, lo?, hi?, samples?}."""
        if isinstance(data, int | float) and not isinstance(data, bool):
            return cls(validate.number(where, data, lo=0.0))
        if not isinstance(data, dict):
            raise ConfigError(
                where, f"must be a number of seconds or {{median, lo, hi, samples}}, got {data!r}"
            )
        d = validate.mapping(where, data, ("median", "lo", "hi", "samples"), ("median",))
        median = validate.number(validate.join(where, "median"), d["median"], lo=0.0)
        lo = d.get("lo")
        hi = d.get("hi")
        lo = None if lo is None else validate.number(validate.join(where, "lo"), lo, lo=0.0)
        hi = None if hi is None else validate.number(validate.join(where, "hi"), hi, lo=0.0)
        if lo is not None and lo > median:
            raise ConfigError(
                validate.join(where, "lo"), f"must be <= median ({median:g}), got {lo:g}"
            )
        if hi is not None and hi < median:
            raise ConfigError(
                validate.join(where, "hi"), f"must be >= median ({median:g}), got {hi:g}"
            )
        samples = tuple(
            validate.number(f"{validate.join(where, 'samples')}[{i}]", s, lo=0.0)
            for i, s in enumerate(
                validate.sequence(validate.join(where, "samples"), d.get("samples", ()))
            )
        )
        return cls(median, lo, hi, samples)


def timing(value: Timing | float) -> Timing:
    """Accept a Timing or a plain number of seconds (validated)."""
    if isinstance(value, Timing):
        return value
    return Timing(validate.number("timing", value, lo=0.0))
