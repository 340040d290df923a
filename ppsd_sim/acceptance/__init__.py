"""Acceptance: samplers that realise an AcceptanceSpec, and converters between semantics."""

from ppsd_sim.acceptance.sampler import INFINITE_RUN, AcceptanceSampler, RunCursor
from ppsd_sim.acceptance.semantics import (
    histogram_from_alphas,
    iid_alpha_from_tau,
    marginal_rate,
    marginal_rate_eesd,
    per_position_from_histogram,
    survival,
    tau,
)

__all__ = [
    "INFINITE_RUN",
    "AcceptanceSampler",
    "RunCursor",
    "histogram_from_alphas",
    "iid_alpha_from_tau",
    "marginal_rate",
    "marginal_rate_eesd",
    "per_position_from_histogram",
    "survival",
    "tau",
]
