"""Realising a Workload (seeded draws of lengths and arrival times) and reading request lists.

Random streams (numpy ``SeedSequence``), all derived from the one seed and independent of each
other: request i's acceptance uses ``seed`` itself for i = 0 (so one request reproduces the
batch-1 ``simulate`` at the same seed exactly) and ``SeedSequence(seed, spawn_key=(i,))`` for
i >= 1; prompt lengths, output lengths and Poisson gaps use spawn keys (0, 1), (0, 2), (0, 3).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.io import read_text
from ppsd_sim.records.workload import MAX_TOKENS, LengthDist, Request, Workload


@dataclass(frozen=True)
class Realised:
    """A workload's concrete requests: lengths, arrival times (None in a closed loop, where
    they depend on the system) and each request's acceptance and sampler seed."""

    prompt: np.ndarray
    output: np.ndarray
    arrival: np.ndarray | None
    acceptance: tuple[AcceptanceSpec | None, ...]
    seeds: tuple[Any, ...]

    @property
    def n(self) -> int:
        return len(self.prompt)


def stream(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def acceptance_seed(seed: int, i: int) -> Any:
    """Request i's acceptance stream (see the module docstring)."""
    return seed if i == 0 else np.random.SeedSequence(seed, spawn_key=(i,))


def draw_lengths(dist: LengthDist, n: int, rng: np.random.Generator) -> np.ndarray:
    if dist.kind == "fixed":
        return np.full(n, dist.value, dtype=np.int64)
    if dist.kind == "uniform":
        assert dist.lo is not None and dist.hi is not None  # required by LengthDist
        return rng.integers(dist.lo, dist.hi + 1, size=n, dtype=np.int64)
    assert dist.median is not None and dist.sigma is not None  # required by LengthDist
    x = np.rint(dist.median * np.exp(dist.sigma * rng.standard_normal(n)))
    return np.clip(x, dist.lo or 1, dist.hi or MAX_TOKENS).astype(np.int64)


def realise(workload: Workload, seed: int) -> Realised:
    """Draw the requests of ``workload`` (same workload and seed → the same requests)."""
    n = workload.n_requests
    if workload.requests:
        prompt = np.array([r.prompt_tokens for r in workload.requests], dtype=np.int64)
        output = np.array([r.output_tokens for r in workload.requests], dtype=np.int64)
        acc = tuple(r.acceptance or workload.acceptance for r in workload.requests)
    else:
        prompt = draw_lengths(workload.prompt, n, stream(seed, (0, 1)))
        output = draw_lengths(workload.output, n, stream(seed, (0, 2)))
        acc = (workload.acceptance,) * n
    arr = workload.arrivals
    if arr.kind == "at_once":
        arrival: np.ndarray | None = np.zeros(n)
    elif arr.kind == "poisson":
        assert arr.rate is not None  # required for Poisson arrivals by Arrivals
        arrival = np.cumsum(stream(seed, (0, 3)).exponential(1.0 / arr.rate, size=n))
    elif arr.kind == "trace":
        # no times of its own: Workload has checked that every listed request carries one
        times = arr.times or tuple(
            float(r.arrival_s) for r in workload.requests if r.arrival_s is not None
        )
        arrival = np.asarray(times, dtype=float)
    else:
        arrival = None
    return Realised(prompt, output, arrival, acc, tuple(acceptance_seed(seed, i) for i in range(n)))


# ---- files ------------------------------------------------------------------------------------
def _where(flag: str, path: Path, line: int, column: str) -> str:
    return f"{flag} ({path.name} line {line}) {column}"


def _request(flag: str, path: Path, line: int, row: dict[str, Any]) -> Request:
    """One row → a Request; any error names the file, the line and the column."""
    row = dict(row)
    acc = None
    alpha = row.pop("alpha", None)
    trace = row.pop("acceptance_trace", None)
    try:
        if alpha not in (None, "") and trace not in (None, ""):
            raise ConfigError("alpha", "give alpha or acceptance_trace, not both")
        if alpha not in (None, ""):
            acc = AcceptanceSpec.iid(_number(alpha, "alpha"))
        elif trace not in (None, ""):
            bits = list(trace) if isinstance(trace, str) else trace
            acc = AcceptanceSpec.from_trace([_bit(b) for b in bits])
        if row.get("acceptance") is not None:
            if acc is not None:
                raise ConfigError(
                    "acceptance", "give acceptance, alpha or acceptance_trace, not two"
                )
            acc = AcceptanceSpec.from_dict(row.pop("acceptance"), "acceptance")
        row.pop("acceptance", None)
        validate.mapping("", row, ("prompt_tokens", "output_tokens", "arrival_s"))
        for name in ("prompt_tokens", "output_tokens"):
            if row.get(name) in (None, ""):
                raise ConfigError(name, "is required")
            row[name] = _integer(row[name], name)
        if row.get("arrival_s") in (None, ""):
            row.pop("arrival_s", None)
        else:
            row["arrival_s"] = _number(row["arrival_s"], "arrival_s")
        return Request(acceptance=acc, **row)
    except ConfigError as err:
        col = err.field.replace("acceptance.trace", "acceptance_trace")
        raise ConfigError(_where(flag, path, line, col), err.message) from None


def _integer(v: Any, name: str) -> int:
    return _cell(v, name, int, "an integer")


def _number(v: Any, name: str) -> float:
    return _cell(v, name, float, "a number")


def _cell(v: Any, name: str, cast: Any, what: str) -> Any:
    """A CSV cell (text) as ``cast``; JSON values pass through to the record's validation."""
    if isinstance(v, str):
        try:
            return cast(v.strip())
        except ValueError:
            raise ConfigError(name, f"must be {what}, got {v!r}") from None
    return v


def _bit(b: Any) -> int:
    if b in ("0", "1"):
        return int(b)
    if b in (0, 1) and not isinstance(b, float):
        return int(b)
    raise ConfigError("acceptance_trace", f"must hold only 0 and 1, found {b!r}")


def load_requests(path: str | Path, flag: str = "--requests-file") -> tuple[Request, ...]:
    """Read a request list: CSV with a header (``prompt_tokens,output_tokens`` and optionally
    ``arrival_s``, ``alpha`` or ``acceptance_trace`` as 0/1 digits) or JSON Lines (one object
    per line with those keys or an ``acceptance`` AcceptanceSpec). Blank lines and lines
    starting with ``#`` are skipped; every error names the file's line."""
    p = Path(path)
    text = read_text(p, flag)
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ConfigError(flag, f"{p} lists no requests")
    out = []
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        for i, ln in lines:
            try:
                row = json.loads(ln)
            except json.JSONDecodeError as err:
                raise ConfigError(
                    f"{flag} ({p.name} line {i})",
                    f"malformed JSON: {err.msg} at column {err.colno}",
                ) from None
            if not isinstance(row, dict):
                raise ConfigError(f"{flag} ({p.name} line {i})", "must be a JSON object")
            out.append(_request(flag, p, i, row))
        return tuple(out)
    head_line, head = lines[0]
    header = [h.strip() for h in next(csv.reader([head]))]
    for name in ("prompt_tokens", "output_tokens"):
        if name not in header:
            raise ConfigError(
                f"{flag} ({p.name} line {head_line})",
                f"the header must name prompt_tokens and output_tokens, got {', '.join(header)}",
            )
    for i, ln in lines[1:]:
        cells = [c.strip() for c in next(csv.reader([ln]))]
        if len(cells) != len(header):
            raise ConfigError(
                f"{flag} ({p.name} line {i})", f"has {len(cells)} columns, the header {len(header)}"
            )
        out.append(_request(flag, p, i, dict(zip(header, cells, strict=True))))
    if not out:
        raise ConfigError(flag, f"{p} lists no requests (only a header)")
    return tuple(out)


def load_arrival_times(path: str | Path, flag: str = "--arrivals") -> tuple[float, ...]:
    """Arrival times in seconds, one per line (non-decreasing; ``#`` lines skipped)."""
    p = Path(path)
    text = read_text(p, flag)
    times: list[float] = []
    for i, ln in enumerate(text.splitlines(), start=1):
        s = ln.strip()
        if not s or s.startswith("#"):
            continue
        where = f"{flag} ({p.name} line {i})"
        try:
            t = float(s)
        except ValueError:
            raise ConfigError(where, f"must be a time in seconds, got {s!r}") from None
        validate.number(where, t, lo=0.0)
        if times and t < times[-1]:
            raise ConfigError(where, f"must be >= the previous time {times[-1]:g}, got {t:g}")
        times.append(t)
    if not times:
        raise ConfigError(flag, f"{p} lists no arrival times")
    return tuple(times)
