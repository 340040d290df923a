"""The serving records: load costs (linear, grid, sums), batched and TP costs in a profile (old
files unchanged), the pp_ar / tp_ar scheme kinds, Workload, ServingSettings, ServingRecord."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import AcceptanceSpec, HardwareProfile, SchemeConfig
from ppsd_sim.records.io import dumps
from ppsd_sim.records.load_cost import BatchedCosts, LoadCost, TensorParallel
from ppsd_sim.records.serving_record import ServingRecord, ServingSettings
from ppsd_sim.records.workload import Arrivals, LengthDist, Request, Workload
from ppsd_sim.serving import simulate_serving
from ppsd_sim.serving.example import example_serving_profile
from ppsd_sim.serving.metrics import metrics_from_times
from ppsd_sim.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "calibration/reports/x86_64-2core/cpu-bench-seed0/profile.json"


# ---- LoadCost ---------------------------------------------------------------------------------
def test_linear_cost_and_bilinear_grid():
    lin = LoadCost(a=1e-3, b=2e-6, c=5e-9)
    assert lin.time(8, 1000) == pytest.approx(1e-3 + 16e-6 + 5e-6)
    g = LoadCost(tokens=(1, 4), kv=(0, 100), table=((1.0, 2.0), (4.0, 8.0)))
    assert g.time(1, 0) == 1.0 and g.time(4, 100) == 8.0
    assert g.time(2.5, 50) == pytest.approx(((1 + 2) / 2 + (4 + 8) / 2) / 2)  # centre of the cell
    # outside: the edge cell extended linearly (as HardwareProfile.factor past its last point)
    assert g.time(7, 0) == pytest.approx(4.0 + 3.0 * (4.0 - 1.0) / 3.0)
    assert g.time(1, 300) == pytest.approx(1.0 + 3.0 * 1.0)
    # a linear cost sampled on any grid is reproduced everywhere, inside and out
    on = lin.on_axes((1, 3, 16), (0, 512, 4096))
    for t, k in ((1, 0), (2, 77), (9, 3000), (40, 20000)):
        assert on.time(t, k) == pytest.approx(lin.time(t, k), rel=1e-12)


def test_fit_recovers_a_linear_cost_from_batch_by_context_steps():
    batches, contexts = (1, 2, 4, 8, 16), (128, 512, 2048)
    T = [b for _c in contexts for b in batches]
    K = [b * c for c in contexts for b in batches]
    want = LoadCost(a=1e-3, b=2e-5, c=3e-9)
    got = LoadCost.fit(T, K, [want.time(t, k) for t, k in zip(T, K, strict=True)])
    for name in "abc":
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-9)
    # never a negative coefficient: a cost falling with load is fitted flat in it
    assert LoadCost.fit([1, 2, 3], [0, 0, 0], [3.0, 2.0, 1.0]) == LoadCost(a=2.0)
    # one step size: the per-token cost is not identifiable and goes to the intercept
    one = LoadCost.fit([4, 4], [0, 100], [1.0, 1.5])
    assert (one.b, one.time(4, 0), one.time(4, 100)) == (
        0.0,
        pytest.approx(1.0),
        pytest.approx(1.5),
    )
    with pytest.raises(ConfigError, match=r"^seconds: needs one value per step"):
        LoadCost.fit([1, 2], [0, 0], [1.0])
    with pytest.raises(ConfigError, match=r"^tokens\[1\]: must be >= 1"):
        LoadCost.fit([1, 0], [0, 0], [1.0, 1.0])


def test_sums_of_costs_are_exact():
    a = LoadCost(tokens=(1, 8), kv=(0,), table=((1.0,), (3.0,)))
    b = LoadCost(tokens=(1, 2, 16), kv=(0, 64), table=((1.0, 2.0), (1.5, 2.5), (5.0, 9.0)))
    lin = LoadCost(a=0.5, b=0.1, c=0.01)
    tot = LoadCost.total([a, b, lin])
    for t, k in ((1, 0), (3, 10), (12, 64), (30, 200)):
        assert tot.time(t, k) == pytest.approx(a.time(t, k) + b.time(t, k) + lin.time(t, k))
    assert LoadCost.total([lin, lin]) == LoadCost(1.0, 0.2, 0.02)
    assert a.scaled(3).time(5, 0) == pytest.approx(3 * a.time(5, 0))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"a": -1}, "c.a"),
        ({"tokens": [2, 4], "kv": [0], "table": [[1], [2]]}, "c.tokens"),
        ({"tokens": [1, 4], "kv": [0], "table": [[1]]}, "c.table"),
        ({"tokens": [1, 1], "kv": [0], "table": [[1], [2]]}, "c.tokens"),
        ({"tokens": [1], "kv": [0, 5], "table": [[1]]}, "c.table[0]"),
        ({"tokens": [1], "kv": [0], "table": [[-1]]}, "c.table[0][0]"),
        ({"a": 1, "tokens": [1], "kv": [0], "table": [[1]]}, "c.a"),
        ({"d": 1}, "c.d"),
    ],
)
def test_bad_load_costs_name_their_field(data, field):
    with pytest.raises(ConfigError) as err:
        LoadCost.from_dict(data, "c")
    assert err.value.field == field


# ---- profiles -----------------------------------------------------------------------------------
def test_old_profile_files_load_and_write_back_unchanged():
    doc = json.loads(MEASURED.read_text())
    prof = HardwareProfile.from_dict(doc)
    assert prof.batched is None and prof.tp == ()
    assert prof.to_dict() == doc  # no new keys appear in an old profile
    ex = example_serving_profile()
    back = HardwareProfile.from_dict(json.loads(dumps(ex)))
    assert back == ex and back.batched.layers[0] == LoadCost(a=0.48e-3, b=2e-6, c=8e-9)
    assert [t.degree for t in back.tp] == [2, 4]


def test_batched_costs_never_change_batch_1_results():
    base = HardwareProfile.uniform(16, 1e-3, 1.0, hop=1e-5, tick=2e-5, flush=3e-5)
    heavy = replace(
        base,
        batched=BatchedCosts(layers=(LoadCost(a=5e-3, b=1e-4, c=1e-6),)),
        tp=(TensorParallel(2, (LoadCost(a=1e-4),)),),
    )
    for scheme in (SchemeConfig.ar(), SchemeConfig.eesd(4, 3), SchemeConfig.ppsd_even(16, 4)):
        acc = AcceptanceSpec.iid(0.7)
        a = simulate(base, scheme, acc, tokens=500, seed=2).record
        b = simulate(heavy, scheme, acc, tokens=500, seed=2).record
        assert a.time_s == b.time_s and a.stage_busy_s == b.stage_busy_s


def test_profile_refuses_bad_batched_and_tp():
    base = HardwareProfile.uniform(4, 1e-3)
    with pytest.raises(ConfigError, match=r"^batched\.layers: needs one cost"):
        replace(base, batched=BatchedCosts(layers=(LoadCost(),) * 3))
    with pytest.raises(ConfigError, match=r"^batched\.draft_exit: draft_step and draft_exit"):
        BatchedCosts(layers=(LoadCost(),), draft_step=LoadCost(a=1e-3))
    with pytest.raises(ConfigError, match=r"^batched\.draft_exit: must be >= 1"):
        BatchedCosts(layers=(LoadCost(),), draft_step=LoadCost(a=1e-3), draft_exit=0)
    measured = BatchedCosts(layers=(LoadCost(a=1e-3),), draft_step=LoadCost(a=2e-3), draft_exit=2)
    assert BatchedCosts.from_dict(measured.to_dict()) == measured
    assert measured.draft_cost(2) is measured.draft_step and measured.draft_cost(3) is None
    tp = TensorParallel(2, (LoadCost(a=1e-3),))
    with pytest.raises(ConfigError, match=r"^tp: holds one entry per degree"):
        replace(base, tp=(tp, tp))
    doc = base.to_dict() | {"tp": [{"degree": 1, "layers": [{"a": 0}]}]}
    with pytest.raises(ConfigError, match=r"^tp\[0\]\.degree: must be >= 2"):
        HardwareProfile.from_dict(doc)
    with pytest.raises(ConfigError, match=r"^scheme\.tp_degree: the profile has no tensor"):
        base.tensor_parallel(4)


def test_derived_load_costs_follow_the_verify_factor():
    p = HardwareProfile.uniform(
        3, 2e-3, 0.5, verify_tokens=(1, 4, 16), verify_factor=(1.0, 1.3, 2.5)
    )
    lc = p.load_costs()
    for n in (1, 3, 4, 10, 40):  # inside and past the profiled sizes, whatever the KV read
        assert lc.layers[1].time(n, 12345) == pytest.approx(2e-3 * p.factor(n), rel=1e-12)
        assert lc.final_head.time(n) == pytest.approx(1e-3 * p.factor(n), rel=1e-12)


# ---- schemes ------------------------------------------------------------------------------------
def test_pp_ar_and_tp_ar_kinds():
    pp, tp = SchemeConfig.pp_ar_even(32, 4), SchemeConfig.tp_ar(4)
    assert pp.stage_boundaries == SchemeConfig.ppsd_even(32, 4).stage_boundaries
    assert (pp.label(), tp.label()) == ("PP-AR(k=4)", "TP-AR(k=4)")
    assert (pp.n_devices, tp.n_devices, SchemeConfig.ar().n_devices) == (4, 4, 1)
    assert not any(st.exit for st in pp.stages())
    for s in (pp, tp):
        assert SchemeConfig.from_dict(json.loads(dumps(s))) == s
    for kwargs, msg in (
        ({"kind": "tp_ar"}, r"scheme\.tp_degree: is required"),
        ({"kind": "tp_ar", "tp_degree": 1}, r"scheme\.tp_degree: must be >= 2"),
        ({"kind": "ar", "tp_degree": 2}, r"scheme\.tp_degree: is only used by TP-AR"),
        ({"kind": "pp_ar", "stage_boundaries": [8]}, r"scheme\.stage_boundaries"),
        ({"kind": "pp_ar", "stage_boundaries": [4, 8], "exit_stage": 2}, r"scheme\.exit_stage"),
        ({"kind": "pp_ar", "stage_boundaries": [4, 8], "devices": [0, 0]}, r"scheme\.devices"),
    ):
        with pytest.raises(ConfigError, match=msg):
            SchemeConfig(**kwargs)
    with pytest.raises(ConfigError, match="cover all 16 layers"):
        pp.check_layers(16)


def test_simulate_refuses_the_serving_baselines():
    p = HardwareProfile.uniform(8, 1e-3)
    for s in (SchemeConfig.pp_ar_even(8, 2), SchemeConfig.tp_ar(2)):
        with pytest.raises(ConfigError, match=r"^scheme\.kind: .*serving\.simulate_serving"):
            simulate(p, s, None, tokens=10)


# ---- workload, settings, record ----------------------------------------------------------------------
def test_workload_round_trip_and_validation():
    w = Workload(
        count=5,
        prompt=LengthDist.lognormal(200, 0.5, hi=900),
        output=LengthDist.uniform(10, 20),
        arrivals=Arrivals.closed(3, think_s=0.5),
        acceptance=AcceptanceSpec.markov(0.8, 0.3),
    )
    assert Workload.from_dict(json.loads(dumps(w))) == w
    listed = Workload(
        requests=(Request(5, 6, 0.0), Request(7, 8, 0.5, AcceptanceSpec.iid(0.9))),
        arrivals=Arrivals.trace(),
    )
    assert listed.count == 2 and Workload.from_dict(json.loads(dumps(listed))) == listed
    for doc, msg in (
        ({"count": 0}, r"^workload\.count: must be >= 1"),
        ({}, r"^workload\.count: is required"),
        ({"count": 2, "arrivals": {"kind": "poisson", "rate": 0}}, r"arrivals\.rate: must be > 0"),
        ({"count": 2, "arrivals": {"kind": "poisson"}}, r"arrivals\.rate: is required"),
        (
            {"count": 2, "arrivals": {"kind": "closed", "users": 0}},
            r"arrivals\.users: must be >= 1",
        ),
        ({"count": 2, "prompt": {"kind": "uniform", "lo": 9, "hi": 3}}, r"prompt\.hi: must be >="),
        (
            {"count": 2, "output": {"kind": "lognormal", "median": 10}},
            r"output\.sigma: is required",
        ),
        ({"count": 2, "prompt": 0}, r"prompt\.value: must be >= 1"),
        ({"count": 3, "arrivals": {"kind": "trace", "times": [0, 1]}}, r"workload\.count: is 3"),
        ({"count": 2, "arrivals": {"kind": "trace", "times": [1, 0]}}, r"times\[1\]: must be >="),
        ({"requests": [{"prompt_tokens": 3, "output_tokens": 1, "arrival_s": 1}]}, "trace"),
    ):
        with pytest.raises(ConfigError, match=msg):
            Workload.from_dict(doc)


def test_settings_validation():
    assert ServingSettings().policy == "real_first"
    for kw, field in (
        ({"max_batch": 0}, "max_batch"),
        ({"kv_budget": 0}, "kv_budget"),
        ({"policy": "oldest"}, "policy"),
        ({"microbatch": 0}, "microbatch"),
        ({"ttft_slo_s": 0.0}, "ttft_slo_s"),
        ({"tpot_slo_s": float("nan")}, "tpot_slo_s"),
    ):
        with pytest.raises(ConfigError) as err:
            ServingSettings(**kw)
        assert err.value.field == field


def test_serving_record_round_trips():
    p = example_serving_profile()
    w = Workload(count=6, output=LengthDist.fixed(12), acceptance=AcceptanceSpec.iid(0.8))
    rec = simulate_serving(
        p,
        SchemeConfig.ppsd_even(32, 4),
        w,
        ServingSettings(max_batch=4, tpot_slo_s=0.05),
        keep_requests=True,
    )
    doc = json.loads(dumps(rec))
    assert doc["record"] == "ServingRecord"
    assert ServingRecord.from_dict(doc) == rec
    with pytest.raises(ConfigError, match=r"^record: missing"):
        ServingRecord.from_dict({k: v for k, v in doc.items() if k != "record"})


def test_metrics_from_timestamps_alone_are_the_records():
    """A measured run's logged timestamps give the same metrics through the same code."""
    w = Workload(
        count=60,
        prompt=LengthDist.uniform(8, 64),
        output=LengthDist.uniform(1, 40),
        arrivals=Arrivals.poisson(20.0),
        acceptance=AcceptanceSpec.iid(0.7),
    )
    st = ServingSettings(max_batch=6, tpot_slo_s=0.02, ttft_slo_s=0.1)
    rec = simulate_serving(
        example_serving_profile(), SchemeConfig.ppsd_even(32, 4), w, st, keep_requests=True
    )
    got = metrics_from_times(rec.per_request, st)
    for name, value in got.items():
        assert getattr(rec, name) == value, name
    assert 0 < rec.goodput_rps < rec.requests_per_s and 1 < rec.mean_batch <= 6
    pr = rec.per_request
    late = replace(pr, first=(pr.admitted[0] - 1.0, *pr.first[1:]))
    with pytest.raises(ConfigError, match=r"^per_request\.first\[0\]: must be >= its admitted"):
        metrics_from_times(late, st)
    with pytest.raises(ConfigError, match=r"^per_request\.finish\[2\]: must be a finite"):
        metrics_from_times(replace(pr, finish=(*pr.finish[:2], float("nan"), *pr.finish[3:])), st)
