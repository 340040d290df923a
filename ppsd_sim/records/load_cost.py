"""Step costs under load: what one component costs in a batched step, for the serving model.

A batched step processes ``tokens`` new tokens (all sequences in the step together) and reads
``kv`` cached KV tokens (the sum, over the sequences in the step, of the entries each one has
cached in that layer before the step: attention reads a sequence's cache once per step however
many new tokens it brings). A ``LoadCost`` gives the step time of one component as

- the fitted linear form ``a + b·tokens + c·kv`` (the minimum a profile can carry), or
- a measured (or roofline-sampled) grid over ``tokens × kv``, bilinear inside and extended
  linearly from the edge cell outside (the same rule ``HardwareProfile.factor`` uses past its
  last point). A grid reproduces any function ``α + β·T + γ·K + δ·T·K`` exactly, so a linear
  cost sampled on a grid, or two grids summed on the union of their axes, lose nothing.

A profiler fills a grid by measuring, for each (tokens = B, kv = K) cell, a decode step of B
sequences holding K/B cached tokens each; steps measured anywhere else (batch sizes × context
lengths, say) give the linear form through ``LoadCost.fit``.

``BatchedCosts`` holds one per layer (or one for every layer), the heads, the embedding and
optionally the inter-stage hop; ``TensorParallel`` the same for one device's shard of a
degree-k tensor-parallel split plus the all-reduce that joins the shards. The batch-1 engines
never read these: they keep ``layer_decode`` and ``verify_factor``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.schema import rerooted


@dataclass(frozen=True)
class LoadCost:
    """Seconds for a step of ``tokens`` new tokens reading ``kv`` cached tokens (see module)."""

    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    tokens: tuple[int, ...] = ()
    kv: tuple[int, ...] = ()
    table: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        for name in ("a", "b", "c"):
            object.__setattr__(self, name, validate.number(name, getattr(self, name), lo=0.0))
        if not self.tokens and not self.kv and not self.table:
            return
        if self.a or self.b or self.c:
            raise ConfigError("a", "a grid cost (tokens, kv, table) takes no linear a, b, c")
        toks = _axis("tokens", self.tokens, lo=1)
        kvs = _axis("kv", self.kv, lo=0)
        if toks[0] != 1:
            raise ConfigError("tokens", f"must start at 1 token (a step has >= 1), got {toks[0]}")
        rows = validate.sequence("table", self.table, min_len=1)
        if len(rows) != len(toks):
            raise ConfigError(
                "table", f"needs one row per tokens entry ({len(toks)}), got {len(rows)}"
            )
        table = []
        for i, row in enumerate(rows):
            cells = validate.sequence(f"table[{i}]", row, min_len=1)
            if len(cells) != len(kvs):
                raise ConfigError(
                    f"table[{i}]", f"needs one value per kv entry ({len(kvs)}), got {len(cells)}"
                )
            table.append(
                tuple(validate.number(f"table[{i}][{j}]", v, lo=0.0) for j, v in enumerate(cells))
            )
        object.__setattr__(self, "tokens", tuple(toks))
        object.__setattr__(self, "kv", tuple(kvs))
        object.__setattr__(self, "table", tuple(table))

    @property
    def is_grid(self) -> bool:
        return bool(self.tokens)

    def time(self, tokens: float, kv: float = 0.0) -> float:
        """Step time (s) of this component; never below 0."""
        if not self.tokens:
            return self.a + self.b * tokens + self.c * kv
        i, u = _cell(self.tokens, tokens)
        j, w = _cell(self.kv, kv)
        t = self.table
        if len(self.kv) == 1:
            v = t[i][0] if len(self.tokens) == 1 else t[i][0] + u * (t[i + 1][0] - t[i][0])
        elif len(self.tokens) == 1:
            v = t[0][j] + w * (t[0][j + 1] - t[0][j])
        else:
            lo = t[i][j] + w * (t[i][j + 1] - t[i][j])
            hi = t[i + 1][j] + w * (t[i + 1][j + 1] - t[i + 1][j])
            v = lo + u * (hi - lo)
        return v if v > 0.0 else 0.0

    def scaled(self, factor: float) -> LoadCost:
        """The same cost times ``factor`` (e.g. n identical layers)."""
        if self.tokens:
            return LoadCost(
                tokens=self.tokens,
                kv=self.kv,
                table=tuple(tuple(v * factor for v in row) for row in self.table),
            )
        return LoadCost(self.a * factor, self.b * factor, self.c * factor)

    def on_axes(self, tokens: tuple[int, ...], kv: tuple[int, ...]) -> LoadCost:
        """This cost sampled on a grid (exact: see the module docstring)."""
        return LoadCost(
            tokens=tokens, kv=kv, table=tuple(tuple(self.time(t, k) for k in kv) for t in tokens)
        )

    @staticmethod
    def total(costs: Sequence[LoadCost]) -> LoadCost:
        """The sum of several costs, e.g. the layers of one stage: linear if all are linear,
        else a grid on the union of the grids' axes."""
        if not costs:
            return LoadCost()
        grids = [c for c in costs if c.tokens]
        if not grids:
            return LoadCost(
                sum(c.a for c in costs), sum(c.b for c in costs), sum(c.c for c in costs)
            )
        toks = tuple(sorted({t for g in grids for t in g.tokens}))
        kvs = tuple(sorted({k for g in grids for k in g.kv}))
        if all(g.tokens == toks and g.kv == kvs for g in grids) and len(grids) == len(costs):
            table = tuple(
                tuple(sum(g.table[i][j] for g in grids) for j in range(len(kvs)))
                for i in range(len(toks))
            )
            return LoadCost(tokens=toks, kv=kvs, table=table)
        return LoadCost.total([c.on_axes(toks, kvs) for c in costs])

    @classmethod
    def fit(cls, tokens: Sequence[int], kv: Sequence[int], seconds: Sequence[float]) -> LoadCost:
        """The linear form ``a + b·tokens + c·kv`` fitted to measured steps by non-negative
        least squares (a, b, c >= 0: a step never gets cheaper with more load), e.g. from a
        profiler's batch sizes × context lengths, which need not form a rectangular grid.
        A coefficient the samples cannot separate (one kv value, say) comes out 0 and the
        intercept takes its share."""
        from scipy.optimize import nnls  # here: importing the records stays light

        t = [validate.integer(f"tokens[{i}]", v, lo=1) for i, v in enumerate(tokens)]
        k = [validate.integer(f"kv[{i}]", v, lo=0) for i, v in enumerate(kv)]
        y = [validate.number(f"seconds[{i}]", v, lo=0.0) for i, v in enumerate(seconds)]
        if not t:
            raise ConfigError("tokens", "needs at least one measured step")
        if not len(t) == len(k) == len(y):
            raise ConfigError(
                "seconds", f"needs one value per step: {len(t)} tokens, {len(k)} kv, {len(y)} s"
            )
        cols = [[1.0] * len(t), [float(v) for v in t], [float(v) for v in k]]
        used = [i for i, col in enumerate(cols) if i == 0 or len(set(col)) > 1]
        mat = np.array([cols[i] for i in used]).T
        scale = np.abs(mat).max(axis=0)  # columns of similar size for a well-posed solve
        coef, _ = nnls(mat / scale, np.asarray(y))
        out = [0.0, 0.0, 0.0]
        for i, c in zip(used, coef / scale, strict=True):
            out[i] = float(c)
        return cls(out[0], out[1], out[2])

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        if self.tokens:
            return {
                "tokens": list(self.tokens),
                "kv": list(self.kv),
                "table": [list(r) for r in self.table],
            }
        return {"a": self.a, "b": self.b, "c": self.c}

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> LoadCost:
        d = validate.mapping(where, data, ("a", "b", "c", "tokens", "kv", "table"))
        for name in ("tokens", "kv", "table"):
            if name in d:
                d[name] = tuple(validate.sequence(validate.join(where, name), d[name]))
        try:
            return cls(**d)
        except ConfigError as err:
            raise err.within(where) if where else err from None


