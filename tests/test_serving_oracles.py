"""The serving model against its oracles (issue 11): one request at batch 1 is the batch-1
simulator; speculation at α = 0 never beats its twin; PP-AR reaches k × AR; closed forms at
a fixed batch; Little's law; and the scheduler's own rules (batch, KV budget, FIFO)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ppsd_sim import costs
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.records.load_cost import BatchedCosts, LoadCost
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.records.workload import Arrivals, LengthDist, Request, Workload
from ppsd_sim.serving import compare_serving, simulate_serving, twin
from ppsd_sim.serving.closed_form import eesd_tokens_per_s, lockstep_time, pp_ar_tokens_per_s
from ppsd_sim.serving.example import example_serving_profile
from ppsd_sim.serving.step_costs import device_steps, stage_steps
from ppsd_sim.simulate import simulate

# the batch-1 engine test's profile: ticks, hops, crops and a verify factor
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
# the same latencies as a KV-free linear load cost a + b·n with a = 4b everywhere, and the
# batch-1 verify factor that says the same, (4 + n) / 5: consistent at every size
LINEAR = replace(
    HardwareProfile.uniform(
        24,
        1e-3,
        1.5,
        ee_head=0.4e-3,
        hop=1.5e-4,
        tick=6e-5,
        flush=2.5e-4,
        verify_tokens=(1, 2),
        verify_factor=(1.0, 1.2),
    ),
    batched=BatchedCosts(
        layers=(LoadCost(a=0.8e-3, b=0.2e-3),),
        ee_head=LoadCost(a=0.32e-3, b=0.08e-3),
        final_head=LoadCost(a=1.2e-3, b=0.3e-3),
    ),
)
rng = np.random.default_rng(5)
TRACE = AcceptanceSpec.from_trace(tuple(int(x) for x in (rng.random(997) < 0.75)))

SCHEMES = [
    SchemeConfig.ar(),
    SchemeConfig.eesd(6, 4),
    SchemeConfig.eesd(6, 8, cache_reuse=False),
    SchemeConfig.ppsd_even(24, 4),
    SchemeConfig.ppsd([10, 12, 18, 24], exit_stage=2),
    SchemeConfig.ppsd([2, 20, 24], max_inflight=10**6),  # slow later stage, unbounded
    SchemeConfig.ppsd_even(24, 8),
]
ACCS = [TRACE, AcceptanceSpec.markov(0.8, 0.6), AcceptanceSpec.iid(1.0), AcceptanceSpec.iid(0.0)]


def one_request(acc, out, prompt=10):
    return Workload(
        count=1, prompt=LengthDist.fixed(prompt), output=LengthDist.fixed(out), acceptance=acc
    )


@pytest.mark.parametrize("profile", [PROFILE, LINEAR], ids=["factor", "linear"])
@pytest.mark.parametrize(
    "acc", ACCS, ids=lambda a: a.kind + (f"{a.alpha}" if a.alpha is not None else "")
)
@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: s.label())
def test_one_request_at_batch_1_is_the_batch_1_model(profile, acc, scheme):
    """Decode phase (first token → last token; a pipeline's first token needs one hop back
    to stage 1) equals ``simulate`` of output − 1 tokens on the same acceptance sequence."""
    for out in (2, 301):
        for policy in ("real_first", "greedy"):
            r = simulate_serving(
                profile,
                scheme,
                one_request(acc, out),
                ServingSettings(max_batch=1, policy=policy),
                seed=4,
                keep_requests=True,
            )
            ref = simulate(
                profile, scheme, acc if scheme.kind != "ar" else None, tokens=out - 1, seed=4
            ).record
            back = profile.hop.median if scheme.kind == "ppsd" else 0.0
            t = r.per_request.finish[0] - r.per_request.first[0] - back
            assert t == pytest.approx(ref.time_s, rel=1e-9, abs=1e-12)
            assert r.flushes == ref.flushes
            wasted = [f * r.duration_s for f in r.stage_wasted_fraction]
            if scheme.kind == "eesd":
                assert wasted == pytest.approx(list(ref.stage_wasted_s), rel=1e-9, abs=1e-12)
            elif scheme.kind == "ppsd":
                # it never drafts past the request's end and keeps the in-flight limit: no more
                # waste than the batch-1 model without a limit. (Not ``ref`` itself: the serving
                # model frees a slot at the verdict, simulate and the real runner one hop later,
                # when the verdict is back at stage 1, so here it can waste a little more.)
                free = simulate(
                    profile, replace(scheme, max_inflight=10**6), acc, tokens=out - 1, seed=4
                ).record
                assert all(w <= x + 1e-12 for w, x in zip(wasted, free.stage_wasted_s, strict=True))
            if scheme.kind != "ar":
                assert r.acceptance_observed.judged == ref.acceptance_observed.judged
                assert r.acceptance_observed.accepted == ref.acceptance_observed.accepted


@pytest.mark.parametrize("bounds", [[6, 12, 18, 24], [12, 24], [10, 12, 18, 24]])
def test_wasted_work_at_batch_1_is_the_batch_1_models(bounds):
    """Rejections far from the request's end, on pipelines whose in-flight limit does not
    bind: the flushed work per stage is ``simulate``'s to 1e-9."""
    bits = [1] * 997
    for i in (5, 40, 41, 100, 180):
        bits[i] = 0
    acc = AcceptanceSpec.from_trace(bits)
    scheme = SchemeConfig.ppsd(bounds, max_inflight=10**6)
    r = simulate_serving(PROFILE, scheme, one_request(acc, 301), ServingSettings(max_batch=1))
    ref = simulate(PROFILE, scheme, acc, tokens=300).record
    assert r.flushes == ref.flushes == 5
    wasted = [f * r.duration_s for f in r.stage_wasted_fraction]
    assert wasted == pytest.approx(list(ref.stage_wasted_s), rel=1e-9, abs=1e-12)
    assert sum(wasted) > 0


