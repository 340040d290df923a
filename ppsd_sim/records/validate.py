"""Small validators shared by the records: each raises ConfigError naming the field."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ppsd_sim.errors import ConfigError


def number(
    field: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """A finite real number within [lo, hi] (or open bounds); bools are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field, f"must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(field, f"must be finite, got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ConfigError(field, f"must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ConfigError(field, f"must be {'<' if hi_open else '<='} {hi:g}, got {v:g}")
    return v


def integer(field: str, value: Any, *, lo: int | None = None, hi: int | None = None) -> int:
    """An int within [lo, hi]; floats such as 2.0 are refused to catch unit mistakes."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, f"must be an integer, got {type(value).__name__} {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(field, f"must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ConfigError(field, f"must be <= {hi}, got {value}")
    return int(value)


def probability(field: str, value: Any) -> float:
    """A probability in [0, 1]."""
    return number(field, value, lo=0.0, hi=1.0)


def sequence(field: str, value: Any, *, min_len: int = 0) -> list[Any]:
    """A list (or tuple) with at least ``min_len`` items; strings are not sequences here."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ConfigError(field, f"must be a list, got {type(value).__name__}")
    items = list(value)
    if len(items) < min_len:
        raise ConfigError(field, f"must have at least {min_len} item(s), got {len(items)}")
    return items


def choice(field: str, value: Any, allowed: Iterable[str]) -> str:
    """One of a fixed set of names."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(field, f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def boolean(field: str, value: Any) -> bool:
    """A real boolean (JSON true/false), not 0/1 or 'yes'."""
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be true or false, got {value!r}")
    return value


def mapping(field: str, value: Any, allowed: Iterable[str], required: Iterable[str] = ()) -> dict:
    """A dict whose keys are all known and whose required keys are present."""
    if not isinstance(value, Mapping):
        raise ConfigError(field, f"must be an object, got {type(value).__name__}")
    allowed = set(allowed)
    for key in value:
        if key not in allowed:
            where = f"{field}.{key}" if field else str(key)
            raise ConfigError(where, f"unknown field (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in value:
            where = f"{field}.{key}" if field else key
            raise ConfigError(where, "is required")
    return dict(value)


def join(prefix: str, name: str) -> str:
    """Dotted field path."""
    return f"{prefix}.{name}" if prefix else name
