"""Stage timelines as Chrome / Perfetto trace JSON (open in chrome://tracing or ui.perfetto.dev)."""

from __future__ import annotations

from typing import Any

from ppsd_sim.records import validate
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.span import Span


def chrome_trace(
    spans: list[Span], scheme: SchemeConfig, *, title: str = "ppsd", origin: str = "simulated"
) -> dict[str, Any]:
    """One process, one thread per stage, one complete ('X') event per span, in µs.
    ``otherData.origin`` says whether the timeline was simulated or measured."""
    validate.choice("origin", origin, ("simulated", "measured"))
    names = _stage_names(scheme)
    events: list[dict[str, Any]] = [
        {
            "ph": "M",
            "pid": 0,
            "name": "process_name",
            "args": {"name": f"{title}: {scheme.label()}"},
        },
    ]
    for tid, name in enumerate(names):
        events.append(
            {"ph": "M", "pid": 0, "tid": tid, "name": "thread_name", "args": {"name": name}}
        )
        events.append(
            {
                "ph": "M",
                "pid": 0,
                "tid": tid,
                "name": "thread_sort_index",
                "args": {"sort_index": tid},
            }
        )
    for sp in sorted(spans, key=lambda x: (x.start, x.stage)):
        events.append(
            {
                "ph": "X",
                "pid": 0,
                "tid": sp.stage,
                "name": sp.name,
                "cat": sp.category,
                "ts": sp.start * 1e6,
                "dur": (sp.end - sp.start) * 1e6,
            }
        )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"origin": origin, "scheme": scheme.to_dict()},
    }


def _stage_names(scheme: SchemeConfig) -> list[str]:
    if scheme.kind != "ppsd":
        return ["device 0"]
    return [
        f"stage {s + 1} (layers {a}-{b - 1}, device {d})"
        for s, ((a, b), d) in enumerate(
            zip(scheme.stage_ranges(), scheme.stage_devices(), strict=True)
        )
    ]
