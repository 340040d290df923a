"""The grids of cells that calibration predicts and measures.

``default_grid``: (scheme, exit, α) with the oracle drafter, which sets the acceptance, so the
model's speed recipe is checked over the whole α range. ``drafter_grid``: the same schemes drafted
by the model's own early exit (its shared LM head or trained heads), greedy or sampled, where the
acceptance is whatever the model gives: the prediction then takes the acceptance the run
measured, and checks the recipe on real drafts (and, sampled, with the cost of warping p and q).
"""

from __future__ import annotations

from dataclasses import dataclass

from ppsd_sim.records import SchemeConfig, validate

DRAFTERS = ("oracle", "early-exit")
ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
QUICK_ALPHAS = (0.5, 0.8, 1.0)
GAMMA = 4


@dataclass(frozen=True)
class Cell:
    """One configuration: a scheme at one controlled acceptance (oracle; None for AR), or
    drafted by the model's early exit (``drafter="early-exit"``: no α is set)."""

    scheme: SchemeConfig
    alpha: float | None = None
    drafter: str = "oracle"

    def __post_init__(self) -> None:
        validate.choice("drafter", self.drafter, DRAFTERS)
        if self.drafter == "early-exit" and self.alpha is not None:
            raise ValueError("an early-exit cell's acceptance is measured, not set")

    @property
    def label(self) -> str:
        if self.drafter == "early-exit" and self.scheme.kind != "ar":
            return self.scheme.label() + " early-exit"
        return self.scheme.label() + ("" if self.alpha is None else f" α={self.alpha:g}")

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "scheme": self.scheme.to_dict(),
            "alpha": self.alpha,
            "drafter": self.drafter,
        }


def exits_for(n_layers: int) -> tuple[int, ...]:
    """Two exit positions: L/2 and L/4 (distinct, inside 1..L-1)."""
    return tuple(sorted({max(1, n_layers // 2), max(1, n_layers // 4)}, reverse=True))


def default_grid(n_layers: int, *, quick: bool = False, gamma: int = GAMMA) -> list[Cell]:
    """AR, then EESD(E, γ) and 2-stage PPSD with stage 1 ending at E, for two exits and
    α ∈ {0.5 … 1.0} (quick: three α, one exit): 25 cells, or 7 when quick."""
    validate.integer("n_layers", n_layers, lo=2)
    alphas = QUICK_ALPHAS if quick else ALPHAS
    exits = exits_for(n_layers)[:1] if quick else exits_for(n_layers)
    cells = [Cell(SchemeConfig.ar())]
    for e in exits:
        for a in alphas:
            cells.append(Cell(SchemeConfig.eesd(e, gamma), a))
            cells.append(Cell(SchemeConfig.ppsd((e, n_layers)), a))
    return cells


def drafter_grid(n_layers: int, *, quick: bool = False, gamma: int = GAMMA) -> list[Cell]:
    """AR, then EESD(E, γ) and 2-stage PPSD with stage 1 ending at E, drafted by the model's
    early exit, at the two exits of ``default_grid`` (quick: one): 5 cells, or 3 when quick."""
    validate.integer("n_layers", n_layers, lo=2)
    exits = exits_for(n_layers)[:1] if quick else exits_for(n_layers)
    cells = [Cell(SchemeConfig.ar(), drafter="early-exit")]
    for e in exits:
        cells.append(Cell(SchemeConfig.eesd(e, gamma), drafter="early-exit"))
        cells.append(Cell(SchemeConfig.ppsd((e, n_layers)), drafter="early-exit"))
    return cells