def _axis(name: str, values: Any, *, lo: int) -> list[int]:
    xs = [
        validate.integer(f"{name}[{i}]", v, lo=lo)
        for i, v in enumerate(validate.sequence(name, values, min_len=1))
    ]
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise ConfigError(name, f"must be strictly increasing, got {xs}")
    return xs


def _cell(axis: tuple[int, ...], x: float) -> tuple[int, float]:
    """Index of the cell holding x (the edge cell outside the axis) and x's position in it."""
    n = len(axis)
    if n == 1:
        return 0, 0.0
    i = bisect.bisect_right(axis, x) - 1
    i = 0 if i < 0 else (n - 2 if i > n - 2 else i)
    lo, hi = axis[i], axis[i + 1]
    return i, (x - lo) / (hi - lo)


ZERO = LoadCost()


def _costs(where: str, name: str, value: Any, n_layers: int | None) -> tuple[LoadCost, ...]:
    items = validate.sequence(validate.join(where, name), value, min_len=1)
    out = []
    for i, c in enumerate(items):
        if not isinstance(c, LoadCost):
            raise ConfigError(f"{validate.join(where, name)}[{i}]", "must be a LoadCost")
        out.append(c)
    if n_layers is not None and len(out) not in (1, n_layers):
        raise ConfigError(
            validate.join(where, name),
            f"needs one cost for every layer or one per layer ({n_layers}), got {len(out)}",
        )
    return tuple(out)


