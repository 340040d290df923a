"""The sweep spec: parsed, validated and expanded into points before any work starts.

A spec (YAML or JSON) has ``fixed`` values, ``axes`` (a grid: the cartesian product of
their value lists) and/or ``points`` (an explicit list of value sets, each over ``fixed``),
plus ``seed``, ``seed_mode`` and an optional ``name``. Every value is checked on its own and
every point for its required values up front, so a malformed spec fails in a second with the
field named instead of after an hour of work.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.io import load_document
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.sweep.params import PARAMS, check_value, resolve
from ppsd_sim.sweep.points import SEED_MODES, Context, Point, canonical_json, digest, make_point

SPEC_KEYS = ("name", "description", "seed", "seed_mode", "fixed", "axes", "points")
#: refuse grids that could not finish anyway (and would exhaust memory while expanding)
MAX_POINTS = 5_000_000


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: its points (unique by ID, in spec order) and the files they use."""

    name: str
    seed: int
    seed_mode: str
    points: tuple[Point, ...]
    context: Context
    varying: tuple[str, ...]  # parameters whose value differs between points
    duplicates: int  # points dropped because an earlier one had the same config
    unused: tuple[str, ...]  # parameters given but used by no point


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate a spec file; file paths inside it are relative to its folder."""
    p = Path(path)
    return parse_spec(load_document(p, "spec"), base_dir=p.parent, default_name=p.stem)


def parse_spec(
    data: Any, base_dir: str | os.PathLike[str] = ".", default_name: str = "sweep"
) -> SweepSpec:
    """Validate a spec document (already parsed) and expand it into points."""
    if data is None:
        raise ConfigError("spec", "is empty")
    d = validate.mapping("spec", data, SPEC_KEYS)
    name = d.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"must be a non-empty string, got {name!r}")
    seed = validate.integer("seed", d.get("seed", 0), lo=0, hi=2**62)
    seed_mode = validate.choice("seed_mode", d.get("seed_mode", "point"), SEED_MODES)
    files = _Files(Path(base_dir))
    fixed = _values("fixed", d.get("fixed", {}), files)
    axes = _axes(d.get("axes"), fixed, files)
    listed = _listed(d.get("points"), files)
    if not axes and listed is None:
        raise ConfigError("axes", "give axes (a grid) and/or points (an explicit list)")
    raw: list[tuple[str, dict[str, Any]]] = []
    if axes:
        names = list(axes)
        for combo in itertools.product(*axes.values()):
            raw.append(("fixed", {**fixed, **dict(zip(names, combo, strict=True))}))
    for i, values in enumerate(listed or ()):
        raw.append((f"points[{i}]", {**fixed, **values}))

    points: list[Point] = []
    seen: set[str] = set()
    used: set[str] = set()
    for where, values in raw:
        cfg = files.attach(resolve(values, where))
        used.update(cfg)
        pt = make_point(cfg, seed, seed_mode)
        if pt.id not in seen:
            seen.add(pt.id)
            points.append(pt)
    given = set(fixed) | set(axes) | {k for v in listed or () for k in v}
    unused = tuple(sorted(given - used))
    return SweepSpec(
        name=name,
        seed=seed,
        seed_mode=seed_mode,
        points=tuple(points),
        context=files.context(),
        varying=_varying(points),
        duplicates=len(raw) - len(points),
        unused=unused,
    )


def _values(where: str, data: Any, files: _Files) -> dict[str, Any]:
    d = validate.mapping(where, data, PARAMS)
    return {
        k: files.check(f"{where}.{k}", k, check_value(f"{where}.{k}", k, v)) for k, v in d.items()
    }


def _axes(data: Any, fixed: dict[str, Any], files: _Files) -> dict[str, list[Any]]:
    if data is None:
        return {}
    d = validate.mapping("axes", data, PARAMS)
    out: dict[str, list[Any]] = {}
    for k, values in d.items():
        if k in fixed:
            raise ConfigError(f"axes.{k}", "is also in fixed; give it in one place")
        items = validate.sequence(f"axes.{k}", values, min_len=1)
        if PARAMS[k].kind == "list" and not isinstance(items[0], list | tuple):
            raise ConfigError(f"axes.{k}[0]", f"must be a list: an axis of {k} is a list of lists")
        out[k] = [
            files.check(f"axes.{k}[{i}]", k, check_value(f"axes.{k}[{i}]", k, v))
            for i, v in enumerate(items)
        ]
    size = math.prod(len(v) for v in out.values())
    if size > MAX_POINTS:
        raise ConfigError("axes", f"the grid has {size:,} points, above the {MAX_POINTS:,} limit")
    return out


def _listed(data: Any, files: _Files) -> list[dict[str, Any]] | None:
    if data is None:
        return None
    items = validate.sequence("points", data, min_len=1)
    return [_values(f"points[{i}]", v, files) for i, v in enumerate(items)]


def _varying(points: list[Point]) -> tuple[str, ...]:
    """Parameters whose value (or presence) differs between points."""
    seen: dict[str, set[str]] = {k: set() for pt in points for k in pt.config if k in PARAMS}
    for pt in points:
        for k, values in seen.items():
            values.add(canonical_json(pt.config.get(k)))
    return tuple(k for k in PARAMS if k in seen and len(seen[k]) > 1)


class _Files:
    """Loads each profile / acceptance file once, validates it, and tags points with the
    hash of its content (so an edited file means new points)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.profiles: dict[str, dict[str, Any]] = {}
        self.acceptances: dict[str, dict[str, Any]] = {}
        self._by_path: dict[tuple[str, str], str] = {}

    def attach(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """Tag a resolved point with the content hashes of the files it names."""
        if "profile" in cfg:
            cfg["profile_sha256"] = self._by_path[("profile", cfg["profile"])]
        if "acceptance_file" in cfg:
            cfg["acceptance_sha256"] = self._by_path[("acceptance_file", cfg["acceptance_file"])]
        return cfg

    def check(self, field: str, kind: str, value: Any) -> Any:
        """Load and validate the file a ``profile`` / ``acceptance_file`` value names."""
        if kind in ("profile", "acceptance_file") and (kind, value) not in self._by_path:
            self._by_path[(kind, value)] = self._load(kind, value, field)
        return value

    def _load(self, kind: str, rel: str, field: str) -> str:
        path = self.base / rel
        doc = load_document(path, field)
        if kind == "profile":
            obj: Any = HardwareProfile.from_dict(doc, field)
        else:
            obj = AcceptanceSpec.from_dict(doc, field)
        data = obj.to_dict()
        sha = digest(canonical_json(data))[:16]
        (self.profiles if kind == "profile" else self.acceptances)[sha] = data
        return sha

    def context(self) -> Context:
        return Context(dict(self.profiles), dict(self.acceptances))
