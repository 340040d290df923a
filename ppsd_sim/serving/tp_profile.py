"""``--tp-profile``: TP-AR(k) costs taken from a profile measured with k threads, the one
reading ``ppsd serving`` and ``ppsd plan --batch/--users/--rate`` share."""

from __future__ import annotations

from dataclasses import replace

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.io import load_document
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.serving.step_costs import tp_from_profile

FLAG = "--tp-profile"
HELP = (
    "a HardwareProfile measured with k threads: TP-AR(k)'s costs (on a CPU, TP-k is AR with "
    "k cores in one process)"
)


def with_tp_profile(
    profile: HardwareProfile,
    path: str,
    *,
    degree: int | None = None,
    degree_flag: str | None = None,
) -> HardwareProfile:
    """``profile`` with the TP-AR(k) costs of the profile file at ``path`` (measured with k
    threads in one process, see ``tp_from_profile``), replacing any TP-AR(k) it had. k is
    ``degree`` when given (the command's ``degree_flag``), else the file's
    ``provenance.threads``. Refusals name ``--tp-profile``."""
    threaded = HardwareProfile.from_dict(load_document(path, FLAG), FLAG)
    if threaded.n_layers != profile.n_layers:
        raise ConfigError(FLAG, f"has {threaded.n_layers} layers, the profile {profile.n_layers}")
    k = degree or threaded.provenance.threads
    if k is None or k < 2:
        need = (
            f"{degree_flag} K (or provenance.threads >= 2)"
            if degree_flag
            else "provenance.threads >= 2 (measured with k threads)"
        )
        raise ConfigError(FLAG, f"needs {need}")
    others = tuple(t for t in profile.tp if t.degree != k)
    return replace(profile, tp=(*others, tp_from_profile(threaded, k)))