def _one(where: str, name: str, value: Any) -> LoadCost:
    if not isinstance(value, LoadCost):
        raise ConfigError(validate.join(where, name), "must be a LoadCost")
    return value


def _read_per_layer(
    d: dict[str, Any], where: str, names: tuple[str, ...]
) -> tuple[tuple[LoadCost, ...], dict[str, Any]]:
    """A per-layer record's ``layers`` list and those of its single costs ``names`` it holds
    (the reading of ``BatchedCosts`` and ``TensorParallel``); errors name the field."""
    j = lambda n: validate.join(where, n)  # noqa: E731
    layers = tuple(
        LoadCost.from_dict(c, f"{j('layers')}[{i}]")
        for i, c in enumerate(validate.sequence(j("layers"), d["layers"], min_len=1))
    )
    return layers, {n: LoadCost.from_dict(d[n], j(n)) for n in names if n in d}


class _PerLayer:
    """Layer costs held as one for every layer or one per layer."""

    layers: tuple[LoadCost, ...]

    def check_layers(self, n_layers: int, where: str) -> None:
        _costs(where, "layers", self.layers, n_layers)

    def layers_cost(self, start: int, stop: int) -> LoadCost:
        """The summed cost of layers[start:stop] (one shared cost: scaled by the count)."""
        if len(self.layers) == 1:
            return self.layers[0].scaled(stop - start)
        return LoadCost.total(self.layers[start:stop])


