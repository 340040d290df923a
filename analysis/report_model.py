"""The report as data — sections of paragraphs, tables and figures, with every number tagged —
so the HTML and Markdown renderers show exactly the same content."""

from __future__ import annotations

from dataclasses import dataclass, field

#: what a tag means (shown as the report's legend)
TAGS = {
    "measured": "measured on real hardware",
    "predicted": "computed by the simulator / closed forms from a profile",
    "extrapolated": "predicted from inputs outside what was measured or given",
    "published": "reported in a publication or the project notes (cited)",
    "synthesised": "roofline estimate from datasheet figures, not measured",
    "example": "illustrative input, not a measurement",
    "hand": "written by hand",
}


#: short marks shown next to each number (HTML badges, Markdown suffixes)
SHORT = {
    "measured": "M",
    "predicted": "P",
    "extrapolated": "X",
    "published": "pub",
    "synthesised": "S",
    "example": "ex",
    "hand": "H",
}


@dataclass(frozen=True)
class Num:
    """A number with its status tag and display format."""

    value: float | None
    tag: str
    fmt: str = "{:.3g}"
    suffix: str = ""
    label: str | None = None  # shown instead of the formatted value (e.g. "3.81×")

    def text(self) -> str:
        if self.label is not None:
            return self.label
        if self.value is None:
            return "—"
        return self.fmt.format(self.value) + self.suffix


Cell = Num | str


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Fig:
    key: str  # file stem, e.g. "heatmap_eesd"
    png: bytes
    alt: str
    caption: str = ""


@dataclass(frozen=True)
class Para:
    text: str


Item = Table | Fig | Para | tuple[Fig, ...]


@dataclass
class Section:
    title: str
    items: list[Item] = field(default_factory=list)
    anchor: str = ""


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]
    skipped: list[tuple[str, str]]
    generated: str
