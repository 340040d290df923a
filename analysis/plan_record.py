"""The capacity plan as a versioned record: ``Candidate`` (one ranked configuration) and
``Plan`` (the answer to one planning question), written by ``ppsd plan --out`` as a
``CapacityPlan`` and read back, validated field by field, by ``ppsd report``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from analysis.curves import AcceptanceCurve
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.profile import SOURCES
from ppsd_sim.records.schema import open_record, tag
from ppsd_sim.records.scheme import SCHEMES, SchemeConfig

RECORD = "CapacityPlan"
TARGETS = ("max_speed", "min_devices")
ALPHA_STATUSES = ("given", "interpolated", "extrapolated", "n/a")
CANDIDATE_FIELDS = (
    "scheme", "label", "devices", "alpha", "alpha_status", "tokens_per_s", "speedup", "status",
    "break_even_alpha", "speedup_alpha_minus", "speedup_alpha_plus", "simulated_speedup",
    "simulated_engine", "notes",
)  # fmt: skip
PLAN_REQUIRED = (
    "target", "devices", "ar_tokens_per_s", "evaluated", "profile_source", "curve", "candidates",
)  # fmt: skip
PLAN_FIELDS = (
    *PLAN_REQUIRED,
    "min_tokens_per_s",
    "message",
    "sim_tokens",
    "memory",
    "best_per_scheme",
)


def _opt_number(where: str, v: Any, **bounds: Any) -> float | None:
    return None if v is None else validate.number(where, v, **bounds)


def _opt_text(where: str, v: Any) -> str | None:
    if v is not None and not isinstance(v, str):
        raise ConfigError(where, f"must be a string, got {v!r}")
    return v


@dataclass(frozen=True)
class Candidate:
    """One configuration with its predicted speed and how much the prediction can be trusted."""

    scheme: SchemeConfig
    devices: int
    alpha: float | None
    tokens_per_s: float
    speedup: float
    alpha_status: str = "given"  # given | interpolated | extrapolated | n/a
    break_even_alpha: float | None = None
    speedup_alpha_lo: float | None = None
    speedup_alpha_hi: float | None = None
    simulated_speedup: float | None = None
    simulated_engine: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """predicted, or extrapolated when an input lies outside what was measured/given."""
        return "extrapolated" if self.alpha_status == "extrapolated" or self.notes else "predicted"

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme.to_dict(),
            "label": self.scheme.label(),
            "devices": self.devices,
            "alpha": self.alpha,
            "alpha_status": self.alpha_status,
            "tokens_per_s": self.tokens_per_s,
            "speedup": self.speedup,
            "status": self.status,
            "break_even_alpha": self.break_even_alpha,
            "speedup_alpha_minus": self.speedup_alpha_lo,
            "speedup_alpha_plus": self.speedup_alpha_hi,
            "simulated_speedup": self.simulated_speedup,
            "simulated_engine": self.simulated_engine,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Candidate:
        """Validated (the planner builds candidates itself and skips this on its hot path)."""
        j = validate.join
        d = validate.mapping(
            where,
            data,
            CANDIDATE_FIELDS,
            ("scheme", "devices", "tokens_per_s", "speedup"),
        )
        scheme = SchemeConfig.from_dict(d["scheme"], j(where, "scheme"))
        devices = validate.integer(j(where, "devices"), d["devices"], lo=1)
        need = scheme.n_devices
        if devices != need:
            raise ConfigError(j(where, "devices"), f"{scheme.label()} uses {need}, got {devices}")
        alpha = d.get("alpha")
        speculative = scheme.draft_exit_layer is not None  # EESD, PPSD draft; AR, PP-AR, TP-AR not
        if not speculative and alpha is not None:
            raise ConfigError(j(where, "alpha"), f"{scheme.label()} drafts nothing; must be null")
        if speculative and alpha is None:
            raise ConfigError(j(where, "alpha"), f"is required for {scheme.kind.upper()}")
        notes = validate.sequence(j(where, "notes"), d.get("notes", []))
        return cls(
            scheme=scheme,
            devices=devices,
            alpha=None if alpha is None else validate.probability(j(where, "alpha"), alpha),
            tokens_per_s=validate.number(
                j(where, "tokens_per_s"), d["tokens_per_s"], lo=0.0, lo_open=True
            ),
            speedup=validate.number(j(where, "speedup"), d["speedup"], lo=0.0, lo_open=True),
            alpha_status=validate.choice(
                j(where, "alpha_status"), d.get("alpha_status", "given"), ALPHA_STATUSES
            ),
            break_even_alpha=_opt_number(
                j(where, "break_even_alpha"), d.get("break_even_alpha"), lo=0.0, hi=1.0
            ),
            speedup_alpha_lo=_opt_number(
                j(where, "speedup_alpha_minus"), d.get("speedup_alpha_minus"), lo=0.0
            ),
            speedup_alpha_hi=_opt_number(
                j(where, "speedup_alpha_plus"), d.get("speedup_alpha_plus"), lo=0.0
            ),
            simulated_speedup=_opt_number(
                j(where, "simulated_speedup"), d.get("simulated_speedup"), lo=0.0
            ),
            simulated_engine=_opt_text(j(where, "simulated_engine"), d.get("simulated_engine")),
            notes=tuple(_opt_text(j(where, f"notes[{i}]"), n) or "" for i, n in enumerate(notes)),
        )


@dataclass(frozen=True)
class Plan:
    """The ranked answer of one planning question, with the question itself."""

    candidates: tuple[Candidate, ...]
    best_per_scheme: dict[str, Candidate]
    target: str
    devices: int
    min_tokens_per_s: float | None
    ar_tokens_per_s: float
    evaluated: int
    curve: AcceptanceCurve
    profile_source: str
    message: str = ""
    sim_tokens: int = 0
    memory: str = ""  # the weight budget checked, in words ("" when memory was not checked)

    @property
    def met(self) -> bool:
        return bool(self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return {
            **tag(RECORD),
            "target": self.target,
            "devices": self.devices,
            "min_tokens_per_s": self.min_tokens_per_s,
            "ar_tokens_per_s": self.ar_tokens_per_s,
            "evaluated": self.evaluated,
            "profile_source": self.profile_source,
            "curve": self.curve.to_dict(),
            "message": self.message,
            "sim_tokens": self.sim_tokens,
            "memory": self.memory or None,
            "candidates": [c.to_dict() for c in self.candidates],
            "best_per_scheme": {k: c.to_dict() for k, c in self.best_per_scheme.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Plan:
        """Read a saved plan, refusing a missing tag, another version or any bad field."""
        j = validate.join
        d = open_record(
            data,
            RECORD,
            where,
            PLAN_FIELDS,
            PLAN_REQUIRED,
        )
        devices = validate.integer(j(where, "devices"), d["devices"], lo=1)
        target = validate.choice(j(where, "target"), d["target"], TARGETS)
        mtps = _opt_number(
            j(where, "min_tokens_per_s"), d.get("min_tokens_per_s"), lo=0.0, lo_open=True
        )
        if target == "min_devices" and mtps is None:
            raise ConfigError(j(where, "min_tokens_per_s"), "is required for target 'min_devices'")
        cands = [
            Candidate.from_dict(c, j(where, f"candidates[{i}]"))
            for i, c in enumerate(validate.sequence(j(where, "candidates"), d["candidates"]))
        ]
        for i, c in enumerate(cands):
            if c.devices > devices:
                raise ConfigError(
                    j(where, f"candidates[{i}].devices"),
                    f"uses {c.devices} devices, more than the plan's {devices}",
                )
        best = d.get("best_per_scheme", {})
        if not isinstance(best, Mapping):
            raise ConfigError(j(where, "best_per_scheme"), "must be an object")
        best_c: dict[str, Candidate] = {}
        for k, v in best.items():
            w = j(where, f"best_per_scheme.{k}")
            validate.choice(w, k, SCHEMES)
            best_c[k] = Candidate.from_dict(v, w)
            if best_c[k].scheme.kind != k:
                raise ConfigError(w, f"holds a {best_c[k].scheme.kind.upper()} configuration")
        message = _opt_text(j(where, "message"), d.get("message", "")) or ""
        return cls(
            candidates=tuple(cands),
            best_per_scheme=best_c,
            target=target,
            devices=devices,
            min_tokens_per_s=mtps,
            ar_tokens_per_s=validate.number(
                j(where, "ar_tokens_per_s"), d["ar_tokens_per_s"], lo=0.0, lo_open=True
            ),
            evaluated=validate.integer(j(where, "evaluated"), d["evaluated"], lo=0),
            curve=AcceptanceCurve.from_dict(d["curve"], j(where, "curve")),
            profile_source=validate.choice(
                j(where, "profile_source"), d["profile_source"], SOURCES
            ),
            message=message,
            sim_tokens=validate.integer(j(where, "sim_tokens"), d.get("sim_tokens", 0), lo=0),
            memory=_opt_text(j(where, "memory"), d.get("memory")) or "",
        )
