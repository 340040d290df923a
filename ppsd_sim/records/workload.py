"""Workload: the requests a serving simulation receives — their lengths, when they arrive and
how their drafts are accepted.

Lengths are fixed, drawn from a distribution, or listed per request (``requests``, e.g. read
from a file by ``ppsd_sim.serving.requests.load_requests``). Arrivals are Poisson at a rate, a
recorded trace of times, a closed loop of N users (each sends its next request when its last
one finishes, after an optional think time), or all at once (an offline batch). Acceptance is
one ``AcceptanceSpec`` for every request (each request gets its own seeded stream), or per
request. Realising a workload (drawing the lengths and times) is seeded and lives in
``ppsd_sim.serving.requests``; this module only describes and validates.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.schema import open_record, rerooted, tag

LENGTH_KINDS = ("fixed", "uniform", "lognormal")
ARRIVAL_KINDS = ("at_once", "poisson", "trace", "closed")
MAX_TOKENS = 10**7  # one request's prompt or output
MAX_REQUESTS = 10**7


@dataclass(frozen=True)
class LengthDist:
    """A token count per request: ``fixed`` (value), ``uniform`` (integers lo..hi inclusive)
    or ``lognormal`` (median, sigma of the log; rounded to an integer and clipped to
    [lo, hi], lo defaulting to 1)."""

    kind: str = "fixed"
    value: int | None = None
    lo: int | None = None
    hi: int | None = None
    median: float | None = None
    sigma: float | None = None

    def __post_init__(self) -> None:
        validate.choice("kind", self.kind, LENGTH_KINDS)
        used = {"fixed": ("value",), "uniform": ("lo", "hi"), "lognormal": ("median", "sigma")}
        optional = {"lognormal": ("lo", "hi")}.get(self.kind, ())
        for name in ("value", "lo", "hi", "median", "sigma"):
            v = getattr(self, name)
            if name in used[self.kind]:
                if v is None:
                    raise ConfigError(name, f"is required for a {self.kind} length")
            elif v is not None and name not in optional:
                raise ConfigError(name, f"is not used by a {self.kind} length")
        for name in ("value", "lo", "hi"):
            v = getattr(self, name)
            if v is not None:
                validate.integer(name, v, lo=1, hi=MAX_TOKENS)
        if self.median is not None:
            validate.number("median", self.median, lo=1.0, hi=MAX_TOKENS)
        if self.sigma is not None:
            validate.number("sigma", self.sigma, lo=0.0, hi=10.0)
        if self.lo is not None and self.hi is not None and self.hi < self.lo:
            raise ConfigError("hi", f"must be >= lo ({self.lo}), got {self.hi}")

    @classmethod
    def fixed(cls, value: int) -> LengthDist:
        return cls("fixed", value=value)

    @classmethod
    def uniform(cls, lo: int, hi: int) -> LengthDist:
        return cls("uniform", lo=lo, hi=hi)

    @classmethod
    def lognormal(
        cls, median: float, sigma: float, lo: int | None = None, hi: int | None = None
    ) -> LengthDist:
        return cls("lognormal", median=median, sigma=sigma, lo=lo, hi=hi)

    @classmethod
    def parse(cls, text: str, field: str) -> LengthDist:
        """The text form flags and sweep specs use: ``N``, ``uniform:LO:HI`` or
        ``lognormal:MEDIAN:SIGMA[:MAX]``; errors name ``field``."""
        parts = text.strip().split(":")
        try:
            if len(parts) == 1:
                return cls.fixed(_as_int(parts[0], field))
            kind, *vals = parts
            if kind == "uniform" and len(vals) == 2:
                return cls.uniform(_as_int(vals[0], field), _as_int(vals[1], field))
            if kind == "lognormal" and len(vals) in (2, 3):
                hi = _as_int(vals[2], field) if len(vals) == 3 else None
                return cls.lognormal(_as_float(vals[0], field), _as_float(vals[1], field), hi=hi)
        except ConfigError as err:
            if err.field == field:
                raise
            raise ConfigError(field, f"{err.field} {err.message}") from None
        raise ConfigError(
            field, f"must be N, uniform:LO:HI or lognormal:MEDIAN:SIGMA[:MAX], got {text!r}"
        )

    @property
    def upper(self) -> int | None:
        """The largest value it can take (None: unbounded)."""
        return self.value if self.kind == "fixed" else self.hi

    @property
    def mean_hint(self) -> float:
        """A typical value for labels (fixed value, uniform midpoint, lognormal median)."""
        # __post_init__ requires each kind's fields: fixed a value, uniform lo and hi,
        # lognormal a median
        if self.kind == "fixed":
            assert self.value is not None
            return float(self.value)
        if self.kind == "uniform":
            assert self.lo is not None and self.hi is not None
            return (self.lo + self.hi) / 2
        assert self.median is not None
        return float(self.median)

    def label(self) -> str:
        if self.kind == "fixed":
            return str(self.value)
        if self.kind == "uniform":
            return f"uniform {self.lo}–{self.hi}"
        clip = (
            "" if self.lo is None and self.hi is None else f" in [{self.lo or 1}, {self.hi or '∞'}]"
        )
        return f"lognormal median {self.median:g} σ {self.sigma:g}{clip}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for name in ("value", "lo", "hi", "median", "sigma"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LengthDist:
        if isinstance(data, int) and not isinstance(data, bool):
            data = {"kind": "fixed", "value": data}
        d = validate.mapping(where, data, ("kind", "value", "lo", "hi", "median", "sigma"))
        try:
            return cls(**d)
        except ConfigError as err:
            raise err.within(where) from None


def _as_int(text: str, field: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(field, f"expects an integer, got {text!r}") from None


def _as_float(text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(field, f"expects a number, got {text!r}") from None


@dataclass(frozen=True)
class Arrivals:
    """When requests arrive: ``at_once`` (all at t = 0), ``poisson`` (rate requests/s),
    ``trace`` (recorded times in seconds, non-decreasing; empty = each request's own
    ``arrival_s``) or ``closed`` (``users`` clients, each sending its next request
    ``think_s`` after its last one finished)."""

    kind: str = "at_once"
    rate: float | None = None
    times: tuple[float, ...] = ()
    users: int | None = None
    think_s: float = 0.0

    def __post_init__(self) -> None:
        validate.choice("arrivals.kind", self.kind, ARRIVAL_KINDS)
        if self.kind == "poisson":
            if self.rate is None:
                raise ConfigError("arrivals.rate", "is required for Poisson arrivals")
            validate.number("arrivals.rate", self.rate, lo=0.0, lo_open=True)
        elif self.rate is not None:
            raise ConfigError(
                "arrivals.rate", f"is only used by Poisson arrivals, not {self.kind!r}"
            )
        if self.kind == "closed":
            if self.users is None:
                raise ConfigError("arrivals.users", "is required for a closed loop")
            validate.integer("arrivals.users", self.users, lo=1, hi=MAX_REQUESTS)
        elif self.users is not None:
            raise ConfigError("arrivals.users", f"is only used by a closed loop, not {self.kind!r}")
        validate.number("arrivals.think_s", self.think_s, lo=0.0)
        if self.kind != "closed" and self.think_s != 0.0:
            raise ConfigError("arrivals.think_s", "is only used by a closed loop")
        times = validate.sequence("arrivals.times", self.times)
        if times and self.kind != "trace":
            raise ConfigError("arrivals.times", f"is only used by a trace, not {self.kind!r}")
        ts = [validate.number(f"arrivals.times[{i}]", t, lo=0.0) for i, t in enumerate(times)]
        check_non_decreasing("arrivals.times", ts)
        object.__setattr__(self, "times", tuple(ts))

    @classmethod
    def at_once(cls) -> Arrivals:
        return cls("at_once")

    @classmethod
    def poisson(cls, rate: float) -> Arrivals:
        return cls("poisson", rate=rate)

    @classmethod
    def trace(cls, times: list[float] | tuple[float, ...] = ()) -> Arrivals:
        return cls("trace", times=tuple(times))

    @classmethod
    def closed(cls, users: int, think_s: float = 0.0) -> Arrivals:
        return cls("closed", users=users, think_s=think_s)

    def label(self) -> str:
        if self.kind == "poisson":
            return f"Poisson {self.rate:g} req/s"
        if self.kind == "closed":
            think = f", think {self.think_s:g} s" if self.think_s else ""
            return f"closed loop, {self.users} users{think}"
        if self.kind == "trace":
            return "recorded arrival times"
        return "all at t = 0"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.rate is not None:
            out["rate"] = self.rate
        if self.times:
            out["times"] = list(self.times)
        if self.users is not None:
            out["users"] = self.users
        if self.think_s:
            out["think_s"] = self.think_s
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "arrivals") -> Arrivals:
        d = validate.mapping(where, data, ("kind", "rate", "times", "users", "think_s"), ("kind",))
        if "times" in d:
            d["times"] = tuple(validate.sequence(validate.join(where, "times"), d["times"]))
        try:
            return cls(**d)
        except ConfigError as err:
            raise rerooted(err, "arrivals", where) from None


def check_non_decreasing(field: str, times: list[float]) -> None:
    for i, (a, b) in enumerate(itertools.pairwise(times)):
        if b < a:
            raise ConfigError(f"{field}[{i + 1}]", f"must be >= the previous time {a:g}, got {b:g}")


@dataclass(frozen=True)
class Request:
    """One listed request: its prompt and output lengths (tokens, >= 1), optionally its
    arrival time and its own acceptance."""

    prompt_tokens: int
    output_tokens: int
    arrival_s: float | None = None
    acceptance: AcceptanceSpec | None = None

    def __post_init__(self) -> None:
        validate.integer("prompt_tokens", self.prompt_tokens, lo=1, hi=MAX_TOKENS)
        validate.integer("output_tokens", self.output_tokens, lo=1, hi=MAX_TOKENS)
        if self.arrival_s is not None:
            validate.number("arrival_s", self.arrival_s, lo=0.0)
        if self.acceptance is not None and not isinstance(self.acceptance, AcceptanceSpec):
            raise ConfigError("acceptance", "must be an AcceptanceSpec")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
        }
        if self.arrival_s is not None:
            out["arrival_s"] = self.arrival_s
        if self.acceptance is not None:
            out["acceptance"] = self.acceptance.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Request:
        d = validate.mapping(
            where,
            data,
            ("prompt_tokens", "output_tokens", "arrival_s", "acceptance"),
            ("prompt_tokens", "output_tokens"),
        )
        try:
            if d.get("acceptance") is not None:
                d["acceptance"] = AcceptanceSpec.from_dict(
                    d["acceptance"], validate.join(where, "acceptance")
                )
            return cls(**d)
        except ConfigError as err:
            raise (err if err.field.startswith(where) else err.within(where)) from None


@dataclass(frozen=True)
class Workload:
    """``count`` requests with ``prompt`` and ``output`` lengths, ``arrivals`` and a default
    ``acceptance`` — or an explicit ``requests`` list (then ``count`` is its length, its
    lengths replace ``prompt``/``output``, and arrival times listed with the requests need
    ``arrivals.kind = "trace"``)."""

    count: int | None = None
    prompt: LengthDist = LengthDist.fixed(128)
    output: LengthDist = LengthDist.fixed(128)
    arrivals: Arrivals = Arrivals.at_once()
    acceptance: AcceptanceSpec | None = None
    requests: tuple[Request, ...] = ()

    def __post_init__(self) -> None:
        for name, cls in (("prompt", LengthDist), ("output", LengthDist), ("arrivals", Arrivals)):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"workload.{name}", f"must be a {cls.__name__}")
        if self.acceptance is not None and not isinstance(self.acceptance, AcceptanceSpec):
            raise ConfigError("workload.acceptance", "must be an AcceptanceSpec")
        reqs = validate.sequence("workload.requests", self.requests)
        for i, r in enumerate(reqs):
            if not isinstance(r, Request):
                raise ConfigError(f"workload.requests[{i}]", "must be a Request")
        object.__setattr__(self, "requests", tuple(reqs))
        if reqs:
            if self.count is not None and self.count != len(reqs):
                raise ConfigError(
                    "workload.count", f"is {self.count} but {len(reqs)} requests are listed"
                )
            object.__setattr__(self, "count", len(reqs))
            timed = [r.arrival_s is not None for r in reqs]
            if any(timed) and not all(timed):
                i = timed.index(not timed[0])
                raise ConfigError(
                    f"workload.requests[{i}].arrival_s",
                    "give an arrival time for every listed request or for none",
                )
            if all(timed):
                if self.arrivals.kind != "trace" or self.arrivals.times:
                    raise ConfigError(
                        "workload.arrivals",
                        "listed requests carry their arrival times: use arrivals kind 'trace' "
                        "with no times of its own",
                    )
                check_non_decreasing(
                    "workload.requests.arrival_s", [float(r.arrival_s) for r in reqs]
                )
        if self.arrivals.kind == "trace":
            n_times = len(self.arrivals.times) if self.arrivals.times else None
            if n_times is None and not (reqs and reqs[0].arrival_s is not None):
                raise ConfigError("arrivals.times", "a trace needs arrival times")
            if n_times is not None:
                if self.count is not None and self.count != n_times:
                    raise ConfigError(
                        "workload.count",
                        f"is {self.count} but the arrival trace holds {n_times} times",
                    )
                object.__setattr__(self, "count", n_times)
        if self.count is None:
            raise ConfigError("workload.count", "is required (how many requests)")
        validate.integer("workload.count", self.count, lo=1, hi=MAX_REQUESTS)

    @property
    def n_requests(self) -> int:
        assert self.count is not None  # set or refused by __post_init__
        return int(self.count)

    def label(self) -> str:
        if self.requests:
            sizes = "listed lengths"
        else:
            sizes = f"prompt {self.prompt.label()}, output {self.output.label()}"
        return f"{self.count} requests ({sizes}), {self.arrivals.label()}"

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**tag("Workload"), "count": self.count}
        if not self.requests:
            out["prompt"] = self.prompt.to_dict()
            out["output"] = self.output.to_dict()
        out["arrivals"] = self.arrivals.to_dict()
        if self.acceptance is not None:
            out["acceptance"] = self.acceptance.to_dict()
        if self.requests:
            out["requests"] = [r.to_dict() for r in self.requests]
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "workload") -> Workload:
        fields = ("count", "prompt", "output", "arrivals", "acceptance", "requests")
        d = open_record(data, "Workload", where, fields)
        j = lambda n: validate.join(where, n)  # noqa: E731
        kw: dict[str, Any] = {}
        if "count" in d:
            kw["count"] = d["count"]
        for name in ("prompt", "output"):
            if name in d:
                kw[name] = LengthDist.from_dict(d[name], j(name))
        if "arrivals" in d:
            kw["arrivals"] = Arrivals.from_dict(d["arrivals"], j("arrivals"))
        if d.get("acceptance") is not None:
            kw["acceptance"] = AcceptanceSpec.from_dict(d["acceptance"], j("acceptance"))
        if "requests" in d:
            kw["requests"] = tuple(
                Request.from_dict(r, f"{j('requests')}[{i}]")
                for i, r in enumerate(validate.sequence(j("requests"), d["requests"]))
            )
        try:
            return cls(**kw)
        except ConfigError as err:
            raise rerooted(err, "workload", where) from None
