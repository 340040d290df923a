"""Closed forms for serving at a fixed batch: instant answers and the test oracles of the SimPy
serving model (built from the same ``step_costs``, so they can only disagree about dynamics).

- ``lockstep_time``: AR / TP-AR serving ``cohorts`` × ``batch`` identical requests that all
  arrive at once: each cohort is admitted together, prefilled in one step and decoded in
  lockstep, so the time is exact (a sum over the decode steps).
- ``pp_ar_tokens_per_s``: PP-AR in steady state with k micro-batches of m sequences: each
  wave's cycle is the longer of its round trip through the pipeline and k times the slowest
  stage's step; throughput = k·m / cycle. With equal stages and no hop, head or tick this is
  k × AR's throughput at batch m.
- ``eesd_tokens_per_s``: EESD with a full batch of B sequences at a fixed context, i.i.d.
  acceptance α: renewal reward over rounds, B·E[N] / (γ draft steps + verify + P(some
  sequence rejects)·flush), P = 1 − α^(γ·B).
"""

from __future__ import annotations

from ppsd_sim.analytic import expected_tokens_per_round
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.serving.step_costs import device_steps, stage_steps


def lockstep_time(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    batch: int,
    prompt: int,
    output: int,
    cohorts: int = 1,
) -> float:
    """Seconds to serve ``cohorts·batch`` requests of ``prompt`` + ``output`` tokens, all at
    t = 0, with ``max_batch = batch`` (AR or TP-AR)."""
    if scheme.kind not in ("ar", "tp_ar"):
        raise ConfigError("scheme.kind", f"lockstep_time is for AR and TP-AR, not {scheme.kind}")
    B = validate.integer("batch", batch, lo=1)
    P = validate.integer("prompt", prompt, lo=1)
    N = validate.integer("output", output, lo=1)
    c = validate.integer("cohorts", cohorts, lo=1)
    st = device_steps(profile, scheme)
    cohort = st.prefill(B * P, B) + sum(st.decode(B, B * (P + j)) for j in range(N - 1))
    return c * cohort


def pp_ar_tokens_per_s(
    profile: HardwareProfile, scheme: SchemeConfig, m: int, context: int = 0
) -> float:
    """Steady-state tokens/s of PP-AR with k waves of ``m`` sequences at ``context`` cached
    tokens each (see the module docstring)."""
    if scheme.kind != "pp_ar":
        raise ConfigError("scheme.kind", f"pp_ar_tokens_per_s is for PP-AR, not {scheme.kind}")
    m = validate.integer("m", m, lo=1)
    st = stage_steps(profile, scheme)
    K = m * validate.integer("context", context, lo=0)
    k = st.k
    busy = [st.compute(s, m, K) + (st.final(m) if s == k - 1 else 0.0) for s in range(k)]
    comp = [st.compute(s, m, K) for s in range(k)]
    trip = sum(comp) + (k - 1) * st.send(m) + st.final(m) + st.hop_s
    cycle = max(trip, k * max(busy))
    return k * m / cycle


def eesd_tokens_per_s(
    profile: HardwareProfile, scheme: SchemeConfig, alpha: float, batch: int, context: int
) -> float:
    """Long-run tokens/s of EESD on a full batch at a fixed context (module docstring)."""
    if scheme.kind != "eesd":
        raise ConfigError("scheme.kind", f"eesd_tokens_per_s is for EESD, not {scheme.kind}")
    alpha = validate.probability("alpha", alpha)
    B = validate.integer("batch", batch, lo=1)
    K = B * validate.integer("context", context, lo=0)
    st = device_steps(profile, scheme)
    g = st.gamma
    round_time = sum(st.draft(B, K + B * d) for d in range(g)) + st.verify(B, K + B * g, K)
    round_time += (1.0 - alpha ** (g * B)) * st.flush
    return B * expected_tokens_per_round(alpha, g) / round_time
