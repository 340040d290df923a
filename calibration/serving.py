"""Serving calibration: batched AR, EESD, PP-AR and PPSD on real layers against the serving
simulator.

profile (batch-1 latencies + the batched step-cost grid) → measure each (batch, α) cell with
the batched runner (``ppsd_real.batched.run``: continuous batching, interleaved repeats, every
request's tokens checked against its batch-1 AR tokens) → predict the same requests (their
prompt lengths, output lengths, all waiting at t = 0, the same ``max_batch``) with the serving
simulator from the profile alone → compare throughput and p50 TPOT.

Each EESD and PPSD cell is predicted twice: at the acceptance its run measured, i.i.d. (the mean over
``seeds`` simulator seeds: a few requests realise few drafts, so one seed is noisy), and with
every request's own measured accept/reject trace replayed (acceptance noise removed, what is
left is the step costs). The machine's speed drifts between the profile and a cell (a shared
VM: 10-20 % over minutes with no steal time showing; a reference step timed beside the profile
and beside each cell did not track it, so no correction is applied), which the absolute
figures carry and the ``speedup`` rows (EESD over batched AR, paired repeat by repeat) cancel.
AR has no acceptance; its rows pool the AR runs of every α at that
batch, and so do PP-AR's (``pp_stages`` stage processes, layers split evenly: the serving
simulator's PP-AR with k micro-batches, priced from the same profile; its ``speedup`` rows are
over batched AR on one process, paired repeat by repeat). PPSD runs on the same number of
stage processes, drafting at the exit layer (``ServingGrid.ppsd_scheme``), with the oracle
drafter at each α like EESD.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from ppsd_real import profiler
from ppsd_real.batched.decoders import Served
from ppsd_real.batched.driver import BatchedDriver
from ppsd_real.batched.pipeline import BatchedPPAR
from ppsd_real.batched.profile import Grid as CostGrid
from ppsd_real.batched.profile import profile_batched, with_batched
from ppsd_real.batched.run import BatchedReport, measure_batched
from ppsd_real.drafters import DrafterSpec
from ppsd_real.machine_load import MachineLoad
from ppsd_real.runner import Loaded
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate
from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.profile import HardwareProfile
from ppsd_sim.records.scheme import SchemeConfig
from ppsd_sim.records.serving_calibration import ServingCheck
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.records.timing import Timing
from ppsd_sim.records.workload import Request, Workload
from ppsd_sim.serving.metrics import metrics_from_times
from ppsd_sim.serving.simulate import simulate_serving

BATCHES = (1, 2, 4, 8)
ALPHAS = (0.6, 0.9)
QUICK_BATCHES = (1, 4)
QUICK_ALPHAS = (0.9,)
#: the issue's target for both metrics
TARGET_MEDIAN, TARGET_WORST = 0.05, 0.10


@dataclass(frozen=True)
class ServingGrid:
    """What is measured: every batch × α, ``requests_per_slot`` × batch requests per cell (so
    that finished sequences are replaced and continuous batching is exercised), ``tokens`` output
    tokens each, EESD at ``exit_layer`` drafting ``gamma`` per round with the oracle drafter."""

    batches: tuple[int, ...] = BATCHES
    alphas: tuple[float, ...] = ALPHAS
    tokens: int = 32
    gamma: int = 4
    exit_layer: int | None = None
    requests_per_slot: int = 2
    pp_stages: int | None = 2  # batched PP-AR on this many stage processes (None: not measured)

    def __post_init__(self) -> None:
        b = validate.sequence("--batches", self.batches, min_len=1)
        bs = tuple(validate.integer(f"--batches[{i}]", v, lo=1, hi=64) for i, v in enumerate(b))
        if list(bs) != sorted(set(bs)):
            raise ConfigError("--batches", f"must be increasing without repeats, got {list(bs)}")
        a = validate.sequence("--alphas", self.alphas, min_len=1)
        al = tuple(validate.probability(f"--alphas[{i}]", v) for i, v in enumerate(a))
        object.__setattr__(self, "batches", bs)
        object.__setattr__(self, "alphas", al)
        validate.integer("--tokens", self.tokens, lo=2, hi=4096)
        validate.integer("--gamma", self.gamma, lo=1, hi=64)
        validate.integer("requests_per_slot", self.requests_per_slot, lo=1, hi=64)
        if self.pp_stages is not None:
            validate.integer("--pp-stages", self.pp_stages, lo=2, hi=64)

    def exit_for(self, n_layers: int) -> int:
        e = n_layers // 2 if self.exit_layer is None else self.exit_layer
        if not 1 <= e < n_layers:
            raise ConfigError("--exit", f"must satisfy 1 <= E < L = {n_layers}, got {e}")
        return e

    def pp_scheme(self, n_layers: int) -> SchemeConfig | None:
        """The PP-AR measured and predicted: ``pp_stages`` even stages (None: not measured)."""
        if self.pp_stages is None:
            return None
        if self.pp_stages > n_layers:
            raise ConfigError("--pp-stages", f"at most one stage per layer (L = {n_layers})")
        return SchemeConfig.pp_ar_even(n_layers, self.pp_stages)

    def ppsd_scheme(self, n_layers: int) -> SchemeConfig | None:
        """The PPSD measured and predicted on the same ``pp_stages`` stage processes, drafting
        at the exit layer (``measure_batched``'s; None: not measured)."""
        if self.pp_stages is None:
            return None
        return SchemeConfig.ppsd_split(
            n_layers,
            self.pp_stages,
            self.exit_for(n_layers),
            stages_field="--pp-stages",
            exit_field="--exit",
        )

    @property
    def cells(self) -> list[tuple[int, float]]:
        return [(b, a) for b in self.batches for a in self.alphas]


def serving_profile(
    m: Loaded, repeats: int, exit_layer: int, gamma: int, pp_stages: int | None = None
) -> HardwareProfile:
    """The batch-1 full-model latencies and the batched step-cost grid, with the profiler's
    defaults and one torch thread (the caller's). With ``pp_stages`` the hop is measured too,
    between the batched PP-AR's own stage processes (``BatchedPPAR.hop_samples``: one row, one
    token); without, it stays 0 (AR and EESD hand nothing between processes)."""
    prof = profiler.profile(m, repeats, backend=None, threads=1)
    prof = with_batched(
        prof, profile_batched(m, CostGrid(), repeats, exit_layer=exit_layer, gamma=gamma)
    )
    if pp_stages is None:
        return prof
    scheme = SchemeConfig.pp_ar_even(m.n_layers, pp_stages)
    with BatchedPPAR(BatchedDriver(m.driver), m.spec, scheme, pp_stages) as pp:
        hops = pp.hop_samples(1, max(repeats, 50) * 4)
    notes = json.loads(prof.provenance.notes or "{}")
    notes["hop"] = (
        f"one-way hand-off of one row's hidden state between batched PP-AR stage processes "
        f"({pp_stages} stages, pipes, packed as a group step is): a trip round all stages, "
        "no layer run, ÷ k"
    )
    return replace(
        prof,
        hop=Timing.of_samples(hops),
        provenance=replace(prof.provenance, notes=json.dumps(notes)),
    )


@dataclass
class MeasuredCell:
    """One (batch, α) measurement: the batched report and the prompts it served."""

    batch: int
    alpha: float
    prompt_lengths: tuple[int, ...]
    report: BatchedReport

    def runs(self, scheme: str) -> list[Served]:
        return self.report.served.get(scheme, [])

    def speedups(self, scheme: str) -> list[float]:
        """``scheme``'s per-repeat speedup over batched AR timed around it."""
        return next((list(r.speedups) for r in self.report.rows if r.name == scheme), [])


def measure_cells(
    m: Loaded,
    prompts: Sequence[Sequence[int]],
    grid: ServingGrid,
    repeats: int,
    seed: int = 0,
    on_cell: Callable[[int, int], None] | None = None,
) -> list[MeasuredCell]:
    """Every cell of ``grid``, in order, with the first ``batch × requests_per_slot`` prompts."""
    e = grid.exit_for(m.n_layers)
    grid.pp_scheme(m.n_layers)  # refused before any cell, not after
    grid.ppsd_scheme(m.n_layers)
    out: list[MeasuredCell] = []
    for i, (b, a) in enumerate(grid.cells):
        n = b * grid.requests_per_slot
        if n > len(prompts):
            raise ConfigError("prompts", f"batch {b} needs {n} prompts, {len(prompts)} given")
        use = [list(p) for p in prompts[:n]]
        rep = measure_batched(
            m,
            use,
            grid.tokens,
            b,
            e,
            grid.gamma,
            DrafterSpec("oracle", a, seed),
            repeats,
            pp_stages=grid.pp_stages,
        )
        out.append(MeasuredCell(b, a, tuple(len(p) for p in use), rep))
        if on_cell is not None:
            on_cell(i + 1, len(grid.cells))
    return out


def run_figures(runs: Sequence[Served], batch: int) -> dict[str, list[float]]:
    """Per timed run: output tokens/s over the makespan, and the p50 TPOT (the serving
    simulator's ``metrics_from_times``: measured and simulated share one formula)."""
    settings = ServingSettings(max_batch=batch)
    toks, tpot = [], []
    for s in runs:
        n = sum(len(r.tokens) for r in s.results)
        toks.append(n / s.time_s)
        t = metrics_from_times(s.times, settings, keep_requests=False)["tpot"]
        if t is not None:
            tpot.append(t.p50)
    return {"tokens_s": toks, "tpot_p50_s": tpot}


@dataclass(frozen=True)
class Predicted:
    """A prediction's figures by metric name (``speedup``: over predicted AR, set by the
    caller)."""

    tokens_s: float
    tpot_p50_s: float | None
    speedup: float | None = None

    def get(self, metric: str) -> float | None:
        return {"tokens_s": self.tokens_s, "tpot_p50_s": self.tpot_p50_s}.get(metric, self.speedup)


def predict_requests(
    profile: HardwareProfile,
    scheme: SchemeConfig,
    prompt_lengths: Sequence[int],
    tokens: int,
    batch: int,
    acceptance: Sequence[AcceptanceSpec | None],
    seeds: int = 1,
) -> Predicted:
    """The serving simulator on these requests (all at t = 0, at most ``batch`` at once), the
    mean over ``seeds`` seeds of tokens/s and of p50 TPOT."""
    workload = Workload(
        requests=tuple(
            Request(int(p), tokens, None, acc)
            for p, acc in zip(prompt_lengths, acceptance, strict=True)
        )
    )
    settings = ServingSettings(max_batch=batch)
    recs = [
        simulate_serving(profile, scheme, workload, settings, seed=s, keep_profile=False)
        for s in range(seeds)
    ]
    tpots = [r.tpot.p50 for r in recs if r.tpot is not None]
    return Predicted(
        statistics.fmean(r.throughput_tok_s for r in recs),
        statistics.fmean(tpots) if tpots else None,
    )


@dataclass
class Compared:
    rows: list[ServingCheck]
    notes: list[str] = field(default_factory=list)
    loads: list[MachineLoad] = field(default_factory=list)


def compare_cells(
    profile: HardwareProfile, cells: Sequence[MeasuredCell], grid: ServingGrid, seeds: int = 16
) -> Compared:
    """One ServingCheck per (scheme, batch[, α], metric): see the module docstring."""
    e = grid.exit_for(profile.n_layers)

    ar = SchemeConfig.ar()
    eesd = SchemeConfig.eesd(e, grid.gamma)
    pp = grid.pp_scheme(profile.n_layers)
    speculative = [("eesd", eesd)]
    ppsd = grid.ppsd_scheme(profile.n_layers)
    if ppsd is not None:
        speculative.append(("ppsd", ppsd))
    out = Compared([])
    for b in grid.batches:
        at_b = [c for c in cells if c.batch == b]
        if not at_b:
            continue
        lengths = at_b[0].prompt_lengths
        n = len(lengths)
        ar_runs = [s for c in at_b for s in c.runs("ar")]
        ar_pred = predict_requests(profile, ar, lengths, grid.tokens, b, [None] * n)
        out.rows += _checks("ar", b, n, None, None, run_figures(ar_runs, b), ar_pred, None)
        if pp is not None:
            pp_runs = [s for c in at_b for s in c.runs("pp_ar")]
            pp_pred = predict_requests(profile, pp, lengths, grid.tokens, b, [None] * n)
            pp_pred = replace(pp_pred, speedup=pp_pred.tokens_s / ar_pred.tokens_s)
            figures = {
                **run_figures(pp_runs, b),
                "speedup": [x for c in at_b for x in c.speedups("pp_ar")],
            }
            out.rows += _checks("pp_ar", b, n, None, None, figures, pp_pred, None)
        for name, scheme in speculative:
            for c in at_b:
                out.rows += _speculative_checks(
                    profile, name, scheme, c, ar_pred, grid.tokens, seeds, out.notes
                )
        for c in at_b:
            if c.report.load is not None:
                out.loads.append(c.report.load)
    # a note every cell made is said once; the others name their cell
    common = set.intersection(*(set(c.report.notes) for c in cells)) if cells else set()
    out.notes += sorted(common)
    for c in cells:
        out.notes += [
            f"batch {c.batch} α={c.alpha:g}: {x}" for x in c.report.notes if x not in common
        ]
    return out


def _speculative_checks(
    profile: HardwareProfile,
    name: str,
    scheme: SchemeConfig,
    c: MeasuredCell,
    ar_pred: Predicted,
    tokens: int,
    seeds: int,
    notes: list[str],
) -> list[ServingCheck]:
    """A speculative scheme's checks in one cell: predicted at the acceptance its first timed
    run observed (iid, the mean over ``seeds``) and replayed on that run's own traces."""
    runs = c.runs(name)
    traces = [r.trace for r in runs[0].results] if runs else []
    flat = [t for tr in traces for t in tr]
    label = name.upper()
    if not flat:
        notes.append(f"{label} batch {c.batch} α={c.alpha:g}: no draft was judged; skipped")
        return []
    lengths, b = c.prompt_lengths, c.batch
    n = len(lengths)
    observed = sum(flat) / len(flat)
    iid = AcceptanceSpec.iid(min(observed, 1.0))
    pred = predict_requests(profile, scheme, lengths, tokens, b, [iid] * n, seeds)
    replay_acc = [AcceptanceSpec.from_trace(tr) if tr else iid for tr in traces]
    replay = predict_requests(profile, scheme, lengths, tokens, b, replay_acc)
    figures = {**run_figures(runs, b), "speedup": c.speedups(name)}
    pred = replace(pred, speedup=pred.tokens_s / ar_pred.tokens_s)
    replay = replace(replay, speedup=replay.tokens_s / ar_pred.tokens_s)
    return _checks(name, b, n, c.alpha, observed, figures, pred, replay)


def _checks(
    scheme: str,
    batch: int,
    requests: int,
    alpha: float | None,
    observed: float | None,
    figures: dict[str, list[float]],
    pred: Predicted,
    replay: Predicted | None,
) -> list[ServingCheck]:
    rows = []
    for metric, vals in figures.items():
        p = pred.get(metric)
        if not vals or p is None:
            continue
        rows.append(
            ServingCheck(
                scheme,
                batch,
                requests,
                alpha,
                observed,
                metric,
                statistics.median(vals),
                min(vals),
                max(vals),
                p,
                None if replay is None else replay.get(metric),
            )
        )
    return rows
