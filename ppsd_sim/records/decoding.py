"""DecodingSettings: the token-choice rule an acceptance rate was measured under.

Acceptance depends on how tokens are chosen: a greedy draft is accepted when the exit's argmax
equals the full model's, a sampled one with probability Σ_x min(p(x), q(x)) of the two warped
distributions, which falls as the temperature rises. A rate measured at one setting says
little about another, so every acceptance record carries its settings and a what-if at other
settings is flagged (``mismatch``), never mixed silently. Greedy is the default, and what
files written before the settings existed mean.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate

FIELDS = ("temperature", "top_k", "top_p")


@dataclass(frozen=True)
class DecodingSettings:
    """temperature 0 = greedy (top-k/top-p then have no effect and must be off); ``top_k``
    None = off; ``top_p`` 1.0 = off. The seed is not part of it: it changes which tokens are
    drawn, not the acceptance rate they are drawn with."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float = 1.0

    def __post_init__(self) -> None:
        self._check()

    def _check(self, names: dict[str, str] | None = None) -> None:
        """Validate in place; ``names`` maps each field to what the user typed (a flag or a
        dotted record path) for the one-line error."""
        n = names or {f: f for f in FIELDS}
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise ConfigError(n["temperature"], f"must be a finite number >= 0, got {t!r}")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(n["top_k"], f"must be an integer >= 1, got {k!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p <= 1.0:
            raise ConfigError(n["top_p"], f"must be in (0, 1], got {p!r}")
        if t == 0 and (k is not None or p != 1.0):
            raise ConfigError(
                n["top_k"] if k is not None else n["top_p"],
                "has no effect at temperature 0 (greedy decoding takes the argmax); "
                f"give {n['temperature']} > 0 to sample",
            )
        object.__setattr__(self, "temperature", float(t))
        object.__setattr__(self, "top_p", float(p))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def label(self) -> str:
        if self.greedy:
            return "greedy"
        parts = [f"T={self.temperature:g}"]
        if self.top_k is not None:
            parts.append(f"top-k={self.top_k}")
        if self.top_p < 1.0:
            parts.append(f"top-p={self.top_p:g}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}

    @classmethod
    def from_dict(cls, data: Any, where: str = "decoding") -> DecodingSettings:
        """A mapping, the string "greedy", or None (greedy: files from before the field)."""
        if data is None or data == "greedy":
            return GREEDY
        d = validate.mapping(where, data, FIELDS)
        names = {f: validate.join(where, f) for f in FIELDS}
        return checked(d.get("temperature", 0.0), d.get("top_k"), d.get("top_p", 1.0), names)


GREEDY = DecodingSettings()


def mismatch(measured: DecodingSettings, target: DecodingSettings) -> str | None:
    """None when acceptance measured at ``measured`` applies to a what-if at ``target``;
    otherwise the one-line warning that says so."""
    if measured == target:
        return None
    return (
        f"the acceptance is for {measured.label()} decoding but this what-if is at "
        f"{target.label()}: the predicted speed uses acceptance from another decoding setting "
        "(measure it at the target with `ppsd accept --temperatures ...`)"
    )


def add_args(parser: argparse.ArgumentParser | Any, what: str = "the what-if's") -> None:
    """``--temperature/--top-k/--top-p``: the decoding settings a what-if is for."""
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help=f"{what} sampling temperature (default 0 = greedy); acceptance measured at "
        "other settings is flagged",
    )
    parser.add_argument("--top-k", type=int, default=None, help=f"{what} top-k (default off)")
    parser.add_argument("--top-p", type=float, default=None, help=f"{what} top-p (default 1.0)")


#: the command-line flag of each field
FLAGS = {"temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p"}


def checked(
    temperature: Any, top_k: Any, top_p: Any, names: dict[str, str] | None = None
) -> DecodingSettings:
    """Settings from raw values, a bad one reported under ``names`` (default: the flags)."""
    out = object.__new__(DecodingSettings)
    object.__setattr__(out, "temperature", temperature)
    object.__setattr__(out, "top_k", top_k)
    object.__setattr__(out, "top_p", top_p)
    out._check(FLAGS if names is None else names)
    return out


def from_args(args: argparse.Namespace) -> DecodingSettings:
    """The settings ``add_args``'s flags name; a bad value is one line naming the flag."""
    t = args.temperature if args.temperature is not None else 0.0
    return checked(t, args.top_k, 1.0 if args.top_p is None else args.top_p)


def of_trace_file(path: str, field: str = "--acceptance-trace") -> DecodingSettings:
    """The settings a trace file says it was measured under (``ppsd accept --trace-out``
    writes ``{"trace": [...], "decoding": {...}}``); greedy for plain lists and old files."""
    from pathlib import Path

    from ppsd_sim.records.io import load_document

    p = Path(path)
    if p.suffix.lower() not in (".json", ".yaml", ".yml"):
        return GREEDY
    data = load_document(p, field)
    if isinstance(data, dict):
        return DecodingSettings.from_dict(data.get("decoding"), f"{field}.decoding")
    return GREEDY


def flag(records: list[Any], measured: DecodingSettings, target: DecodingSettings) -> str | None:
    """Mark each what-if record (``notes``) with its target settings and, when they differ
    from the acceptance's, the mismatch warning; returns the warning (None if they agree).
    Greedy against greedy adds nothing, so greedy output stays as it was."""
    msg = mismatch(measured, target)
    if msg is None and target.greedy:
        return None
    for r in records:
        r.notes["decoding"] = target.to_dict()
        r.notes["acceptance_decoding"] = measured.to_dict()
        if msg is not None:
            r.notes["decoding_mismatch"] = msg
    return msg
