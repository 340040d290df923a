"""SamplingCosts: what choosing a token costs when decoding samples instead of taking the argmax.

At temperature > 0 every head output becomes a probability vector before a token is chosen, and
every draft is judged against the full model's vector (``ppsd_real.sampling``). On a small model
that host-side work is a sizeable share of a token (the project's own model: tens of µs per
vector against a few hundred per layer), and it falls unevenly on the schemes: EESD pays it
serially for each draft and each verified row, while PPSD spreads it over its stages. A profile
without it over-predicts sampled EESD and under-predicts sampled PPSD, so the profiler measures
three parts, each for one vector of the model's vocabulary, at the settings it was asked for:

- ``warp``: logits → probabilities (temperature, top-k, top-p);
- ``draw``: one token from a probability vector (the keyed uniform and the inverse CDF);
- ``judge``: one draft judged against p (accept test, residual draw on rejection, and the
  expected acceptance Σ min(p, q) the records keep).

How the schemes pay them is decided in one place, ``ppsd_sim.costs``. The batch-1 engines apply
them only to a what-if whose decoding samples; greedy predictions never read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.decoding import DecodingSettings
from ppsd_sim.records.timing import Timing, timing

_PARTS = ("warp", "draw", "judge")


@dataclass(frozen=True)
class SamplingCosts:
    """Per-vector sampling costs (seconds), measured at ``settings`` (top-p's sort makes
    ``warp`` dearer than temperature alone; the temperature's value itself costs nothing)."""

    settings: DecodingSettings
    warp: Timing
    draw: Timing
    judge: Timing

    def __post_init__(self) -> None:
        if not isinstance(self.settings, DecodingSettings):
            raise ConfigError("sampling.settings", "must be a DecodingSettings")
        if self.settings.greedy:
            raise ConfigError(
                "sampling.settings.temperature",
                "must be > 0: sampling costs are measured at a sampling setting",
            )
        for name in _PARTS:
            object.__setattr__(self, name, timing(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            **{name: getattr(self, name).to_dict() for name in _PARTS},
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "sampling") -> SamplingCosts:
        """Every field required; errors name ``<where>.<field>``."""
        d = validate.mapping(where, data, ("settings", *_PARTS), ("settings", *_PARTS))
        return cls(
            settings=DecodingSettings.from_dict(d["settings"], validate.join(where, "settings")),
            **{name: Timing.from_dict(d[name], validate.join(where, name)) for name in _PARTS},
        )


@dataclass(frozen=True)
class TokenChoice:
    """The medians a scheme's costs add per vector (all 0 for greedy decoding, or when the
    profile measured no sampling costs)."""

    warp: float = 0.0
    draw: float = 0.0
    judge: float = 0.0

    @property
    def sample(self) -> float:
        """One token sampled from one head output: warp, then draw."""
        return self.warp + self.draw


GREEDY_CHOICE = TokenChoice()
