"""The embedded default example: what ``ppsd sim`` shows a new user with no arguments.

Its latencies are illustrative round numbers for a 32-layer, 7B-class model on one
accelerator per stage (labelled ``source: example``), not a measurement.
"""

from __future__ import annotations

from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.profile import HardwareProfile, Provenance
from ppsd_sim.records.scheme import SchemeConfig

EXAMPLE_LAYERS = 32
EXAMPLE_EXIT = 8
EXAMPLE_STAGES = 4
EXAMPLE_ALPHA = 0.8
EXAMPLE_GAMMA = 4
EXAMPLE_TOKENS = 100_000


def example_profile() -> HardwareProfile:
    """32 layers × 0.5 ms, heads 0.25 ms, 20 µs hop, 30 µs tick, 40 µs crop (illustrative)."""
    return HardwareProfile.uniform(
        EXAMPLE_LAYERS,
        0.5e-3,
        0.5,
        hop=20e-6,
        tick=30e-6,
        flush=40e-6,
        verify_tokens=(1, 2, 4, 8, 16),
        verify_factor=(1.0, 1.02, 1.05, 1.12, 1.3),
        provenance=Provenance(
            source="example",
            model="32-layer 7B-class (illustrative)",
            notes="illustrative round numbers, not a measurement",
        ),
    )


def example_schemes() -> list[SchemeConfig]:
    return [
        SchemeConfig.ar(),
        SchemeConfig.eesd(EXAMPLE_EXIT, EXAMPLE_GAMMA),
        SchemeConfig.ppsd_even(EXAMPLE_LAYERS, EXAMPLE_STAGES),
    ]


def example_acceptance() -> AcceptanceSpec:
    return AcceptanceSpec.iid(EXAMPLE_ALPHA)
