"""AcceptanceRecord without torch: derived statistics from the traces, checked against the
project's acceptance semantics and a direct EESD replay; JSON round trip; bad files refused."""

from __future__ import annotations

import json
import random

import pytest

from ppsd_sim.acceptance import semantics
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_record import (
    AcceptanceRecord,
    ExitAcceptance,
    GammaStats,
    eesd_rounds,
    lag1,
)


def _replay(trace: list[int], gamma: int) -> list[int]:
    """EESD rounds the slow way: draft γ positions, stop at the first rejection, skip the
    full model's own token; keep a round only if its outcome lies inside the trace."""
    out, t = [], 0
    while True:
        window = trace[t : t + gamma]
        if 0 in window:
            a = window.index(0)
        elif len(window) == gamma:
            a = gamma
        else:
            return out
        out.append(a)
        t += a + 1


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("gamma", [1, 2, 4, 7])
def test_eesd_rounds_match_a_direct_replay(seed: int, gamma: int) -> None:
    rng = random.Random(seed)
    trace = [int(rng.random() < 0.7) for _ in range(rng.randint(0, 60))]
    assert eesd_rounds(trace, gamma) == _replay(trace, gamma)


def test_gamma_stats_agree_with_the_acceptance_semantics() -> None:
    rng = random.Random(3)
    traces = tuple(tuple(int(rng.random() < 0.65) for _ in range(400)) for _ in range(3))
    e = ExitAcceptance(2, "shared", traces)
    for g in (1, 3, 5):
        s = e.gamma_stats(g)
        alphas = list(s.per_position)
        assert s.tau == pytest.approx(semantics.tau(alphas, g, with_bonus=False))
        assert s.marginal_rate == pytest.approx(semantics.marginal_rate_eesd(alphas, g))
        assert s.per_position == pytest.approx(semantics.per_position_from_histogram(s.histogram))
    assert e.alpha == pytest.approx(sum(map(sum, traces)) / 1200)
    # i.i.d. bits: the burstiness is near 0 and the clustered standard error near binomial
    assert abs(e.burstiness or 0.0) < 0.1
    assert e.alpha_se == pytest.approx((e.alpha * (1 - e.alpha) / 1200) ** 0.5, rel=0.8)


def test_burstiness_of_clustered_and_alternating_outcomes() -> None:
    assert lag1([((1,) * 10 + (0,) * 10) * 6]) > 0.8
    assert lag1([(1, 0) * 30]) == pytest.approx(-1.0)
    assert lag1([(1, 1, 1)]) is None
    # pairs never cross from one continuation to the next
    assert lag1([(1, 1), (0, 0)]) == pytest.approx(1.0)


def _record(**kw) -> AcceptanceRecord:
    base = {
        "model": {"name": "m", "fingerprint": "sha256:x", "model_type": "llama", "n_layers": 4},
        "prompts": {"source": "--prompt", "prompt_tokens": [3, 5], "new_tokens": 6},
        "exits": (
            ExitAcceptance(1, "shared", ((1, 0, 1, 1, 0, 1), (0, 0, 1, 1, 1, 1))),
            ExitAcceptance(3, "shared", ((1, 1, 1, 1, 0, 1), (1, 0, 1, 1, 1, 1))),
            ExitAcceptance(3, "trained", ((1, 1, 1, 1, 1, 1), (1, 1, 1, 1, 1, 1))),
        ),
    }
    return AcceptanceRecord(**{**base, **kw})


def test_round_trip_recomputes_derived_fields() -> None:
    rec = _record()
    data = json.loads(rec.to_json())
    data["exits"][0]["alpha"] = 0.99  # a stale or edited derived value is not trusted
    back = AcceptanceRecord.from_dict(data)
    assert back.of(1).alpha == pytest.approx(8 / 12)
    assert back.to_dict()["exits"] == rec.to_dict()["exits"]
    assert back.curve() == ((1, 3), (8 / 12, 10 / 12))
    assert back.curve("trained") == ((3,), (1.0,))
    assert back.trace(3, "shared") == [1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1]
    assert GammaStats(2, (1, 0, 3)).per_position == (0.75, 1.0)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.pop("record"), "record"),
        (lambda d: d.update(schema_version=9), "schema_version"),
        (lambda d: d["exits"][0]["traces"][0].__setitem__(2, 2), "exits[0].traces[0][2]"),
        (lambda d: d["exits"][1].update(exit=4), "exits[1].exit"),
        (lambda d: d["exits"][1].update(head="mine"), "exits[1].head"),
        (lambda d: d.update(decoding="beam"), "decoding"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["exits"].append(d["exits"][0]), "exits[3]"),
    ],
)
def test_bad_files_are_refused_by_field(edit, field: str) -> None:
    data = json.loads(_record().to_json())
    edit(data)
    with pytest.raises(ConfigError) as err:
        AcceptanceRecord.from_dict(data)
    assert err.value.field.startswith(field), err.value


def test_asking_for_what_was_not_measured_names_it() -> None:
    rec = _record()
    with pytest.raises(
        ConfigError, match=r"no measurement at exit 2 with the shared head \(have \[1, 3\]\)"
    ):
        rec.of(2)
    with pytest.raises(ConfigError, match="trained head"):
        _record(exits=(ExitAcceptance(1, "shared", ((1,),)),)).curve("trained")
