"""SchemeConfig: AR, EESD(exit, γ, cache reuse) or PPSD(stage boundaries, exit stage, devices),
and the two non-speculative ways to use k devices: PP-AR (k pipeline stages that different
sequences fill) and TP-AR (every layer split over k devices). The serving model
(``ppsd_sim.serving``) runs all five; the batch-1 ``simulate`` runs AR, EESD and PPSD."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.schema import open_record, rerooted, tag

SCHEMES = ("ar", "eesd", "ppsd", "pp_ar", "tp_ar")
#: the schemes that run on several devices at once, without speculation (serving baselines)
BASELINES_K = ("pp_ar", "tp_ar")


@dataclass(frozen=True)
class StageSpec:
    """One PPSD stage: its layer range ``[start, stop)`` and its roles. ``first`` embeds the
    token and drives the run; ``exit`` drafts the next token from its output with the
    early-exit head; ``last`` runs the final head and gives the verdict. Computed once by
    ``SchemeConfig.stages`` and passed down, so no part re-derives the geometry."""

    index: int  # 0-based
    start: int
    stop: int
    first: bool
    exit: bool
    last: bool
    device: int

    @property
    def layers(self) -> range:
        return range(self.start, self.stop)

    @property
    def n_layers(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class SchemeConfig:
    """A decoding scheme. Layer indices are 0-based counts: ``exit_layer = E`` means the first
    E layers draft. ``stage_boundaries`` lists each stage's end layer (exclusive), the last one
    equal to L; ``exit_stage`` is 1-based (1 = draft at the end of stage 1, the basic layout).
    ``devices`` maps each stage to a compute unit; stages that share one contend for it.
    ``max_inflight`` bounds the tokens of the sequence in flight at once (entered into stage 1,
    their verdict not yet committed); None means the real runner's default, k + 1 (see
    ``inflight_limit``).
    PP-AR (``pp_ar``) uses ``stage_boundaries`` like PPSD, one device per stage, no draft;
    TP-AR (``tp_ar``) splits every layer over ``tp_degree`` devices."""

    kind: str
    exit_layer: int | None = None
    gamma: int | None = None
    cache_reuse: bool = True
    stage_boundaries: tuple[int, ...] = ()
    exit_stage: int = 1
    devices: tuple[int, ...] | None = None
    max_inflight: int | None = None
    tp_degree: int | None = None

    def __post_init__(self) -> None:
        validate.choice("scheme.kind", self.kind, SCHEMES)
        if self.kind == "eesd":
            if self.exit_layer is None or self.gamma is None:
                raise ConfigError(
                    "scheme.exit_layer" if self.exit_layer is None else "scheme.gamma",
                    "is required for EESD",
                )
            validate.integer("scheme.exit_layer", self.exit_layer, lo=1)
            validate.integer("scheme.gamma", self.gamma, lo=1, hi=4096)
            validate.boolean("scheme.cache_reuse", self.cache_reuse)
        else:
            for name in ("exit_layer", "gamma"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"scheme.{name}", f"is only used by EESD, not {self.kind!r}")
        if self.kind == "tp_ar":
            if self.tp_degree is None:
                raise ConfigError("scheme.tp_degree", "is required for TP-AR")
            validate.integer("scheme.tp_degree", self.tp_degree, lo=2, hi=4096)
        elif self.tp_degree is not None:
            raise ConfigError("scheme.tp_degree", f"is only used by TP-AR, not {self.kind!r}")
        if self.kind in ("ppsd", "pp_ar"):
            b = validate.sequence("scheme.stage_boundaries", self.stage_boundaries, min_len=2)
            b = [
                validate.integer(f"scheme.stage_boundaries[{i}]", v, lo=1) for i, v in enumerate(b)
            ]
            for i in range(1, len(b)):
                if b[i] <= b[i - 1]:
                    raise ConfigError(
                        "scheme.stage_boundaries",
                        f"must be strictly increasing end layers (stages may not overlap or be empty), got {b}",
                    )
            object.__setattr__(self, "stage_boundaries", tuple(b))
        if self.kind == "pp_ar":
            for name, unused in (
                ("devices", self.devices is not None),
                ("exit_stage", self.exit_stage != 1),
                ("max_inflight", self.max_inflight is not None),
            ):
                if unused:
                    raise ConfigError(f"scheme.{name}", "is only used by PPSD, not 'pp_ar'")
        elif self.kind == "ppsd":
            validate.integer("scheme.exit_stage", self.exit_stage, lo=1, hi=len(b) - 1)
            if self.devices is not None:
                dev = validate.sequence("scheme.devices", self.devices)
                if len(dev) != len(b):
                    raise ConfigError(
                        "scheme.devices", f"needs one device per stage ({len(b)}), got {len(dev)}"
                    )
                dev = [validate.integer(f"scheme.devices[{i}]", v, lo=0) for i, v in enumerate(dev)]
                object.__setattr__(self, "devices", tuple(dev))
            if self.max_inflight is not None:
                validate.integer("scheme.max_inflight", self.max_inflight, lo=1, hi=10**6)
        else:
            if self.stage_boundaries:
                raise ConfigError(
                    "scheme.stage_boundaries", f"is only used by PPSD and PP-AR, not {self.kind!r}"
                )
            if self.devices is not None:
                raise ConfigError("scheme.devices", f"is only used by PPSD, not {self.kind!r}")
            if self.exit_stage != 1:
                raise ConfigError("scheme.exit_stage", f"is only used by PPSD, not {self.kind!r}")
            if self.max_inflight is not None:
                raise ConfigError("scheme.max_inflight", f"is only used by PPSD, not {self.kind!r}")

    # ---- constructors ---------------------------------------------------------------------
    @classmethod
    def ar(cls) -> SchemeConfig:
        return cls("ar")

    @classmethod
    def eesd(cls, exit_layer: int, gamma: int, cache_reuse: bool = True) -> SchemeConfig:
        return cls("eesd", exit_layer=exit_layer, gamma=gamma, cache_reuse=cache_reuse)

    @classmethod
    def ppsd(
        cls,
        stage_boundaries: list[int] | tuple[int, ...],
        exit_stage: int = 1,
        devices: list[int] | tuple[int, ...] | None = None,
        max_inflight: int | None = None,
    ) -> SchemeConfig:
        return cls(
            "ppsd",
            stage_boundaries=tuple(stage_boundaries),
            exit_stage=exit_stage,
            devices=None if devices is None else tuple(devices),
            max_inflight=max_inflight,
        )

    @classmethod
    def pp_ar(cls, stage_boundaries: list[int] | tuple[int, ...]) -> SchemeConfig:
        return cls("pp_ar", stage_boundaries=tuple(stage_boundaries))

    @classmethod
    def pp_ar_even(cls, n_layers: int, k: int) -> SchemeConfig:
        """PP-AR on k stages of (nearly) equal layer count (``ppsd_even``'s boundaries)."""
        return cls.pp_ar(cls.ppsd_even(n_layers, k).stage_boundaries)

    @classmethod
    def tp_ar(cls, degree: int) -> SchemeConfig:
        return cls("tp_ar", tp_degree=degree)

    @classmethod
    def ppsd_even(cls, n_layers: int, k: int, exit_stage: int = 1) -> SchemeConfig:
        """k stages of (nearly) equal layer count."""
        validate.integer("k", k, lo=2, hi=n_layers)
        return cls.ppsd([round(n_layers * (s + 1) / k) for s in range(k)], exit_stage)

    @classmethod
    def ppsd_split(
        cls,
        n_layers: int,
        k: int,
        exit_layer: int | None = None,
        devices: list[int] | tuple[int, ...] | None = None,
        *,
        stages_field: str = "stages",
        exit_field: str = "exit_layer",
    ) -> SchemeConfig:
        """The one rule that turns "k stages, exit after E layers" into stage boundaries (every
        CLI and tool uses it): stage 1 is layers [0, E) and drafts; layers [E, L) are split
        into k − 1 stages of (nearly) equal size. Without ``exit_layer``: k equal stages, exit
        after stage 1. Errors name ``stages_field`` / ``exit_field`` (the user's own flags)."""
        validate.integer("layers", n_layers, lo=1)
        if n_layers < 2:
            raise ConfigError(
                stages_field, f"PPSD needs a model of at least 2 layers, this one has {n_layers}"
            )
        validate.integer(stages_field, k, lo=2, hi=n_layers)
        if exit_layer is None:
            base = cls.ppsd_even(n_layers, k)
            return cls.ppsd(base.stage_boundaries, 1, devices)
        validate.integer(exit_field, exit_layer, lo=1, hi=n_layers - 1)
        rest = n_layers - exit_layer
        if rest < k - 1:
            raise ConfigError(
                stages_field,
                f"{k} stages need at least {k - 1} layers after the exit layer "
                f"{exit_layer}, the model has {rest} (L = {n_layers})",
            )
        later = [exit_layer + round(rest * s / (k - 1)) for s in range(1, k)]
        return cls.ppsd((exit_layer, *later), 1, devices)

    # ---- derived ---------------------------------------------------------------------------
    @property
    def n_stages(self) -> int:
        return len(self.stage_boundaries) if self.kind in ("ppsd", "pp_ar") else 1

    @property
    def n_devices(self) -> int:
        """Compute units the scheme occupies (PPSD: distinct devices of its stages)."""
        if self.kind == "tp_ar":
            assert self.tp_degree is not None  # required for TP-AR by __post_init__
            return int(self.tp_degree)
        if self.kind in ("ppsd", "pp_ar"):
            return len(set(self.stage_devices()))
        return 1

    @property
    def draft_exit_layer(self) -> int | None:
        """E, the number of layers the drafter runs (PPSD: end of the exit stage)."""
        if self.kind == "eesd":
            return self.exit_layer
        if self.kind == "ppsd":
            return self.stage_boundaries[self.exit_stage - 1]
        return None

    def stage_ranges(self) -> list[tuple[int, int]]:
        """[(start, stop), ...] layer ranges of the stages."""
        return [(st.start, st.stop) for st in self.stages()]

    def stages(self) -> tuple[StageSpec, ...]:
        """The pipeline stages (PPSD, PP-AR) with their layer ranges, roles and devices (see
        ``StageSpec``; PP-AR has no exit stage)."""
        if self.kind not in ("ppsd", "pp_ar"):
            raise ConfigError(
                "scheme.kind", f"only PPSD and PP-AR have pipeline stages, not {self.kind!r}"
            )
        b, k = self.stage_boundaries, len(self.stage_boundaries)
        dev = self.stage_devices()
        return tuple(
            StageSpec(
                index=s,
                start=0 if s == 0 else b[s - 1],
                stop=b[s],
                first=s == 0,
                exit=self.kind == "ppsd" and s == self.exit_stage - 1,
                last=s == k - 1,
                device=dev[s],
            )
            for s in range(k)
        )

    @property
    def inflight_limit(self) -> int:
        """Most tokens in flight at once (PPSD): ``max_inflight``, or k + 1 by default (the
        real runner's controller enters a token while at most k are in flight)."""
        if self.kind != "ppsd":
            raise ConfigError("scheme.kind", f"only PPSD has tokens in flight, not {self.kind!r}")
        return self.max_inflight if self.max_inflight is not None else self.n_stages + 1

    def stage_devices(self) -> tuple[int, ...]:
        return self.devices if self.devices is not None else tuple(range(self.n_stages))

    def check_layers(self, n_layers: int) -> None:
        """Refuse a scheme that does not fit a model of ``n_layers`` layers."""
        if self.kind == "eesd":
            assert self.exit_layer is not None  # required for EESD by __post_init__
            if not 1 <= self.exit_layer < n_layers:
                raise ConfigError(
                    "scheme.exit_layer",
                    f"must satisfy 1 <= E < L = {n_layers}, got {self.exit_layer}",
                )
        if self.kind in ("ppsd", "pp_ar") and self.stage_boundaries[-1] != n_layers:
            raise ConfigError(
                "scheme.stage_boundaries",
                f"must cover all {n_layers} layers (last boundary = {n_layers}), got {list(self.stage_boundaries)}",
            )

    def label(self) -> str:
        if self.kind == "ar":
            return "AR"
        if self.kind == "eesd":
            return f"EESD(E={self.exit_layer}, γ={self.gamma}{'' if self.cache_reuse else ', no reuse'})"
        if self.kind == "pp_ar":
            return f"PP-AR(k={self.n_stages})"
        if self.kind == "tp_ar":
            return f"TP-AR(k={self.tp_degree})"
        shared = "" if self.devices is None else f", devices={list(self.devices)}"
        bound = "" if self.max_inflight is None else f", in flight ≤ {self.max_inflight}"
        return f"PPSD(k={self.n_stages}, E={self.draft_exit_layer}{shared}{bound})"

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**tag("SchemeConfig"), "kind": self.kind}
        if self.kind == "eesd":
            out.update(exit_layer=self.exit_layer, gamma=self.gamma, cache_reuse=self.cache_reuse)
        if self.kind == "ppsd":
            out.update(stage_boundaries=list(self.stage_boundaries), exit_stage=self.exit_stage)
            if self.devices is not None:
                out["devices"] = list(self.devices)
            if self.max_inflight is not None:
                out["max_inflight"] = self.max_inflight
        if self.kind == "pp_ar":
            out["stage_boundaries"] = list(self.stage_boundaries)
        if self.kind == "tp_ar":
            out["tp_degree"] = self.tp_degree
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "scheme") -> SchemeConfig:
        fields = (
            "kind",
            "exit_layer",
            "gamma",
            "cache_reuse",
            "stage_boundaries",
            "exit_stage",
            "devices",
            "max_inflight",
            "tp_degree",
        )
        d = open_record(data, "SchemeConfig", where, fields, ("kind",))
        for name in ("stage_boundaries", "devices"):
            if d.get(name) is not None:
                d[name] = tuple(validate.sequence(validate.join(where, name), d[name]))
        try:
            return cls(**d)
        except ConfigError as err:
            raise rerooted(err, "scheme", where) from None
