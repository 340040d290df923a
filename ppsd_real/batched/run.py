"""Measure batched EESD against batched AR at the same batch on a real model.

Both schemes serve the same requests with the same scheduler (``batched.decoders``); they are
timed by the project's one measurement loop (``ppsd_real.bench``: interleaved repeat after
repeat, one warm-up repeat excluded, the baseline — batched AR — right before and after each
repeat's EESD run, speedups paired per repeat, the machine's load read). Every request's
tokens are checked against its batch-1 AR tokens: EESD must equal them (``NotLossless``
otherwise); batched AR differing (float sums of other shapes) is noted, not refused.
Throughput, TTFT and TPOT come from each run's per-request timestamps through the serving
simulator's own ``metrics_from_times``, so measured and simulated serving share one formula.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ppsd_real.batched.decoders import ARRIVALS, BatchedAR, BatchedEESD, Request, Served
from ppsd_real.batched.driver import BatchedDriver
from ppsd_real.batched.pipeline import BatchedPPAR
from ppsd_real.batched.pipeline_ppsd import BatchedPPSD
from ppsd_real.bench import Bench, Variant, measure
from ppsd_real.decoders import ARDecoder
from ppsd_real.decoders.result import DecodeResult
from ppsd_real.drafters import Drafter, DrafterSpec, load_ee_head
from ppsd_real.machine_load import MachineLoad
from ppsd_real.runner import Loaded
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig, validate
from ppsd_sim.records.serving_record import ServingSettings
from ppsd_sim.serving.metrics import metrics_from_times

#: each scheme's name in notes
SHORT = {
    "ar": "batched AR",
    "eesd": "batched EESD",
    "pp_ar": "batched PP-AR",
    "ppsd": "batched PPSD",
}

#: the default prompts' lengths, cycled: requests of mixed lengths, as real users send
PROMPT_LENGTHS = (16, 40, 24, 64, 32, 48, 8, 56)


def default_prompts(m: Loaded, model_dir: str | None, n: int, seed: int = 0) -> list[list[int]]:
    """``n`` prompts of mixed lengths (``PROMPT_LENGTHS``): consecutive pieces of the held-out
    stdlib text for a model with a tokenizer (text it did not train on), else seeded ids."""
    lengths = [PROMPT_LENGTHS[i % len(PROMPT_LENGTHS)] for i in range(n)]
    if model_dir and (Path(model_dir) / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        from ppsd_real.lm.corpus import load_corpus

        tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        ids: list[int] = []
        for text in load_corpus().read("held_out"):
            ids += tok.encode(text).ids
            if len(ids) >= sum(lengths):
                break
        if len(ids) >= sum(lengths):
            starts = np.cumsum([0, *lengths[:-1]])
            return [ids[s : s + k] for s, k in zip(starts, lengths, strict=True)]
    rng = np.random.default_rng(seed)
    return [[int(x) for x in rng.integers(1, m.vocab, size=k)] for k in lengths]


@dataclass(frozen=True)
class SchemeRow:
    """One scheme's figures: medians over the timed repeats (GLOSSARY.md, "Batched runs")."""

    name: str
    label: str
    time_s: float  # median makespan
    tokens_s: float
    tpot_p50_s: float | None
    ttft_p50_s: float
    speedup: float  # over batched AR at the same batch, paired per repeat
    tpot_speedup: float | None  # batched AR's p50 TPOT / this one's
    acceptance: float | None
    speedups: tuple[float, ...] = ()  # per timed repeat, over batched AR around it


