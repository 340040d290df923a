"""Acceptance curves α(E): the per-token acceptance of a draft taken after exit layer E.

The planner needs α at every exit it considers; measurements give it at a few exits, so the
curve interpolates linearly between them and holds the end values flat outside (never
extrapolating a trend past what was given).

A curve measured by another tool (accepted ÷ drafted at γ, τ, a pipeline's theoretical
speedup, …) is converted point by point to ppsd's α with ``ppsd_sim.acceptance.vocabulary``
(``Measured``); the curve's note then says what it was derived from.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppsd_sim.acceptance.vocabulary import SCALAR_MEASURES, alpha_from_measure, describe
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import acceptance_pick, validate
from ppsd_sim.records.acceptance_record import AcceptanceRecord
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.io import load_document

CURVE_SOURCES = ("measured", "given", "illustrative")


@dataclass(frozen=True)
class AcceptanceCurve:
    """α (i.i.d., conditional per-token rate) at given exit layers, strictly increasing E."""

    exits: tuple[int, ...]
    alphas: tuple[float, ...]
    source: str = "given"
    note: str = ""
    #: the decoding the α were measured under (greedy for files that do not say)
    decoding: DecodingSettings = GREEDY

    def __post_init__(self) -> None:
        ex = [
            validate.integer(f"curve.exits[{i}]", e, lo=1)
            for i, e in enumerate(validate.sequence("curve.exits", self.exits, min_len=1))
        ]
        al = [
            validate.probability(f"curve.alphas[{i}]", a)
            for i, a in enumerate(validate.sequence("curve.alphas", self.alphas, min_len=1))
        ]
        if len(ex) != len(al):
            raise ConfigError("curve.alphas", f"needs one α per exit ({len(ex)}), got {len(al)}")
        if any(b <= a for a, b in itertools.pairwise(ex)):
            raise ConfigError("curve.exits", f"must be strictly increasing, got {ex}")
        validate.choice("curve.source", self.source, CURVE_SOURCES)
        object.__setattr__(self, "exits", tuple(ex))
        object.__setattr__(self, "alphas", tuple(al))

    def alpha(self, exit_layer: int) -> float:
        """α at exit E (linear interpolation, flat beyond the given range)."""
        return float(np.interp(exit_layer, self.exits, self.alphas))

    def interpolated(self, exit_layer: int) -> bool:
        """True when α(E) was not given directly (interpolated or held flat)."""
        return exit_layer not in self.exits

    def label(self) -> str:
        """Short description: every point when few, about six evenly spaced ones otherwise."""
        idx: list[int] | range = range(len(self.exits))
        if len(self.exits) > 8:
            step = -(-len(self.exits) // 6)
            idx = sorted({*range(0, len(self.exits), step), len(self.exits) - 1})
        pts = ", ".join(f"E={self.exits[i]}: {self.alphas[i]:.2f}" for i in idx)
        more = "" if len(idx) == len(self.exits) else ", …"
        at = "" if self.decoding.greedy else f" at {self.decoding.label()}"
        return f"{self.source} α(E){at} [{pts}{more}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": "AcceptanceCurve",
            "exits": list(self.exits),
            "alphas": list(self.alphas),
            "source": self.source,
            "note": self.note,
            **({} if self.decoding.greedy else {"decoding": self.decoding.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "curve") -> AcceptanceCurve:
        d = validate.mapping(
            where,
            data,
            ("record", "exits", "alphas", "source", "note", "decoding"),
            ("exits", "alphas"),
        )
        try:
            return cls(
                tuple(validate.sequence(f"{where}.exits", d["exits"])),
                tuple(validate.sequence(f"{where}.alphas", d["alphas"])),
                d.get("source", "given"),
                d.get("note", ""),
                DecodingSettings.from_dict(d.get("decoding"), f"{where}.decoding"),
            )
        except ConfigError as err:
            if where != "curve":
                raise ConfigError(err.field.replace("curve", where, 1), err.message) from None
            raise


@dataclass(frozen=True)
class Measured:
    """What a curve's numbers are when they are not ppsd's α: a measure of
    ``SCALAR_MEASURES`` and the γ (or number of stages k) it was taken at."""

    measured_as: str
    gamma: int | None = None
    stages: int | None = None

    def __post_init__(self) -> None:
        validate.choice("measured-as", self.measured_as, SCALAR_MEASURES)

    def label(self) -> str:
        at = (
            f" at γ={self.gamma}"
            if self.gamma is not None
            else f" at k={self.stages}"
            if self.stages is not None
            else ""
        )
        return f"{describe(self.measured_as)}{at}"


def curve_from_values(
    exits: list[int] | tuple[int, ...],
    values: list[float] | tuple[float, ...],
    field: str,
    measured: Measured | None = None,
    source: str = "given",
) -> AcceptanceCurve:
    """A curve from α values, or from values in another tool's measure, converted per exit.
    Errors name ``field`` (``--curve`` or the file) and, for a value, its exit."""
    if measured is None:
        try:
            return AcceptanceCurve(tuple(exits), tuple(values), source)
        except ConfigError as err:
            raise ConfigError(field, err.message) from None
    if len(values) != len(exits):
        raise ConfigError(field, f"needs one value per exit ({len(exits)}), got {len(values)}")
    alphas = []
    for e, v in zip(exits, values, strict=True):
        try:
            a = alpha_from_measure(
                v,
                measured.measured_as,
                gamma=measured.gamma,
                stages=measured.stages,
                field=f"{field}[E={e}]",
            )
        except ConfigError as err:
            name = err.field
            if name.startswith("measured-"):
                name = "--" + name
            raise ConfigError(name, err.message) from None
        alphas.append(round(a, 6))
    pts = ", ".join(
        f"E={e}: {v:g} → {a:.3f}" for e, v, a in zip(exits, values, alphas, strict=True)
    )
    note = f"α (i.i.d., conditional per judged draft) derived from {measured.label()}: {pts}"
    try:
        return AcceptanceCurve(tuple(exits), tuple(alphas), source, note)
    except ConfigError as err:
        raise ConfigError(field, err.message) from None


def parse_curve(
    text: str, field: str = "--curve", measured: Measured | None = None
) -> AcceptanceCurve:
    """``"4:0.5,8:0.7,16:0.9"`` (exit:α pairs, or exit:value in ``measured``'s measure) →
    a curve."""
    pairs = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            e, a = part.split(":")
            pairs.append((int(e), float(a)))
        except ValueError:
            raise ConfigError(
                field, f"must be comma-separated exit:alpha pairs like 8:0.7, got {part!r}"
            ) from None
    if not pairs:
        raise ConfigError(field, "needs at least one exit:alpha pair")
    pairs.sort()
    return curve_from_values([p[0] for p in pairs], [p[1] for p in pairs], field, measured)


#: keys of a curve file measured in another tool's vocabulary
MEASURED_FILE_KEYS = ("exits", "values", "measured_as", "gamma", "stages", "source", "note")


def read_curve(
    path: str | Path,
    field: str = "--curve-file",
    measured: Measured | None = None,
    *,
    head: str | None = None,
    target: DecodingSettings = GREEDY,
    n_layers: int | None = None,
) -> AcceptanceCurve:
    """A JSON/YAML file with ``exits`` and ``alphas`` lists (ppsd's α), or with ``exits``,
    ``values`` and ``measured_as`` (+ ``gamma`` or ``stages``): a measure of another tool,
    converted. ``measured`` (the command line's) applies to a file of ``alphas`` only.

    Or an AcceptanceRecord (``ppsd accept --out``), optionally ``RECORD@HEAD``: its α per
    measured exit for ``head`` (the suffix's, else ``head``, else the only head measured,
    else shared) at ``target``'s decoding when measured, else its only setting
    (``record_curve``); with ``n_layers`` a record of a model of other depth is refused."""
    text, sel = acceptance_pick.split_ref(str(path))
    doc = load_document(text, field)
    if acceptance_pick.is_record(doc):
        if measured is not None:
            raise ConfigError(
                "--measured-as", f"{text} is an AcceptanceRecord: its α is ppsd's; drop the flag"
            )
        if sel is not None and head is not None and sel != head:
            raise ConfigError(field, f"@{sel} disagrees with --curve-head {head}")
        rec = acceptance_pick.as_record(doc, text, field)
        if n_layers is not None and rec.model["n_layers"] != n_layers:
            raise ConfigError(
                field,
                f"{text} measured a model of {rec.model['n_layers']} layers, the profile has "
                f"{n_layers}: α at exit E holds for that model only (plan on its own profile: "
                "--synth MODEL_DIR@DEVICE or --profile)",
            )
        h = acceptance_pick.head_of(rec, sel or head, field, text)
        dec = acceptance_pick.decoding_of(rec, h, target, field, text)
        return record_curve(rec, h, dec)
    if sel is not None:
        raise ConfigError(
            field,
            f"{text} is not an AcceptanceRecord: @{sel} names a head of one (`ppsd accept --out`)",
        )
    kind = acceptance_pick.other_record(doc)
    if kind is not None and kind != "AcceptanceCurve":
        raise ConfigError(
            field,
            f"{text} is a {kind}: give an AcceptanceRecord (`ppsd accept --out`) or an α(E) "
            "curve file (exits and alphas)",
        )
    if head is not None:
        raise ConfigError("--curve-head", f"needs an AcceptanceRecord; {text} is a curve file")
    if isinstance(doc, dict) and "measured_as" in doc:
        if measured is not None:
            raise ConfigError(
                "--measured-as", f"{path} says itself what it measured (measured_as); drop the flag"
            )
        d = validate.mapping(field, doc, MEASURED_FILE_KEYS, ("exits", "values", "measured_as"))
        try:
            m = Measured(d["measured_as"], d.get("gamma"), d.get("stages"))
        except ConfigError as err:
            raise ConfigError(f"{field}.measured_as", err.message) from None
        exits = validate.sequence(f"{field}.exits", d["exits"], min_len=1)
        values = validate.sequence(f"{field}.values", d["values"], min_len=1)
        return curve_from_values(list(exits), list(values), field, m, d.get("source", "measured"))
    if measured is not None:
        d = validate.mapping(field, doc, ("exits", "alphas"), ("exits", "alphas"))
        exits = validate.sequence(f"{field}.exits", d["exits"], min_len=1)
        values = validate.sequence(f"{field}.alphas", d["alphas"], min_len=1)
        return curve_from_values(list(exits), list(values), field, measured)
    try:
        return AcceptanceCurve.from_dict(doc, field)
    except ConfigError as err:
        if err.field.startswith(field):
            raise
        raise ConfigError(field, str(err)) from None


def record_curve(rec: AcceptanceRecord, head: str, decoding: DecodingSettings) -> AcceptanceCurve:
    """A measured α(E) curve from one head and decoding setting of an AcceptanceRecord (its
    ``curve``: the measured α for greedy rows, the expected α for sampled ones), the note
    naming the model, head, prompt set and setting."""
    exits, alphas = rec.curve(head, decoding)
    what = "expected α" if not decoding.greedy else "α"
    note = f"ppsd accept, {head} head, {decoding.label()} ({what}); {acceptance_pick.describe(rec)}"
    return AcceptanceCurve(exits, alphas, "measured", note, decoding)


def illustrative_curve(n_layers: int) -> AcceptanceCurve:
    """A made-up but plausible shape for demos: α(E) = 0.95·(1 − exp(−4E/L)), near 0 for the
    shallowest exits and rising with depth (0.60 at E = L/4, 0.82 at L/2, for any L).
    Not a measurement: every report and plan that uses it says so."""
    n_layers = validate.integer("n_layers", n_layers, lo=2)
    exits = tuple(range(1, n_layers))
    alphas = tuple(round(0.95 * (1.0 - math.exp(-4.0 * e / n_layers)), 6) for e in exits)
    return AcceptanceCurve(
        exits,
        alphas,
        source="illustrative",
        note="α(E) = 0.95·(1 − exp(−4E/L)): an illustrative shape, not a measurement",
    )
