"""HardwareProfile: the latencies of one model on one machine, and where they came from."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.decoding import DecodingSettings
from ppsd_sim.records.load_cost import BatchedCosts, LoadCost, TensorParallel
from ppsd_sim.records.sampling_cost import GREEDY_CHOICE, SamplingCosts, TokenChoice
from ppsd_sim.records.schema import open_record, tag
from ppsd_sim.records.timing import Timing, timing

SOURCES = ("measured", "synthesised", "hand", "example")
LATENCY_CONTEXTS = ("full_model", "per_stage", "unknown")


@dataclass(frozen=True)
class Provenance:
    """Where a profile was measured (or that it was not). Every stored measurement has one."""

    source: str = "hand"
    device: str | None = None
    cores: int | None = None
    threads: int | None = None
    torch: str | None = None
    transformers: str | None = None
    dtype: str | None = None
    model: str | None = None
    commit: str | None = None
    date: str | None = None
    latency_context: str = "unknown"
    notes: str | None = None

    def __post_init__(self) -> None:
        validate.choice("provenance.source", self.source, SOURCES)
        validate.choice("provenance.latency_context", self.latency_context, LATENCY_CONTEXTS)
        for name in ("cores", "threads"):
            v = getattr(self, name)
            if v is not None:
                validate.integer(f"provenance.{name}", v, lo=1)
        for name in (
            "device",
            "torch",
            "transformers",
            "dtype",
            "model",
            "commit",
            "date",
            "notes",
        ):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise ConfigError(f"provenance.{name}", f"must be a string, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "provenance") -> Provenance:
        """Unknown keys are refused; value errors name ``provenance.<field>``."""
        return cls(**validate.mapping(where, data, [f.name for f in fields(cls)]))


@dataclass(frozen=True)
class HardwareProfile:
    """Per-component decode latencies of one model on one machine (seconds).

    ``layer_decode[i]`` is layer i's latency for one token. Verifying n tokens at once costs
    ``factor(n)`` times the one-token latency, with ``factor`` interpolated from
    (``verify_tokens``, ``verify_factor``); it applies to layers and heads alike.
    ``concurrency_slowdown`` (>= 1) multiplies stage compute while pipeline stages run at once
    on separate compute units that still share memory or caches (measured on CPUs: 1.04–1.13).

    Optional, for the serving model only (the batch-1 engines never read them, so batch-1
    results do not depend on them): ``batched``, the step costs under load (tokens in the
    step, KV tokens read; see ``load_cost``), and ``tp``, tensor-parallel costs per degree.
    Optional, for sampled what-ifs only: ``sampling``, the per-vector cost of choosing a token
    at temperature > 0 (see ``sampling_cost``; greedy predictions never read it).
    """

    layer_decode: tuple[Timing, ...]
    ee_head: Timing
    final_head: Timing
    embed: Timing = Timing(0.0)
    hop: Timing = Timing(0.0)
    tick: Timing = Timing(0.0)
    flush: Timing = Timing(0.0)
    verify_tokens: tuple[int, ...] = (1,)
    verify_factor: tuple[float, ...] = (1.0,)
    concurrency_slowdown: float = 1.0
    provenance: Provenance = field(default_factory=Provenance)
    batched: BatchedCosts | None = None
    tp: tuple[TensorParallel, ...] = ()
    sampling: SamplingCosts | None = None

    def __post_init__(self) -> None:
        layers = tuple(
            timing(t) for t in validate.sequence("layer_decode", self.layer_decode, min_len=1)
        )
        object.__setattr__(self, "layer_decode", layers)
        for name in ("ee_head", "final_head", "embed", "hop", "tick", "flush"):
            object.__setattr__(self, name, timing(getattr(self, name)))
        toks = [
            validate.integer(f"verify_tokens[{i}]", v, lo=1)
            for i, v in enumerate(validate.sequence("verify_tokens", self.verify_tokens, min_len=1))
        ]
        facs = [
            validate.number(f"verify_factor[{i}]", v, lo=0.0, lo_open=True)
            for i, v in enumerate(validate.sequence("verify_factor", self.verify_factor, min_len=1))
        ]
        if len(toks) != len(facs):
            raise ConfigError(
                "verify_factor",
                f"needs one value per verify_tokens entry ({len(toks)}), got {len(facs)}",
            )
        if any(b <= a for a, b in itertools.pairwise(toks)):
            raise ConfigError("verify_tokens", f"must be strictly increasing, got {toks}")
        if toks[0] != 1 or abs(facs[0] - 1.0) > 1e-9:
            raise ConfigError(
                "verify_tokens", "must start at 1 token with factor 1.0 (the decode latency)"
            )
        object.__setattr__(self, "verify_tokens", tuple(toks))
        object.__setattr__(self, "verify_factor", tuple(facs))
        object.__setattr__(
            self,
            "concurrency_slowdown",
            validate.number("concurrency_slowdown", self.concurrency_slowdown, lo=1.0),
        )
        if not isinstance(self.provenance, Provenance):
            raise ConfigError("provenance", "must be a Provenance")
        if self.batched is not None:
            if not isinstance(self.batched, BatchedCosts):
                raise ConfigError("batched", "must be a BatchedCosts")
            self.batched.check_layers(len(layers), "batched")
        tps = validate.sequence("tp", self.tp)
        for i, t in enumerate(tps):
            if not isinstance(t, TensorParallel):
                raise ConfigError(f"tp[{i}]", "must be a TensorParallel")
            t.check_layers(len(layers), f"tp[{i}]")
        degrees = [t.degree for t in tps]
        if len(set(degrees)) != len(degrees):
            raise ConfigError("tp", f"holds one entry per degree, got degrees {degrees}")
        object.__setattr__(self, "tp", tuple(tps))
        if self.sampling is not None and not isinstance(self.sampling, SamplingCosts):
            raise ConfigError("sampling", "must be a SamplingCosts")

    # ---- derived quantities -------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layer_decode)

    def layers_time(self, start: int, stop: int) -> float:
        """Median decode latency of layers[start:stop] for one token."""
        return float(sum(t.median for t in self.layer_decode[start:stop]))

    def ar_token_time(self) -> float:
        """T: one AR token through embedding, all layers and the final head, plus one tick."""
        return (
            self.embed.median
            + self.layers_time(0, self.n_layers)
            + self.final_head.median
            + self.tick.median
        )

    def token_choice(self, decoding: DecodingSettings) -> TokenChoice:
        """What choosing a token adds per vector under ``decoding``: nothing when greedy or
        when the profile measured no sampling costs (``range_flags`` says so then)."""
        if decoding.greedy or self.sampling is None:
            return GREEDY_CHOICE
        s = self.sampling
        return TokenChoice(s.warp.median, s.draw.median, s.judge.median)

    def factor(self, n_tokens: int) -> float:
        """Latency multiplier for processing ``n_tokens`` at once (linear interpolation;
        linear extrapolation past the last profiled point, see ``profiled_verify``)."""
        if n_tokens < 1:
            raise ConfigError("n_tokens", f"must be >= 1, got {n_tokens}")
        xs, ys = self.verify_tokens, self.verify_factor
        if n_tokens <= xs[-1]:
            return float(np.interp(n_tokens, xs, ys))
        if len(xs) == 1:
            return float(ys[0])
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return float(ys[-1] + slope * (n_tokens - xs[-1]))

    def profiled_verify(self, n_tokens: int) -> bool:
        """False when ``factor(n_tokens)`` is an extrapolation beyond the measured range."""
        return n_tokens <= self.verify_tokens[-1]

    def load_costs(self) -> BatchedCosts:
        """Step costs under load: ``batched`` if the profile has it, else derived from the
        batch-1 numbers: a step of n tokens costs ``factor(n)`` × the one-token latency of
        each layer and head (the batch-1 verify rule, as a grid on ``verify_tokens``, so it
        extends past the last point exactly as ``factor`` does), whatever the KV read."""
        if self.batched is not None:
            return self.batched
        toks, facs = self.verify_tokens, self.verify_factor

        def grid(t: Timing) -> LoadCost:
            return LoadCost(tokens=toks, kv=(0,), table=tuple((t.median * f,) for f in facs))

        return BatchedCosts(
            layers=tuple(grid(t) for t in self.layer_decode),
            embed=grid(self.embed),
            ee_head=grid(self.ee_head),
            final_head=grid(self.final_head),
            notes="derived: batch-1 latency × verify factor(tokens in the step); KV-independent",
        )

    def tensor_parallel(self, degree: int, field: str = "scheme.tp_degree") -> TensorParallel:
        """The profile's tensor-parallel costs for ``degree`` devices (refused by name if
        absent: TP costs are measured with that many threads, or synthesised)."""
        for t in self.tp:
            if t.degree == degree:
                return t
        have = ", ".join(str(t.degree) for t in self.tp) or "none"
        raise ConfigError(
            field,
            f"the profile has no tensor-parallel costs for {degree} devices (it has: {have}); "
            "give a profile measured with that many threads or a synthesised one with TP costs",
        )

    # ---- constructors ---------------------------------------------------------------------
    @classmethod
    def uniform(
        cls,
        n_layers: int,
        t_layer: float,
        head_fraction: float = 0.0,
        *,
        ee_head: float | None = None,
        hop: float = 0.0,
        tick: float = 0.0,
        flush: float = 0.0,
        verify_factor: tuple[float, ...] | None = None,
        verify_tokens: tuple[int, ...] | None = None,
        provenance: Provenance | None = None,
    ) -> HardwareProfile:
        """Quick what-if profile: L equal layers, final head = ``head_fraction`` × one layer,
        EE head = final head unless given (LayerSkip-style shared head)."""
        n_layers = validate.integer("n_layers", n_layers, lo=1)
        t_layer = validate.number("t_layer", t_layer, lo=0.0)
        head = t_layer * validate.number("head_fraction", head_fraction, lo=0.0)
        return cls(
            layer_decode=tuple(Timing(t_layer) for _ in range(n_layers)),
            ee_head=Timing(
                head if ee_head is None else validate.number("ee_head", ee_head, lo=0.0)
            ),
            final_head=Timing(head),
            hop=Timing(validate.number("hop", hop, lo=0.0)),
            tick=Timing(validate.number("tick", tick, lo=0.0)),
            flush=Timing(validate.number("flush", flush, lo=0.0)),
            verify_tokens=verify_tokens or (1,),
            verify_factor=verify_factor or (1.0,),
            provenance=provenance or Provenance(source="hand"),
        )

    def with_costs(self, **changes: Any) -> HardwareProfile:
        """A copy with some fields replaced (numbers become Timings)."""
        new: dict[str, Any] = {
            k: (timing(v) if k in _TIMING_FIELDS else v) for k, v in changes.items()
        }
        return replace(self, **new)

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            **tag("HardwareProfile"),
            "layer_decode": [t.to_dict() for t in self.layer_decode],
            **{name: getattr(self, name).to_dict() for name in _TIMING_FIELDS},
            "verify_tokens": list(self.verify_tokens),
            "verify_factor": list(self.verify_factor),
            "concurrency_slowdown": self.concurrency_slowdown,
            "provenance": self.provenance.to_dict(),
            **({"batched": self.batched.to_dict()} if self.batched is not None else {}),
            **({"tp": [t.to_dict() for t in self.tp]} if self.tp else {}),
            **({"sampling": self.sampling.to_dict()} if self.sampling is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> HardwareProfile:
        fields = (
            "layer_decode",
            *_TIMING_FIELDS,
            "verify_tokens",
            "verify_factor",
            "concurrency_slowdown",
            "provenance",
            "batched",
            "tp",
            "sampling",
        )
        d = open_record(
            data, "HardwareProfile", where, fields, ("layer_decode", "ee_head", "final_head")
        )
        j = lambda name: validate.join(where, name)  # noqa: E731
        try:
            layers = tuple(
                Timing.from_dict(t, f"{j('layer_decode')}[{i}]")
                for i, t in enumerate(
                    validate.sequence(j("layer_decode"), d["layer_decode"], min_len=1)
                )
            )
            kwargs: dict[str, Any] = {
                n: Timing.from_dict(d[n], j(n)) for n in _TIMING_FIELDS if n in d
            }
            prov = Provenance.from_dict(d.get("provenance", {}), j("provenance"))
            if "batched" in d:
                kwargs["batched"] = BatchedCosts.from_dict(d["batched"], j("batched"))
            if "tp" in d:
                kwargs["tp"] = tuple(
                    TensorParallel.from_dict(t, f"{j('tp')}[{i}]")
                    for i, t in enumerate(validate.sequence(j("tp"), d["tp"]))
                )
            if "sampling" in d:
                kwargs["sampling"] = SamplingCosts.from_dict(d["sampling"], j("sampling"))
            return cls(
                layer_decode=layers,
                verify_tokens=tuple(d.get("verify_tokens", (1,))),
                verify_factor=tuple(d.get("verify_factor", (1.0,))),
                concurrency_slowdown=d.get("concurrency_slowdown", 1.0),
                provenance=prov,
                **kwargs,
            )
        except ConfigError as err:
            if where and not err.field.startswith(where):
                raise err.within(where) from None
            raise


_TIMING_FIELDS = ("ee_head", "final_head", "embed", "hop", "tick", "flush")