@dataclass
class BatchedReport:
    """A batched measurement: the load, each scheme's row, and what was noticed."""

    batch: int
    requests: int
    arrivals: str
    output_tokens: int
    repeats: int
    rows: list[SchemeRow]
    load: MachineLoad | None = None
    notes: list[str] = field(default_factory=list)
    served: dict[str, list[Served]] = field(default_factory=dict)  # the timed runs, by scheme

    def lines(self) -> list[str]:
        """The table ``ppsd run --batch`` prints."""
        how = "all waiting at t = 0" if self.arrivals == "batch" else "a closed loop of users"
        out = [
            f"{self.requests} requests ({how}), batch <= {self.batch}, {self.output_tokens} "
            f"output tokens in all; median of {self.repeats} repeats (warm-up excluded); "
            "speedups over batched AR at the same batch, paired by repeat",
            f"{'scheme':34} {'tok/s':>9} {'TPOT p50 ms':>12} {'TTFT p50 ms':>12} "
            f"{'accept':>7} {'x AR tok/s':>11} {'x AR TPOT':>10}",
        ]
        for r in self.rows:
            tpot = "-" if r.tpot_p50_s is None else f"{r.tpot_p50_s * 1e3:.2f}"
            acc = "-" if r.acceptance is None else f"{r.acceptance:.2f}"
            tsp = "-" if r.tpot_speedup is None else f"{r.tpot_speedup:.2f}x"
            out.append(
                f"{r.label:34} {r.tokens_s:9.1f} {tpot:>12} {r.ttft_p50_s * 1e3:12.2f} "
                f"{acc:>7} {r.speedup:10.2f}x {tsp:>10}"
            )
        out += [f"note: {n}" for n in self.notes]
        if self.load is None:
            out.append("machine load: unknown (no /proc/stat)")
        elif self.load.busy:
            out.append(
                f"WARNING: the machine was busy while measuring ({self.load.describe()}): "
                "the figures are not reliable; measure on a quiet machine"
            )
        else:
            out.append(f"machine load: quiet ({self.load.describe()})")
        return out


def _first_difference(tokens: list[list[int]], refs: list[list[int]]) -> str | None:
    for i, (got, want) in enumerate(zip(tokens, refs, strict=True)):
        if got != want:
            at = next((j for j, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), 0)
            return f"request {i} from token {at}"
    return None


