"""Acceptance: samplers that realise an AcceptanceSpec, converters between semantics, and the
vocabularies other tools report acceptance in."""

from ppsd_sim.acceptance.sampler import INFINITE_RUN, AcceptanceSampler, RunCursor
from ppsd_sim.acceptance.semantics import (
    histogram_from_alphas,
    iid_alpha_from_tau,
    judged_chain_of_positions,
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
    "judged_chain_of_positions",
    "marginal_rate",
    "marginal_rate_eesd",
    "per_position_from_histogram",
    "survival",
    "tau",
]
