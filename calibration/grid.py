"""The grid of (scheme, exit, α) cells that calibration predicts and measures."""

from __future__ import annotations

from dataclasses import dataclass

from ppsd_sim.records import SchemeConfig, validate

ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
QUICK_ALPHAS = (0.5, 0.8, 1.0)
GAMMA = 4


@dataclass(frozen=True)
class Cell:
    """One configuration: a scheme at one controlled acceptance (None for AR)."""

    scheme: SchemeConfig
    alpha: float | None = None

    @property
    def label(self) -> str:
        return self.scheme.label() + ("" if self.alpha is None else f" α={self.alpha:g}")

    def to_dict(self) -> dict:
        return {"label": self.label, "scheme": self.scheme.to_dict(), "alpha": self.alpha}


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
