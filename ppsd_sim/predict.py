"""Predict a measured run from its profile: the one recipe calibration and ``ppsd report`` share.

A measured speedup is held against the simulator run on the profile alone (``engine="auto"``,
AR on the same profile as the baseline), with the acceptance the run asked for or, replayed,
the accept/reject trace it saw (acceptance noise then drops out). Whatever the prediction rests
on that the profile did not measure is said in ``flags`` (``range_flags``), never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from ppsd_sim.costs import eesd_costs
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.decoding import GREEDY, DecodingSettings
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.run_record import RunRecord
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.simulate import simulate

DEFAULT_TOKENS = 20_000


@dataclass(frozen=True)
class Prediction:
    """A predicted speedup over AR on the same profile, the engine that computed it, and where
    it leaves what was measured."""

    speedup: float
    engine: str
    flags: tuple[str, ...] = ()


def verify_extrapolation(profile: HardwareProfile, scheme: SchemeConfig) -> str | None:
    """The flag for an EESD verification longer than any the profile measured, else None."""
    if scheme.kind == "eesd" and eesd_costs(profile, scheme).verify_extrapolated:
        assert scheme.gamma is not None  # an EESD scheme always has γ
        return (
            f"verify of {scheme.gamma + 1} tokens extrapolated beyond {profile.verify_tokens[-1]}"
        )
    return None


def range_flags(
    profile: HardwareProfile, scheme: SchemeConfig, decoding: DecodingSettings = GREEDY
) -> tuple[str, ...]:
    """Where a prediction of ``scheme`` rests on something ``profile`` did not measure: an
    extrapolated verify size, an unprofiled hop, stage latencies taken from full-model steps
    with no contention figure, sampled decoding without sampling costs, or a profile that is
    not a measurement at all."""
    flags: list[str] = []
    if not decoding.greedy and profile.sampling is None:
        flags.append("sampling costs not profiled (0): the profile was measured greedy")
    verify = verify_extrapolation(profile, scheme)
    if verify:
        flags.append(verify)
    if scheme.kind == "ppsd":
        if profile.hop.median == 0.0:
            flags.append("hop latency not profiled (0)")
        if (
            profile.provenance.latency_context == "full_model"
            and profile.concurrency_slowdown == 1.0
        ):
            flags.append("stage latencies from full-model steps; no concurrency slowdown profiled")
    if profile.provenance.source != "measured":
        flags.append(f"profile is {profile.provenance.source}, not measured")
    return tuple(flags)


def predict(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    acceptance: AcceptanceSpec | None,
    *,
    tokens: int = DEFAULT_TOKENS,
    seed: int = 0,
) -> Prediction:
    """Simulated speedup of ``scheme`` over AR on ``profile`` (AR itself: 1 by definition),
    both decoded as ``acceptance`` was measured (its ``decoding``)."""
    decoding = acceptance.decoding if acceptance is not None else GREEDY
    flags = range_flags(profile, scheme, decoding)
    if scheme.kind == "ar":
        return Prediction(1.0, "analytic", flags)
    rec = simulate(profile, scheme, acceptance, tokens=tokens, seed=seed, engine="auto").record
    assert rec.speedup is not None  # a simulated record always names its baseline
    return Prediction(float(rec.speedup), rec.engine, flags)


def _baseline_flag(run: RunRecord, profile: HardwareProfile) -> str | None:
    """The measured speedup should use the AR the profile describes (same decoder, threads)."""
    threads = profile.provenance.threads
    if run.baseline == "generate":
        return "measured against model.generate, predicted against AR on the profile"
    if run.baseline == "ar_1thread" and threads not in (None, 1):
        return f"measured against AR on 1 thread, the profile used {threads}"
    if run.baseline == "ar_all_cores" and threads == 1:
        return "measured against AR on all cores, the profile used 1 thread"
    return None


def predict_run(
    run: RunRecord,
    *,
    profile: HardwareProfile | None = None,
    replay: bool = False,
    tokens: int = DEFAULT_TOKENS,
    seed: int = 0,
) -> Prediction:
    """Predict a measured run's speedup from its profile (``profile`` when the run carries
    none). Acceptance: the run's own spec, else i.i.d. at its observed rate (flagged); with
    ``replay`` its recorded accept/reject trace. Raises ConfigError when nothing to predict
    from was recorded."""
    prof = run.profile or profile
    if prof is None:
        raise ConfigError("profile", "the run carries no profile")
    flags: list[str] = []
    acc = run.acceptance
    obs = run.acceptance_observed
    if run.scheme.kind == "ar":
        acc = None
    elif replay:
        if obs is None or not obs.trace:
            raise ConfigError("acceptance_observed.trace", "the run recorded no trace to replay")
        acc = AcceptanceSpec.from_trace(obs.trace)
    elif acc is None:
        if obs is None or not obs.judged:
            raise ConfigError("acceptance", "the run records no acceptance")
        acc = AcceptanceSpec.iid(obs.rate)
        flags.append(f"acceptance taken as i.i.d. at the observed rate {obs.rate:.3f}")
    if acc is not None and not run.sampling.greedy:
        acc = acc.with_decoding(run.sampling.decoding)
    base = _baseline_flag(run, prof)
    if base:
        flags.append(base)
    pred = predict(prof, run.scheme, acc, tokens=tokens, seed=seed)
    return Prediction(pred.speedup, pred.engine, (*flags, *pred.flags))
