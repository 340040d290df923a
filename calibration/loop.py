"""profile → predict → measure → compare → report, as one call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from calibration.compare import Row, Summary, findings_of, summarise
from calibration.gate import hardware_class
from calibration.grid import Cell, default_grid, drafter_grid
from calibration.measure import Measured, Progress, measure_grid, wall_clock
from calibration.predict import predict
from calibration.report import build_record, write_report
from ppsd_real import profiler, runner
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_real.sampling import GREEDY, SamplingSpec
from ppsd_real.threads import torch_threads
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, SchemeConfig
from ppsd_sim.records.decoding import GREEDY as GREEDY_DECODING
from ppsd_sim.records.decoding import DecodingSettings
from ppsd_sim.records.io import check_writable_dir


@dataclass
class Calibration:
    profile: HardwareProfile
    rows: list[Row]
    summary: Summary
    paths: dict[str, Path]
    resumed: int = 0  # cell measurements (one cell, one repeat) resumed from the folder
    profile_resumed: bool = False  # the profile too came from the interrupted run


def measure_profile(
    spec: ModelSpec,
    n_layers_hint: int | None = None,
    repeats: int = 30,
    transport: str = "pipe",
    sampling: SamplingSpec = GREEDY,
) -> HardwareProfile:
    """The profile the predictions rest on: layer/head/crop latencies, and hop, per-tick cost
    and concurrency slowdown measured between real stage processes; at a sampling
    ``sampling``, the cost of choosing a token that way too."""
    with torch_threads(1):
        m = runner.load(spec)
        layers = m.n_layers
        scheme = SchemeConfig.ppsd((layers // 2, layers))
        # the backend lets the profiler time hop, tick and contention between real stages
        with runner.open_distributed(
            spec, scheme, layers, DrafterSpec(), transport=transport
        ) as be:
            return profiler.profile(m, repeats, backend=be, threads=1, sampling=sampling)


def rows_of(
    profile: HardwareProfile,
    measured: list[Measured],
    sim_tokens: int,
    baseline: str | None = None,
    decoding: DecodingSettings = GREEDY_DECODING,
) -> list[Row]:
    """One row per cell: predicted at the cell's α, or at the acceptance the run measured when
    the early exit drafted (its α is not set), decoded as the cells were (``decoding``);
    ``baseline`` names the measured speedup's baseline where it is not greedy AR on one
    thread."""
    rows = []
    for meas in measured:
        c: Cell = meas.cell
        pred = predict(profile, c, tokens=sim_tokens, alpha=meas.observed_alpha, decoding=decoding)
        replay = (
            predict(profile, c, tokens=sim_tokens, trace=meas.trace, decoding=decoding)
            if meas.trace
            else None
        )
        rows.append(
            Row(
                label=c.label,
                scheme=c.scheme.kind,
                alpha=c.alpha,
                measured=meas.median,
                measured_lo=min(meas.speedups),
                measured_hi=max(meas.speedups),
                predicted=pred.speedup,
                replayed=None if replay is None else replay.speedup,
                observed_alpha=meas.observed_alpha,
                flags=pred.flags,
                baseline=baseline,
            )
        )
    return rows


def run_calibration(
    spec: ModelSpec,
    out: Path,
    *,
    quick: bool = False,
    tokens: int = 128,
    repeats: int = 5,
    sim_tokens: int = 20_000,
    transport: str = "pipe",
    command: str = "",
    on_progress=None,
    drafter: str = "oracle",
    sampling: SamplingSpec = GREEDY,
    heads: Mapping[int, str | None] | None = None,
    heads_label: str = "",
) -> Calibration:
    """The whole loop into ``out``. What it measures is saved there as it goes (``Progress``):
    the same call after an interruption resumes it; other settings are refused by name.
    ``drafter="early-exit"``: the ``drafter_grid``, drafted by the model's exit with ``heads``
    (exit → trained head file; ``heads_label`` says which in the report), decoded with
    ``sampling`` (the AR baseline too)."""
    if drafter == "oracle" and not sampling.greedy:
        raise ConfigError(
            "--temperature",
            "the oracle drafter is greedy only: give --drafter early-exit to sample",
        )
    check_writable_dir(out, "--out")
    progress = Progress.open(
        out,
        {
            "model": spec.name,
            "hardware": hardware_class(),
            "tokens": tokens,
            "repeats": repeats,
            "seed": 0,
            "transport": transport,
            "quick": quick,
            "drafter": drafter,
            "decoding": sampling.to_dict(),
            "heads": heads_label,
        },
    )
    profile = progress.load_profile()
    profile_resumed = profile is not None
    if profile is None:
        profile = measure_profile(spec, transport=transport, sampling=sampling)
        progress.save_profile(profile)
    grid = default_grid if drafter == "oracle" else drafter_grid
    cells = grid(profile.n_layers, quick=quick)
    measured = measure_grid(
        spec,
        cells,
        tokens=tokens,
        repeats=repeats,
        transport=transport,
        on_progress=on_progress,
        progress=progress,
        sampling=sampling,
        heads=heads,
    )
    baseline = None if sampling.greedy else f"AR 1 thread, sampled {sampling.label()}"
    rows = rows_of(profile, measured, sim_tokens, baseline, sampling.decoding)
    summary = summarise(rows)
    info = {
        "model": spec.name,
        "hardware": hardware_class(),
        "date": wall_clock(),
        "tokens": tokens,
        "repeats": repeats,
        "sim_tokens": sim_tokens,
        "transport": transport,
        "command": command,
        "quick": quick,
        "drafter": drafter,
        "decoding": sampling.to_dict(),
        "heads": heads_label,
    }
    paths = write_report(out, build_record(rows, profile, info, findings_of(rows)))
    progress.remove()
    resumed = sum(meas.resumed for meas in measured)
    return Calibration(profile, rows, summary, paths, resumed, profile_resumed)
