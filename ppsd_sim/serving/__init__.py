"""Serving under load: many requests, continuous batching, a KV budget and the five schemes
(AR, PP-AR, TP-AR, EESD, PPSD) as SimPy models whose step costs depend on the load.

Front door: ``simulate_serving`` (one scheme) and ``compare_serving`` (several, with speedups
over AR and PP-AR at the same load); ``metrics_from_times`` turns a measured run's
per-request timestamps into the same metrics. Records: ``Workload``, ``ServingSettings``,
``ServingRecord`` (``ppsd_sim.records``). The modelling assumptions are in GLOSSARY.md
("Serving") and in each module's docstring.
"""

from ppsd_sim.serving.metrics import metrics_from_times
from ppsd_sim.serving.simulate import compare_serving, simulate_serving, twin

__all__ = ["compare_serving", "metrics_from_times", "simulate_serving", "twin"]
