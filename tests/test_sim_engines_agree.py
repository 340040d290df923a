"""The exact fast path against the SimPy reference on the same acceptance sequence."""

from __future__ import annotations

import numpy as np
import pytest

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.simulate import simulate

PROFILE = HardwareProfile.uniform(
    24,
    1e-3,
    1.5,
    ee_head=0.4e-3,
    hop=1.5e-4,
    tick=6e-5,
    flush=2.5e-4,
    verify_tokens=(1, 4, 16),
    verify_factor=(1.0, 1.2, 2.0),
)
rng = np.random.default_rng(5)
TRACE = AcceptanceSpec.from_trace(tuple(int(x) for x in (rng.random(997) < 0.75)))

CASES = [
    (SchemeConfig.ppsd_even(24, 2), TRACE),
    (SchemeConfig.ppsd_even(24, 4), TRACE),
    (
        SchemeConfig.ppsd([2, 20, 24]),
        TRACE,
    ),  # short first stage: the draft loop is not the bottleneck
    (SchemeConfig.ppsd([10, 12, 18, 24], exit_stage=2), TRACE),  # draft after stage 2
    (SchemeConfig.ppsd_even(24, 8), AcceptanceSpec.markov(0.8, 0.6)),
    (SchemeConfig.ppsd_even(24, 3), AcceptanceSpec.per_position([0.95, 0.8, 0.6])),
    (SchemeConfig.ppsd_even(24, 4), AcceptanceSpec.iid(1.0)),
    (SchemeConfig.ppsd_even(24, 4), AcceptanceSpec.iid(0.0)),
    (SchemeConfig.eesd(6, 4), TRACE),
    (SchemeConfig.eesd(12, 1), AcceptanceSpec.histogram([5, 3, 8])),
    (SchemeConfig.eesd(6, 8, cache_reuse=False), AcceptanceSpec.markov(0.7, 0.3)),
    (SchemeConfig.ar(), None),
]


@pytest.mark.parametrize(
    ("scheme", "acc"), CASES, ids=[f"{s.label()}-{a.kind if a else ''}" for s, a in CASES]
)
@pytest.mark.parametrize("tokens", (1, 7, 3001))
def test_fast_path_equals_simpy(scheme, acc, tokens):
    ref = simulate(PROFILE, scheme, acc, tokens=tokens, seed=4, engine="simpy").record
    fast = simulate(PROFILE, scheme, acc, tokens=tokens, seed=4, engine="fast").record
    assert fast.engine == "fast" and ref.engine == "simpy"
    assert fast.tokens == ref.tokens == tokens
    assert fast.time_s == pytest.approx(ref.time_s, rel=1e-9, abs=1e-12)
    assert fast.flushes == ref.flushes
    assert fast.rounds == ref.rounds
    assert fast.acceptance_observed == ref.acceptance_observed
    assert fast.stage_busy_s == pytest.approx(ref.stage_busy_s, rel=1e-9, abs=1e-12)
    assert fast.stage_wasted_s == pytest.approx(ref.stage_wasted_s, rel=1e-9, abs=1e-12)


def test_fast_path_refuses_shared_devices_and_auto_falls_back():
    scheme = SchemeConfig.ppsd([6, 12, 18, 24], devices=[0, 0, 1, 1])
    with pytest.raises(ConfigError, match="engine"):
        simulate(PROFILE, scheme, AcceptanceSpec.iid(0.8), tokens=100, engine="fast")
    assert (
        simulate(PROFILE, scheme, AcceptanceSpec.iid(0.8), tokens=100, engine="auto").record.engine
        == "simpy"
    )
    assert (
        simulate(
            PROFILE,
            SchemeConfig.ppsd_even(24, 4),
            AcceptanceSpec.iid(0.8),
            tokens=100,
            engine="auto",
        ).record.engine
        == "fast"
    )


def test_trace_replay_is_the_recorded_sequence():
    # a trace accept/reject pattern drives both engines exactly: 1,1,0 repeated gives runs of 2
    spec = AcceptanceSpec.from_trace([1, 1, 0])
    rec = simulate(PROFILE, SchemeConfig.ppsd_even(24, 2), spec, tokens=3 * 50 + 1).record
    obs = rec.acceptance_observed
    assert rec.flushes == 50
    assert (obs.judged, obs.accepted) == (150, 100)