def test_default_inflight_limit_binds_only_on_unbalanced_pipelines():
    """The default k + 1 tokens in flight changes nothing on balanced stages (so the oracle
    above holds with it) but stops drafts queueing in front of a slow later stage."""
    acc, st = AcceptanceSpec.iid(0.9), ServingSettings(max_batch=1)

    def run(bounds, limit):
        s = SchemeConfig.ppsd(bounds, max_inflight=limit)
        return simulate_serving(PROFILE, s, one_request(acc, 400), st, keep_requests=True)

    for bounds in ([6, 12, 18, 24], [12, 24]):
        a, b = run(bounds, None), run(bounds, 10**6)
        assert a.per_request.finish == b.per_request.finish
    slow, free = run([2, 20, 24], None), run([2, 20, 24], 10**6)
    assert int(slow.notes["max_inflight"]) == 4 < int(free.notes["max_inflight"])
    # the slow stage sets the commit times either way; the bound saves stage 1 the drafts
    # that would only queue in front of it (and be flushed)
    assert slow.per_request.finish == free.per_request.finish
    assert slow.stage_busy_fraction[0] < 0.8 * free.stage_busy_fraction[0]


@pytest.mark.parametrize(
    "scheme",
    [SchemeConfig.ar(), SchemeConfig.eesd(6, 3), SchemeConfig.eesd(6, 3, cache_reuse=False)],
    ids=lambda s: s.label(),
)
def test_device_steps_at_one_token_are_the_batch_1_costs(scheme):
    st = device_steps(PROFILE, scheme)
    assert st.decode(1, 999) == pytest.approx(costs.ar_costs(PROFILE).token, rel=1e-12)
    if scheme.kind == "eesd":
        c = costs.eesd_costs(PROFILE, scheme)
        assert st.draft(1, 50) == pytest.approx(c.draft_step, rel=1e-12)
        assert st.verify(1, 53, 50) == pytest.approx(c.verify, rel=1e-12)


def test_stage_steps_at_one_token_are_the_batch_1_stage_costs():
    p = PROFILE.with_costs(concurrency_slowdown=1.1)
    scheme = SchemeConfig.ppsd([5, 9, 24], exit_stage=2)
    st, c = stage_steps(p, scheme), costs.ppsd_costs(p, scheme)
    for s in range(3):
        assert st.compute(s, 1, 77) == pytest.approx(c.compute[s], rel=1e-12)
    assert st.ee(1) == pytest.approx(c.ee_head) and st.final(1) == pytest.approx(c.final_head)
    with pytest.raises(ConfigError, match=r"^scheme\.devices: the serving model needs one device"):
        stage_steps(p, SchemeConfig.ppsd([12, 24], devices=[0, 0]))


