"""The report's "Speedup against temperature": the plan's best EESD and PPSD predicted at each
decoding setting's α of an acceptance record (oracle: the closed form at that α), absent when
the record holds no sampled setting or measured another depth."""

from __future__ import annotations

import random

import pytest

from analysis.planner import plan
from analysis.report_build import build_report
from analysis.report_temperature import speedup_by_decoding, temperature_section
from ppsd_sim import analytic
from ppsd_sim.records.acceptance_record import AcceptanceRecord, ExitAcceptance
from ppsd_sim.records.decoding import DecodingSettings
from ppsd_sim.records.io import write_record
from ppsd_sim.records.profile import HardwareProfile

L = 8
PROFILE = HardwareProfile.uniform(L, 1e-3, 1.3, hop=1e-4, tick=5e-5, flush=2e-5)
SETTINGS = [DecodingSettings(), DecodingSettings(0.7), DecodingSettings(1.0)]
RATES = {0.0: 0.85, 0.7: 0.7, 1.0: 0.55}  # acceptance falls as the temperature rises


def _rows(p: float, seed: int, dec: DecodingSettings) -> list[ExitAcceptance]:
    out = []
    for e in range(1, L):
        rng = random.Random(seed * 100 + e)
        q = p * (0.6 + 0.4 * e / L)
        traces = tuple(tuple(int(rng.random() < q) for _ in range(60)) for _ in range(2))
        expected = None if dec.greedy else tuple(tuple(q for _ in t) for t in traces)
        out.append(ExitAcceptance(e, "shared", traces, dec, expected))
    return out


def _record(settings, n_layers: int = L) -> AcceptanceRecord:
    rows = [r for i, d in enumerate(settings) for r in _rows(RATES[d.temperature], i, d)]
    return AcceptanceRecord(
        model={"name": "toy", "fingerprint": "", "model_type": "llama", "n_layers": n_layers},
        prompts={"source": "toy-prompts", "prompt_tokens": [8, 8], "new_tokens": 60},
        exits=tuple(rows),
    )


def test_each_setting_is_predicted_at_its_own_alpha_and_hotter_is_slower():
    rec = _record(SETTINGS)
    pl = plan(PROFILE, _curve(rec), 4, top=3, sim_tokens=0)
    configs = [pl.best_per_scheme[k] for k in ("eesd", "ppsd")]
    rows = speedup_by_decoding(rec, "shared", PROFILE, configs)
    assert [d for d, _ in rows] == SETTINGS  # greedy first, then by temperature
    for dec, vals in rows:
        exits, alphas = rec.curve("shared", dec)
        for c, (a, s) in zip(configs, vals, strict=True):
            e = c.scheme.draft_exit_layer
            assert a == pytest.approx(dict(zip(exits, alphas, strict=True))[e])
            assert s == pytest.approx(analytic.speedup(PROFILE, c.scheme, a))
    for i in range(len(configs)):  # α falls with T, so does every configuration's speedup
        speeds = [vals[i][1] for _, vals in rows]
        assert speeds == sorted(speeds, reverse=True) and speeds[0] > speeds[-1]


def _curve(rec):
    from analysis.curves import record_curve

    return record_curve(rec, "shared", DecodingSettings())


def test_absent_without_a_sampled_setting_or_at_another_depth():
    best = plan(PROFILE, _curve(_record(SETTINGS)), 4, top=3, sim_tokens=0).best_per_scheme
    assert temperature_section([("g", _record(SETTINGS[:1]))], PROFILE, best) is None
    assert temperature_section([("deep", _record(SETTINGS, n_layers=L + 4))], PROFILE, best) is None
    sec = temperature_section([("r", _record(SETTINGS))], PROFILE, best)
    assert sec is not None and sec.title == "Speedup against temperature"


def test_the_report_shows_it_for_a_folder_with_a_sampled_record(tmp_path):
    write_record(tmp_path / "profile.json", PROFILE)
    (tmp_path / "acc.json").write_text(_record(SETTINGS).to_json(), encoding="utf-8")
    rep = build_report(tmp_path, sim_tokens=2000)
    titles = [s.title for s in rep.sections]
    assert "Speedup against temperature" in titles
    sec = rep.sections[titles.index("Speedup against temperature")]
    table = next(i for i in sec.items if hasattr(i, "rows"))
    assert [r[0] for r in table.rows] == ["greedy", "T=0.7", "T=1"]
