"""SamplingSpec: how a run chose its tokens — the decoding settings plus the seed.

The settings (temperature, top-k, top-p) have one home, ``DecodingSettings`` in
``ppsd_sim.records.decoding``: it validates them and is what an acceptance rate depends on. A run
also needs the seed, which decides which tokens are drawn but not the rate they are drawn with,
so a SamplingSpec is the settings plus a seed. It lives with the records (no torch here) so a
RunRecord can say what it was decoded with; ``ppsd_real.sampling`` re-exports it beside the
functions that apply it. Errors name the command-line flag (``--temperature``, ...), since that
is where users type these; read from a record they name the record's field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.decoding import FLAGS as DECODING_FLAGS
from ppsd_sim.records.decoding import DecodingSettings, checked

MAX_SEED = 2**63 - 1
#: the flag each field is typed as, for errors
FLAGS = {**DECODING_FLAGS, "seed": "--seed"}


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
        self._check(FLAGS)

    def _check(self, names: dict[str, str]) -> None:
        d = checked(self.temperature, self.top_k, self.top_p, names)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(names["seed"], f"must be an integer, got {self.seed!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(names["seed"], f"must be in [0, 2**63 - 1], got {self.seed}")
        object.__setattr__(self, "temperature", d.temperature)
        object.__setattr__(self, "top_p", d.top_p)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def decoding(self) -> DecodingSettings:
        """The settings without the seed (what an acceptance rate depends on)."""
        return DecodingSettings(self.temperature, self.top_k, self.top_p)

    def label(self) -> str:
        d = self.decoding
        return d.label() if d.greedy else f"{d.label()} seed={self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.decoding.to_dict(), "seed": self.seed}

    @classmethod
    def from_dict(cls, data: Any, where: str = "sampling") -> SamplingSpec:
        """Read back ``to_dict``; an error names the record's field (``sampling.top_p``)."""
        d = validate.mapping(where, data, tuple(FLAGS))
        out = object.__new__(cls)
        for name in FLAGS:
            object.__setattr__(out, name, d.get(name, getattr(GREEDY, name)))
        out._check({name: validate.join(where, name) for name in FLAGS})
        return out


GREEDY = SamplingSpec()