@dataclass(frozen=True)
class BatchedCosts(_PerLayer):
    """A model's step costs under load on one device: ``layers`` (one for every layer, or one
    per layer), ``embed``, ``ee_head``, ``final_head`` (their ``kv`` is ignored: heads read no
    cache) and ``hop`` (sending ``tokens`` hidden states to the next stage; None: the
    profile's one-token ``hop`` for any step). ``draft_step`` is a whole EESD draft step at
    exit ``draft_exit`` (embed + layers[0:E] + EE head) timed inside rounds of drafts and
    verifications as the engine runs them: on a CPU whose caches hold the early layers but not
    the whole model, a draft after a verification runs cold and a hot loop of early-exit steps
    under-prices it (on the shipped model by 30-50 %). None: priced from the layers. ``notes``
    says where the numbers came from."""

    layers: tuple[LoadCost, ...]
    embed: LoadCost = ZERO
    ee_head: LoadCost = ZERO
    final_head: LoadCost = ZERO
    hop: LoadCost | None = None
    notes: str | None = None
    draft_step: LoadCost | None = None
    draft_exit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", _costs("batched", "layers", self.layers, None))
        for name in ("embed", "ee_head", "final_head"):
            _one("batched", name, getattr(self, name))
        if self.hop is not None:
            _one("batched", "hop", self.hop)
        if self.notes is not None and not isinstance(self.notes, str):
            raise ConfigError("batched.notes", "must be a string")
        if (self.draft_step is None) != (self.draft_exit is None):
            raise ConfigError("batched.draft_exit", "draft_step and draft_exit go together")
        if self.draft_step is not None:
            _one("batched", "draft_step", self.draft_step)
            validate.integer("batched.draft_exit", self.draft_exit, lo=1)

    def draft_cost(self, exit_layer: int) -> LoadCost | None:
        """The measured whole draft step at ``exit_layer`` (None: not measured at that exit)."""
        return self.draft_step if self.draft_exit == exit_layer else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "layers": [c.to_dict() for c in self.layers],
            "embed": self.embed.to_dict(),
            "ee_head": self.ee_head.to_dict(),
            "final_head": self.final_head.to_dict(),
        }
        if self.hop is not None:
            out["hop"] = self.hop.to_dict()
        if self.draft_step is not None:
            out["draft_step"] = self.draft_step.to_dict()
            out["draft_exit"] = self.draft_exit
        if self.notes is not None:
            out["notes"] = self.notes
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "batched") -> BatchedCosts:
        names = ("embed", "ee_head", "final_head", "hop", "draft_step")
        d = validate.mapping(where, data, ("layers", *names, "draft_exit", "notes"), ("layers",))
        layers, kw = _read_per_layer(d, where, names)
        return cls(layers=layers, notes=d.get("notes"), draft_exit=d.get("draft_exit"), **kw)


@dataclass(frozen=True)
class TensorParallel(_PerLayer):
    """Costs of a degree-k tensor-parallel split of the model over k devices: ``layers`` is
    one device's shard of each layer (all shards run at once), ``embed`` and ``final_head``
    the same for the embedding and the vocabulary-parallel LM head, ``allreduce`` the time of
    one all-reduce of ``tokens`` hidden states across the k devices (Megatron-style: two per
    layer, after attention and after the MLP). On a CPU, TP-k is AR with k cores in one
    process: the shard costs are that run's layer times and ``allreduces_per_layer`` is 0."""

    degree: int
    layers: tuple[LoadCost, ...]
    embed: LoadCost = ZERO
    final_head: LoadCost = ZERO
    allreduce: LoadCost = ZERO
    allreduces_per_layer: int = 2
    notes: str | None = None

    def __post_init__(self) -> None:
        validate.integer("tp.degree", self.degree, lo=2, hi=4096)
        object.__setattr__(self, "layers", _costs("tp", "layers", self.layers, None))
        for name in ("embed", "final_head", "allreduce"):
            _one("tp", name, getattr(self, name))
        validate.integer("tp.allreduces_per_layer", self.allreduces_per_layer, lo=0, hi=64)
        if self.notes is not None and not isinstance(self.notes, str):
            raise ConfigError("tp.notes", "must be a string")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "degree": self.degree,
            "layers": [c.to_dict() for c in self.layers],
            "embed": self.embed.to_dict(),
            "final_head": self.final_head.to_dict(),
            "allreduce": self.allreduce.to_dict(),
            "allreduces_per_layer": self.allreduces_per_layer,
        }
        if self.notes is not None:
            out["notes"] = self.notes
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "tp") -> TensorParallel:
        d = validate.mapping(
            where,
            data,
            (
                "degree",
                "layers",
                "embed",
                "final_head",
                "allreduce",
                "allreduces_per_layer",
                "notes",
            ),
            ("degree", "layers"),
        )
        layers, kw = _read_per_layer(d, where, ("embed", "final_head", "allreduce"))
        try:
            return cls(
                degree=d["degree"],
                layers=layers,
                allreduces_per_layer=d.get("allreduces_per_layer", 2),
                notes=d.get("notes"),
                **kw,
            )
        except ConfigError as err:
            raise rerooted(err, "tp", where) from None
