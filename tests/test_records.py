"""The record contract: round-trips, and refusal of bad input naming the field."""

from __future__ import annotations

import json

import pytest

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import (
    AcceptanceSpec,
    HardwareProfile,
    Provenance,
    RunRecord,
    SchemeConfig,
    Timing,
    read_record,
    write_record,
)
from ppsd_sim.simulate import simulate


def _roundtrip(obj):
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


def full_profile() -> HardwareProfile:
    return HardwareProfile(
        layer_decode=(Timing.of_samples([1e-3, 1.1e-3, 0.9e-3]), Timing(2e-3, 1.9e-3, 2.2e-3)),
        ee_head=Timing(5e-4),
        final_head=Timing.of_samples([6e-4, 7e-4]),
        embed=1e-5,
        hop=4e-5,
        tick=2e-5,
        flush=3e-5,
        verify_tokens=(1, 2, 8),
        verify_factor=(1.0, 1.1, 1.9),
        concurrency_slowdown=1.08,
        provenance=Provenance(
            source="measured",
            device="cpu",
            cores=2,
            threads=1,
            torch="2.13.0",
            dtype="float32",
            latency_context="per_stage",
            date="2026-11-27",
        ),
    )


def test_every_record_round_trips(tmp_path):
    p = full_profile()
    assert _roundtrip(p) == p
    for acc in (
        AcceptanceSpec.iid(0.7),
        AcceptanceSpec.markov(0.8, 0.3),
        AcceptanceSpec.per_position([0.9, 0.5]),
        AcceptanceSpec.from_trace([1, 0, 1]),
        AcceptanceSpec.histogram([1, 2, 3]),
    ):
        assert _roundtrip(acc) == acc
        assert acc.to_dict()["semantics"]  # always tagged with what its numbers mean
    for sch in (
        SchemeConfig.ar(),
        SchemeConfig.eesd(1, 3, False),
        SchemeConfig.ppsd([1, 2], devices=[0, 0]),
    ):
        assert _roundtrip(sch) == sch
    rec = simulate(p, SchemeConfig.ppsd([1, 2]), AcceptanceSpec.iid(0.7), tokens=50).record
    assert _roundtrip(rec) == rec
    path = write_record(tmp_path / "sub" / "rec.json", rec)
    assert read_record(path, RunRecord) == rec
    assert not list((tmp_path / "sub").glob("*.tmp"))


BAD = [
    (lambda: AcceptanceSpec.iid(1.2), "acceptance.alpha"),
    (lambda: AcceptanceSpec.iid(float("nan")), "acceptance.alpha"),
    (lambda: AcceptanceSpec.markov(0.5, 1.0), "acceptance.burstiness"),
    (lambda: AcceptanceSpec.from_trace([]), "acceptance.trace"),
    (lambda: AcceptanceSpec.from_trace([1, 2]), "acceptance.trace[1]"),
    (lambda: AcceptanceSpec.histogram([0, 0]), "acceptance.counts"),
    (lambda: AcceptanceSpec.per_position([0.5, -0.1]), "acceptance.alphas[1]"),
    (lambda: AcceptanceSpec("gaussian"), "acceptance.kind"),
    (lambda: SchemeConfig("medusa"), "scheme.kind"),
    (lambda: SchemeConfig.eesd(0, 4), "scheme.exit_layer"),
    (lambda: SchemeConfig.eesd(4, 0), "scheme.gamma"),
    (lambda: SchemeConfig.ppsd([8, 8, 16]), "scheme.stage_boundaries"),
    (lambda: SchemeConfig.ppsd([16]), "scheme.stage_boundaries"),
    (lambda: SchemeConfig.ppsd([8, 16], exit_stage=2), "scheme.exit_stage"),
    (lambda: SchemeConfig.ppsd([8, 16], devices=[0]), "scheme.devices"),
    (lambda: SchemeConfig.eesd(32, 4).check_layers(32), "scheme.exit_layer"),
    (lambda: SchemeConfig.ppsd([8, 24]).check_layers(32), "scheme.stage_boundaries"),
    (lambda: HardwareProfile.uniform(4, -1e-3), "t_layer"),
    (lambda: HardwareProfile.uniform(0, 1e-3), "n_layers"),
    (
        lambda: HardwareProfile.uniform(4, 1e-3, verify_tokens=(1, 4), verify_factor=(1.0,)),
        "verify_factor",
    ),
    (
        lambda: HardwareProfile.uniform(4, 1e-3, verify_tokens=(2,), verify_factor=(1.0,)),
        "verify_tokens",
    ),
    (lambda: Provenance(source="guess"), "provenance.source"),
]


@pytest.mark.parametrize(("make", "field"), BAD)
def test_bad_values_raise_config_error_naming_the_field(make, field):
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_json_level_refusals_name_the_field():
    good = full_profile().to_dict()
    with pytest.raises(ConfigError, match=r"^colour: unknown field"):
        HardwareProfile.from_dict({**good, "colour": "red"})
    with pytest.raises(ConfigError, match=r"^schema_version: this ppsd reads version 1"):
        HardwareProfile.from_dict({**good, "schema_version": 99})
    with pytest.raises(ConfigError, match=r"^record: expected 'HardwareProfile'"):
        HardwareProfile.from_dict({**good, "record": "RunRecord"})
    with pytest.raises(ConfigError, match=r"^layer_decode\[1\]: must be >= 0"):
        HardwareProfile.from_dict({**good, "layer_decode": [1e-3, -2]})
    with pytest.raises(ConfigError, match=r"^hop: must be a number of seconds"):
        HardwareProfile.from_dict({**good, "hop": "fast"})
    with pytest.raises(ConfigError, match=r"^ee_head: is required"):
        HardwareProfile.from_dict({k: v for k, v in good.items() if k != "ee_head"})
    rec = simulate(full_profile(), SchemeConfig.ar(), tokens=3).record.to_dict()
    with pytest.raises(ConfigError, match=r"^scheme\.gamma: is only used by EESD"):
        RunRecord.from_dict({**rec, "scheme": {"kind": "ar", "gamma": 3}})
    with pytest.raises(ConfigError, match=r"^profile\.tick: must be >= 0"):
        RunRecord.from_dict({**rec, "profile": {**good, "tick": -1.0}})
    with pytest.raises(ConfigError, match=r"^acceptance\.semantics: does not match"):
        AcceptanceSpec.from_dict(
            {**AcceptanceSpec.iid(0.5).to_dict(), "semantics": "something else"}
        )
    with pytest.raises(ConfigError, match="integer"):
        SchemeConfig.from_dict({"kind": "eesd", "exit_layer": 2.0, "gamma": 3})


def test_timing_accepts_a_bare_number_and_checks_spread():
    assert Timing.from_dict(0.5) == Timing(0.5)
    with pytest.raises(ConfigError, match="lo"):
        Timing.from_dict({"median": 1.0, "lo": 2.0})
    t = Timing.of_samples([3.0, 1.0, 2.0])
    assert (t.median, t.lo, t.hi) == (2.0, 1.0, 3.0)
