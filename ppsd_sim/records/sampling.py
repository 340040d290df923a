"""SamplingSpec: how a run chose its tokens (greedy, or temperature / top-k / top-p + seed).

It lives with the records (no torch here) so a RunRecord can say what it was decoded with and a
capacity planner can read that without the real runner; ``ppsd_real.sampling`` re-exports it
beside the functions that apply it. Errors name the command-line flag (``--temperature``, ...),
since that is where users type these; read from a record they name the record's field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate

MAX_SEED = 2**63 - 1
#: the flag each field is typed as, for errors (and back, for a record's field names)
FLAGS = {"temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p", "seed": "--seed"}


@dataclass(frozen=True)
class SamplingSpec:
    """How tokens are chosen. ``temperature == 0`` is greedy (top-k/top-p then have no effect
    and are refused if given, so a user never believes they applied). ``top_k`` None = off;
    ``top_p`` 1.0 = off."""

    temperature: float = 0.0
    top_k: int | None = None
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
            raise ConfigError("--temperature", f"must be a finite number >= 0, got {t!r}")
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1
        ):
            raise ConfigError("--top-k", f"must be an integer >= 1, got {self.top_k!r}")
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p <= 1.0:
            raise ConfigError("--top-p", f"must be in (0, 1], got {p!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError("--seed", f"must be an integer, got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError("--seed", f"must be in [0, 2**63 - 1], got {self.seed}")
        if t == 0 and (self.top_k is not None or self.top_p != 1.0):
            raise ConfigError(
                "--top-k" if self.top_k is not None else "--top-p",
                "has no effect at temperature 0 (greedy decoding takes the argmax); "
                "give --temperature > 0 to sample",
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
        return " ".join(parts) + f" seed={self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "sampling") -> SamplingSpec:
        """Read back ``to_dict``; an error names the record's field (``sampling.top_p``)."""
        d = validate.mapping(where, data, tuple(FLAGS))
        try:
            return cls(**d)
        except ConfigError as err:
            name = next((k for k, f in FLAGS.items() if f == err.field), err.field)
            raise ConfigError(validate.join(where, name), err.message) from None


GREEDY = SamplingSpec()