def measure_batched(
    m: Loaded,
    prompts: list[list[int]],
    new_tokens: int,
    batch: int,
    exit_layer: int,
    gamma: int,
    drafter: DrafterSpec,
    repeats: int = 3,
    arrivals: str = "batch",
    cache_reuse: bool = True,
    on_run: Callable[[], None] | None = None,
    pp_stages: int | None = None,
) -> BatchedReport:
    """Batched AR (the baseline) and batched EESD on ``prompts`` (one request each, all
    generating ``new_tokens``), at most ``batch`` at once (see the module docstring); with
    ``pp_stages`` = k also batched PP-AR on k stage processes (layers split evenly: what k
    devices give without speculation) and batched PPSD on k stage processes drafting at
    ``exit_layer`` (``SchemeConfig.ppsd_split``: the same split when E = L / 2 and k = 2) with
    the same drafter as EESD, both timed against the same batched AR."""
    validate.integer("--batch", batch, lo=1, hi=100_000)
    validate.integer("--tokens", new_tokens, lo=1)
    validate.integer("--repeats", repeats, lo=1, hi=1000)
    validate.choice("arrivals", arrivals, ARRIVALS)
    if not prompts:
        raise ConfigError("--requests", "needs at least one request")
    bd = BatchedDriver(m.driver)
    pp_scheme = ppsd_scheme = None
    if pp_stages is not None:  # refused before any work
        pp_scheme = SchemeConfig.pp_ar_even(m.n_layers, pp_stages)
        ppsd_scheme = SchemeConfig.ppsd_split(
            m.n_layers, pp_stages, exit_layer, stages_field="--stages", exit_field="--exit"
        )
    refs = [ARDecoder(m.driver).decode(list(p), new_tokens).tokens for p in prompts]
    ee_head = load_ee_head(drafter, m.driver.parts.lm_head)
    plain = [Request(tuple(p), new_tokens) for p in prompts]
    drafting = [
        Request(
            tuple(p),
            new_tokens,
            Drafter(
                DrafterSpec(drafter.kind, drafter.alpha, drafter.seed + i, drafter.head_path),
                m.vocab,
                ref,
            ),
        )
        for i, (p, ref) in enumerate(zip(prompts, refs, strict=True))
    ]
    ar = BatchedAR(bd, batch, arrivals)
    eesd = BatchedEESD(bd, batch, exit_layer, gamma, cache_reuse, ee_head)
    log: dict[str, list[Served]] = {"ar": [], "eesd": []}
    differs: dict[str, str] = {}
    if pp_scheme is not None:
        log["pp_ar"] = []
        log["ppsd"] = []

    def timed(name: str, engine: BatchedAR, reqs: list[Request]) -> Callable[[int], DecodeResult]:
        def run(rep: int) -> DecodeResult:
            served = engine.run(reqs)
            if rep > 0:
                log[name].append(served)
            if name != "eesd" and name not in differs:
                diff = _first_difference([r.tokens for r in served.results], refs)
                if diff is not None:
                    differs[name] = diff
            return served.result()

        return run

    reference = [t for r in refs for t in r]
    with Bench() as bench, contextlib.ExitStack() as stack:
        variants = [Variant("eesd", timed("eesd", eesd, drafting))]
        if pp_scheme is not None and ppsd_scheme is not None:
            pp = stack.enter_context(BatchedPPAR(bd, m.spec, pp_scheme, batch, arrivals))
            variants.append(Variant("pp_ar", timed("pp_ar", pp, plain), lossless=False))
            ppsd = stack.enter_context(
                BatchedPPSD(bd, m.spec, ppsd_scheme, batch, arrivals, ee_head=drafter.head_path)
            )
            variants.append(Variant("ppsd", timed("ppsd", ppsd, drafting), lossless=False))
        got = measure(
            variants,
            Variant("ar", timed("ar", ar, plain), lossless=False),
            reference,
            repeats=repeats,
            on_run=on_run,
        )
    settings = ServingSettings(max_batch=batch)
    metrics = {
        name: [metrics_from_times(s.times, settings, keep_requests=False) for s in runs]
        for name, runs in log.items()
    }

    def p50(name: str, key: str) -> float | None:
        vals = [x[key].p50 for x in metrics[name] if x[key] is not None]
        return statistics.median(vals) if vals else None

    total = len(prompts) * new_tokens
    labels = {
        "ar": "batched AR (baseline)",
        "eesd": f"batched EESD(E={exit_layer}, γ={gamma}"
        + ("" if cache_reuse else ", no reuse")
        + ")",
    }
    if pp_scheme is not None and ppsd_scheme is not None:
        labels["pp_ar"] = f"batched PP-AR(k={pp_stages}), {pp_stages} processes"
        labels["ppsd"] = f"batched PPSD(k={pp_stages}, E={ppsd_scheme.draft_exit_layer})"
    rows = []
    for name in log:
        med = got.median_s(name)
        tpot, base_tpot = p50(name, "tpot"), p50("ar", "tpot")
        trace = [t for s in log[name] for r in s.results for t in r.trace]
        rows.append(
            SchemeRow(
                name,
                labels[name],
                med,
                total / med if med > 0 else 0.0,
                tpot,
                p50(name, "ttft") or 0.0,
                got.speedup(name),
                None if tpot is None or base_tpot is None or tpot <= 0 else base_tpot / tpot,
                sum(trace) / len(trace) if trace else None,
                tuple(got.ratios(name)),
            )
        )
    notes = [
        f"{SHORT[name]} differed from batch-1 AR at {d} (float sums)" for name, d in differs.items()
    ]
    if pp_scheme is not None and ppsd_scheme is not None:
        notes.append(
            f"PP-AR runs on {pp_stages} processes (stages {list(pp_scheme.stage_boundaries)}), "
            f"PPSD on {pp_stages} (stages {list(ppsd_scheme.stage_boundaries)}), one torch "
            "thread each; their speedups are over batched AR on one"
        )
    return BatchedReport(
        batch, len(prompts), arrivals, total, repeats, rows, bench.load, notes, served=log
    )
