"""``--tp-profile``: the one reading of a threaded profile as TP-AR(k) costs, shared by
``ppsd serving`` and ``ppsd plan`` (``ppsd_sim.serving.tp_profile``)."""

from __future__ import annotations

import pytest

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, Provenance, write_record
from ppsd_sim.serving.tp_profile import with_tp_profile


def _threaded(tmp_path, threads, n_layers=8, name="t.json"):
    path = tmp_path / name
    prof = HardwareProfile.uniform(n_layers, 0.6e-3, 0.5, provenance=Provenance(threads=threads))
    write_record(path, prof)
    return str(path)


def test_degree_from_provenance_or_flag_and_same_degree_replaced(tmp_path):
    base = HardwareProfile.uniform(8, 1e-3, 0.5)
    two = with_tp_profile(base, _threaded(tmp_path, 2))
    assert [t.degree for t in two.tp] == [2]
    # TP-2 layers cost what the 2-thread profile measured
    assert two.tp[0].layers_cost(0, 8).time(1) == pytest.approx(8 * 0.6e-3)
    # an explicit degree wins over provenance; the same degree again replaces, others stay
    both = with_tp_profile(two, _threaded(tmp_path, 2, name="u.json"), degree=4)
    assert sorted(t.degree for t in both.tp) == [2, 4]
    again = with_tp_profile(both, _threaded(tmp_path, 4, name="v.json"))
    assert sorted(t.degree for t in again.tp) == [2, 4]


@pytest.mark.parametrize(
    ("threads", "n_layers", "kw", "message"),
    [
        (2, 6, {}, "--tp-profile: has 6 layers, the profile 8"),
        (None, 8, {}, "--tp-profile: needs provenance.threads >= 2 (measured with k threads)"),
        (1, 8, {"degree_flag": "--tp"}, "--tp-profile: needs --tp K (or provenance.threads >= 2)"),
        (None, 8, {"degree": 1, "degree_flag": "--tp"}, "--tp-profile: needs --tp K"),
    ],
)
def test_refusals_name_the_flag(tmp_path, threads, n_layers, kw, message):
    base = HardwareProfile.uniform(8, 1e-3, 0.5)
    with pytest.raises(ConfigError) as err:
        with_tp_profile(base, _threaded(tmp_path, threads, n_layers), **kw)
    assert str(err.value).startswith(message)