LOADS = [
    (1, Arrivals.at_once()),
    (3, Arrivals.closed(3)),
    (8, Arrivals.at_once()),
    (16, Arrivals.poisson(15.0)),
    (32, Arrivals.closed(32)),
]


@pytest.mark.parametrize(
    "profile", [example_serving_profile(), PROFILE], ids=["memory-bound", "factor"]
)
@pytest.mark.parametrize(
    ("batch", "arrivals"), LOADS, ids=lambda x: str(x) if isinstance(x, int) else x.kind
)
def test_speculation_at_alpha_0_never_beats_its_twin(profile, batch, arrivals):
    L = profile.n_layers
    w = Workload(
        count=40,
        prompt=LengthDist.uniform(8, 64),
        output=LengthDist.uniform(16, 48),
        arrivals=arrivals,
        acceptance=AcceptanceSpec.iid(0.0),
    )
    for policy in ("real_first", "greedy"):
        st = ServingSettings(max_batch=batch, policy=policy)
        for scheme in (SchemeConfig.eesd(L // 4, 3), SchemeConfig.ppsd_even(L, 4)):
            spec = simulate_serving(profile, scheme, w, st)
            base = simulate_serving(profile, twin(scheme), w, st)
            # an open load's makespan is set by its last arrival: judge it by latency there
            assert spec.e2e.mean >= base.e2e.mean * (1 - 1e-12)
            if arrivals.kind != "poisson":
                assert spec.throughput_tok_s <= base.throughput_tok_s * (1 + 1e-12)


# KV-free linear costs; no heads, hop or tick: PP-AR must reach exactly k × AR at batch m
BARE = replace(
    HardwareProfile.uniform(32, 1e-3), batched=BatchedCosts(layers=(LoadCost(a=0.9e-3, b=5e-5),))
)
REAL = replace(
    HardwareProfile.uniform(32, 1e-3, 0.5, hop=2e-5, tick=3e-5),
    batched=BatchedCosts(
        layers=(LoadCost(a=0.9e-3, b=5e-5, c=1e-8),), final_head=LoadCost(a=0.4e-3, b=1e-5)
    ),
)


@pytest.mark.parametrize(("k", "m"), [(2, 1), (4, 1), (4, 3)])
def test_pp_ar_reaches_k_times_ar_and_its_closed_form(k, m):
    def closed(n):
        return Workload(
            count=2 * n,
            prompt=LengthDist.fixed(1),
            output=LengthDist.fixed(2000),
            arrivals=Arrivals.closed(n),
        )

    pp = simulate_serving(
        BARE, SchemeConfig.pp_ar_even(32, k), closed(k * m), ServingSettings(max_batch=k * m)
    )
    ar = simulate_serving(BARE, SchemeConfig.ar(), closed(m), ServingSettings(max_batch=m))
    assert pp.throughput_tok_s / ar.throughput_tok_s == pytest.approx(k, rel=2e-3)
    # with hops, a head and ticks the closed form (waves cycle at max(round trip, k × slowest))
    real = simulate_serving(
        REAL, SchemeConfig.pp_ar_even(32, k), closed(k * m), ServingSettings(max_batch=k * m)
    )
    cf = pp_ar_tokens_per_s(REAL, SchemeConfig.pp_ar_even(32, k), m, context=1000)
    assert real.throughput_tok_s == pytest.approx(cf, rel=5e-3)


@pytest.mark.parametrize(
    "scheme", [SchemeConfig.ar(), SchemeConfig.tp_ar(4)], ids=lambda s: s.label()
)
@pytest.mark.parametrize(("batch", "prompt", "output"), [(1, 5, 9), (8, 30, 50), (32, 100, 64)])
def test_lockstep_cohorts_match_their_closed_form(scheme, batch, prompt, output):
    p = example_serving_profile()
    w = Workload(count=3 * batch, prompt=LengthDist.fixed(prompt), output=LengthDist.fixed(output))
    r = simulate_serving(p, scheme, w, ServingSettings(max_batch=batch), keep_requests=True)
    assert max(r.per_request.finish) == pytest.approx(
        lockstep_time(p, scheme, batch, prompt, output, 3), rel=1e-12
    )
    assert r.mean_batch == pytest.approx(batch, rel=1e-9)


@pytest.mark.parametrize(("alpha", "batch"), [(0.5, 8), (0.9, 1), (0.9, 16)])
def test_eesd_full_batch_matches_the_renewal_form(alpha, batch):
    w = Workload(
        count=2 * batch,
        prompt=LengthDist.fixed(1),
        output=LengthDist.fixed(3000),
        arrivals=Arrivals.closed(batch),
        acceptance=AcceptanceSpec.iid(alpha),
    )
    r = simulate_serving(BARE, SchemeConfig.eesd(8, 4), w, ServingSettings(max_batch=batch))
    assert r.throughput_tok_s == pytest.approx(
        eesd_tokens_per_s(BARE, SchemeConfig.eesd(8, 4), alpha, batch, 0), rel=0.015
    )


@pytest.mark.parametrize(
    "scheme",
    # the pipeline admits from its stage-1 process, the others at step boundaries: one of each
    # kind (PPSD shares PP-AR's admission and takes twice as long)
    [SchemeConfig.ar(), SchemeConfig.eesd(8, 4), SchemeConfig.pp_ar_even(32, 4)],
    ids=lambda s: s.label(),
)
def test_littles_law_over_10000_requests(scheme):
    w = Workload(
        count=10_000,
        prompt=LengthDist.uniform(16, 128),
        output=LengthDist.uniform(8, 40),
        arrivals=Arrivals.poisson(15.0),
        acceptance=AcceptanceSpec.iid(0.8),
    )
    r = simulate_serving(example_serving_profile(), scheme, w, ServingSettings(max_batch=16))
    lw = r.little
    assert lw["window_s"] > 600 and r.mean_batch > 3  # a busy but stable system
    assert lw["mean_in_system"] == pytest.approx(
        lw["arrival_rate"] * lw["mean_time_in_system"], rel=0.02
    )
    assert lw["arrival_rate"] == pytest.approx(15.0, rel=0.03)


def test_batch_and_kv_budget_bound_the_admitted_set():
    p = example_serving_profile()
    w = Workload(
        count=12,
        prompt=LengthDist.fixed(100),
        output=LengthDist.fixed(20),
        acceptance=AcceptanceSpec.iid(0.8),
    )
    for scheme, slots in (
        (SchemeConfig.ar(), 0),
        (SchemeConfig.eesd(8, 4), 4),
        (SchemeConfig.ppsd_even(32, 4), 5),
    ):
        need = 120 + slots
        r = simulate_serving(
            p, scheme, w, ServingSettings(max_batch=8, kv_budget=3 * need), keep_requests=True
        )
        pr = r.per_request
        live = [
            sum(a <= t < f for a, f in zip(pr.admitted, pr.finish, strict=True))
            for t in pr.admitted
        ]
        assert max(live) == 3  # the budget holds three, the batch would allow eight
        assert list(pr.admitted) == sorted(pr.admitted)  # FIFO: nobody overtakes
        with pytest.raises(
            ConfigError,
            match=rf"^kv_budget: {need - 1} tokens cannot hold request 0 .* give at least {need}",
        ):
            simulate_serving(p, scheme, w, ServingSettings(kv_budget=need - 1))
    r = simulate_serving(
        p, SchemeConfig.pp_ar_even(32, 4), w, ServingSettings(max_batch=5), keep_requests=True
    )
    pr = r.per_request
    assert (
        max(
            sum(a <= t < f for a, f in zip(pr.admitted, pr.finish, strict=True))
            for t in pr.admitted
        )
        == 5
    )


def test_same_seed_same_record_and_requests_differ_by_index():
    p = example_serving_profile()
    w = Workload(
        count=30,
        prompt=LengthDist.lognormal(60, 0.6, hi=400),
        output=LengthDist.uniform(5, 40),
        arrivals=Arrivals.poisson(30.0),
        acceptance=AcceptanceSpec.iid(0.7),
    )
    a = simulate_serving(p, SchemeConfig.ppsd_even(32, 4), w, seed=3, keep_requests=True)
    b = simulate_serving(p, SchemeConfig.ppsd_even(32, 4), w, seed=3, keep_requests=True)
    c = simulate_serving(p, SchemeConfig.ppsd_even(32, 4), w, seed=4, keep_requests=True)
    assert a == b and a != c
    assert (
        a.per_request.arrival == c.per_request.arrival
        or a.per_request.prompt_tokens != c.per_request.prompt_tokens
    )


def test_per_request_acceptance_and_listed_requests():
    """Requests accept their own drafts: a listed α = 1 request speeds up, an α = 0 one not."""
    p = example_serving_profile()
    reqs = tuple(Request(20, 200, 0.0, AcceptanceSpec.iid(a)) for a in (1.0, 0.0))
    w = Workload(requests=reqs, arrivals=Arrivals.trace())
    r = simulate_serving(
        p, SchemeConfig.ppsd_even(32, 4), w, ServingSettings(max_batch=2), keep_requests=True
    )
    pr = r.per_request
    tpot = [(pr.finish[i] - pr.first[i]) / 199 for i in (0, 1)]
    assert tpot[0] < 0.5 * tpot[1]
    with pytest.raises(ConfigError, match=r"^workload\.acceptance: is required for PPSD"):
        simulate_serving(p, SchemeConfig.ppsd_even(32, 4), Workload(count=2))


def test_compare_names_its_baselines_and_speculation_pays_at_low_load():
    p = example_serving_profile()
    w = Workload(
        count=8,
        prompt=LengthDist.fixed(32),
        output=LengthDist.fixed(64),
        arrivals=Arrivals.closed(1),
        acceptance=AcceptanceSpec.iid(0.9),
    )
    recs = compare_serving(
        p,
        [SchemeConfig.ppsd_even(32, 4), SchemeConfig.tp_ar(4), SchemeConfig.eesd(8, 4)],
        w,
        ServingSettings(max_batch=1),
    )
    ppsd, tp, eesd = recs
    assert ppsd.baselines == {"ar_same_load": "AR", "pp_ar_same_load": "PP-AR(k=4)"}
    assert (
        tp.baselines["pp_ar_same_load"] == "PP-AR(k=4)" and "pp_ar_same_load" not in eesd.speedups
    )
    assert ppsd.speedups["pp_ar_same_load"]["tpot_p50"] > 2.0  # one sequence: PP-AR idles
    assert ppsd.speedups["ar_same_load"]["throughput"] > 1.5


def test_slot_policies_at_a_full_pipeline_and_the_pp_ar_baseline():
    """With k sequences on k stages PP-AR has no idle stage: ``real_first`` (a draft only
    where no real token waits) leaves PPSD at PP-AR's speed, while ``greedy`` lets drafts
    ride in steps whose cost barely grows with their tokens (memory-bound) and pays. The
    PP-AR baseline of ``compare_serving`` runs its wave schedule under either policy."""
    p = example_serving_profile()
    w = Workload(
        count=12,
        prompt=LengthDist.fixed(32),
        output=LengthDist.fixed(120),
        arrivals=Arrivals.closed(4),
        acceptance=AcceptanceSpec.iid(0.8),
    )
    pp, ppsd = SchemeConfig.pp_ar_even(32, 4), SchemeConfig.ppsd_even(32, 4)
    waves = ServingSettings(max_batch=4)
    greedy = ServingSettings(max_batch=4, policy="greedy")
    base = simulate_serving(p, pp, w, waves).throughput_tok_s
    real_first = simulate_serving(p, ppsd, w, waves).throughput_tok_s
    assert real_first == pytest.approx(base, rel=0.03)
    (rec,) = compare_serving(p, [ppsd], w, greedy)
    assert rec.throughput_tok_s > 1.5 * base
    assert rec.baselines["pp_ar_same_load"] == "PP-AR(k=4) (real_first)"
    assert rec.speedups["pp_ar_same_load"]["throughput"] == pytest.approx(
        rec.throughput_tok_s / base, rel=1e-12
    )
