"""``ppsd calibrate``: run the calibration loop, or gate measured speedup in CI.

ppsd calibrate run [--quick]            profile → predict → measure → compare → report
ppsd calibrate serving [--quick]        the same for batched AR and EESD at several batch sizes
ppsd calibrate regress [--quick]        the CI speed gate (mode chosen by itself, see below)
ppsd calibrate baseline [--runs N]      record the baseline gate's speedups for this machine
ppsd calibrate tolerance [--runs N]     record the model-relative gate's tolerance

``regress`` runs the baseline gate (``gate.py``: speedups against a baseline of this hardware
class) and the model-relative gate (``model_gate.py``: measured ÷ predicted speedup against a
committed tolerance, no baseline needed). ``--mode auto`` runs both where a baseline exists
and the model-relative gate alone otherwise, and prints which.

Exit codes of ``regress``: 0 passed; 1 a drop beyond the noise threshold reproduced on a quiet
machine; 2 bad input; 3 inconclusive (the drop reproduced but other processes held the CPUs).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from calibration import gate, model_gate
from calibration.gate_run import Measurement, gate_cells, measure, model_layers
from calibration.grid import DRAFTERS, Cell
from calibration.measure import wall_clock
from ppsd_real.cli_run import DEFAULT_CPU_PRESET
from ppsd_real.model_loading import SHIPPED_MODEL, ModelSpec
from ppsd_real.sampling import SamplingSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import check_writable, decoding, validate

BASELINES = Path(__file__).resolve().parent / "baselines"
MODES = ("auto", "baseline", "model", "both")
BASELINE_GATE, MODEL_GATE = "baseline gate", "model-relative gate"


def configure(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Check the simulator against measurements, and gate measured speedup in CI. "
        "Each action has its own options: ppsd calibrate ACTION --help."
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_p = sub.add_parser(
        "run",
        help="profile, predict, measure and compare a grid of cells; write a report",
        description="Profile the model, predict every cell of the grid from that profile alone, "
        "measure the same cells on the real runner and write a report of predicted vs measured "
        "speedup.",
    )
    _common(run_p)
    run_p.add_argument("--quick", action="store_true", help="7 cells instead of 25")
    run_p.add_argument("--repeats", type=int, default=5, help="timed repeats per cell (default 5)")
    run_p.add_argument(
        "--out",
        help="results folder (default results/calibration/<hardware>/<model>, plus "
        "-early-exit and the decoding for --drafter early-exit)",
    )
    ee = run_p.add_argument_group(
        "real drafts",
        "--drafter early-exit calibrates on the model's own early exit instead of the oracle "
        "(whose acceptance is set): AR, EESD and 2-stage PPSD at two exits, predicted at the "
        "acceptance each run measured; greedy or sampled",
    )
    ee.add_argument(
        "--drafter",
        choices=DRAFTERS,
        default="oracle",
        help="oracle: the α grid (default); early-exit: the model's own drafts",
    )
    ee.add_argument(
        "--model-dir",
        help="a local model folder to calibrate (default with --drafter early-exit: the shipped "
        f"{SHIPPED_MODEL.name}; otherwise --preset)",
    )
    ee.add_argument("--heads", help="a heads folder from `ppsd heads train` to draft with")
    ee.add_argument(
        "--shared-head",
        action="store_true",
        help="draft with the model's LM head even where trained heads are shipped beside it",
    )
    decoding.add_args(ee, "the runs'")
    ee.add_argument(
        "--seed", type=int, default=0, help="sampling seed (an integer >= 0; default 0)"
    )

    from calibration import cli_serving

    cli_serving.configure(
        sub.add_parser(
            "serving",
            help="batched AR and EESD at several batch sizes, predicted vs measured throughput "
            "and TPOT; write a report",
        )
    )

    reg = sub.add_parser(
        "regress",
        help="the CI speed gate: measure the gate cells and judge them",
        description="Measure PPSD and EESD at α = 0.9 and judge them against a baseline of this "
        "hardware class, against the model's prediction from a profile taken in the same run, "
        "or both. Exit 0 passed, 1 a drop reproduced on a quiet machine, 2 bad input, "
        "3 inconclusive (busy machine).",
    )
    _common(reg)
    reg.add_argument("--quick", action="store_true", help="3 timed repeats per cell instead of 5")
    reg.add_argument("--repeats", type=int, help="timed repeats per cell (default 5; --quick: 3)")
    reg.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="auto (default): both gates where a baseline for this hardware class exists, the "
        "model-relative gate otherwise; baseline / model / both: those gates only (refused "
        "when what they need is missing)",
    )
    reg.add_argument(
        "--floor",
        type=float,
        help=f"smallest drop that fails, as a fraction (default: baseline gate {gate.FLOOR}, "
        f"with --quick {gate.QUICK_FLOOR}; model-relative gate: the tolerance record's)",
    )
    reg.add_argument("--baseline", help=f"baseline file (default {_default_baseline_text()})")
    reg.add_argument(
        "--tolerance",
        help="model-relative tolerance file (default: this hardware class's "
        "calibration/baselines/<hardware>__<model>.tolerance.json, else another class's "
        "tolerance for the model)",
    )

    base = sub.add_parser(
        "baseline",
        help="record the baseline gate's speedups on this machine",
        description="Measure the gate cells in independent runs on this machine and write them "
        "as the baseline of its hardware class. Refused, nothing written, on a busy machine.",
    )
    _common(base)
    base.add_argument(
        "--runs",
        type=int,
        default=5,
        help="independent runs (at least 3) whose spread joins the threshold (default 5)",
    )
    base.add_argument("--repeats", type=int, default=5, help="timed repeats per run (default 5)")
    base.add_argument("--baseline", help=f"file to write (default {_default_baseline_text()})")

    tol = sub.add_parser(
        "tolerance",
        help="record the model-relative gate's tolerance (measured ÷ predicted spread)",
        description="Run independent model-relative gate readings of unchanged code (quick "
        "profile, prediction, measurement each) and write the spread of measured ÷ predicted "
        "speedup and the control cost per step, with the machine they came from. Refused, "
        "nothing written, on a busy machine unless --provisional.",
    )
    _common(tol)
    tol.add_argument(
        "--runs", type=int, default=10, help="independent readings (at least 3; default 10)"
    )
    tol.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed repeats per reading (default 3, as `regress --quick`; the gate refuses "
        "fewer than the record's)",
    )
    tol.add_argument(
        "--tolerance",
        help="file to write (default calibration/baselines/<hardware>__<model>.tolerance.json)",
    )
    tol.add_argument(
        "--provisional",
        action="store_true",
        help="a trial record: written even on a busy machine, marked provisional (the gate "
        "says so whenever it uses it)",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset", default=DEFAULT_CPU_PRESET, help=f"model preset (default {DEFAULT_CPU_PRESET})"
    )
    p.add_argument("--tokens", type=int, default=128, help="tokens per measured run (default 128)")
    p.add_argument(
        "--transport", choices=("pipe", "gloo"), default="pipe", help="stage transport (pipe)"
    )


def _default_baseline_text() -> str:
    return "calibration/baselines/<hardware>__<model>.json"


def default_baseline(model: str) -> Path:
    """The committed baseline for this machine's hardware class and a model."""
    return BASELINES / f"{gate.hardware_class()}__{slug(model)}.json"


def default_tolerance(model: str) -> Path:
    """Where ``ppsd calibrate tolerance`` writes by default: this hardware class's record."""
    return BASELINES / f"{gate.hardware_class()}__{slug(model)}.tolerance.json"


def find_tolerance(model: str, folder: Path = BASELINES) -> Path | None:
    """This hardware class's tolerance for ``model``, else another class's (a non-provisional
    one first, then by name), else None."""
    own = folder / f"{gate.hardware_class()}__{slug(model)}.tolerance.json"
    if own.is_file():
        return own
    found = sorted(folder.glob(f"*__{slug(model)}.tolerance.json"))

    def provisional(p: Path) -> bool:
        try:
            return model_gate.load_tolerance(p).provisional
        except ConfigError:
            return True  # a broken file is never preferred (and is reported if chosen)

    found.sort(key=provisional)
    return found[0] if found else None


def slug(name: str) -> str:
    """A file-name-safe form of a model name ('preset:cpu-bench(seed=0)' → 'cpu-bench-seed0')."""
    import re

    name = name.removeprefix("preset:").replace("=", "")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def _progress(desc: str):
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="run", leave=False, file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def run(args: argparse.Namespace) -> int:
    command = "ppsd calibrate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    if args.action == "serving":
        from calibration import cli_serving

        return cli_serving.run(args, command)
    validate.integer("--tokens", args.tokens, lo=8)
    spec = _run_model(args) if args.action == "run" else ModelSpec(args.preset)
    if args.action == "run":
        return _run(args, spec, command)
    if args.action == "regress":
        return _regress(args, spec)
    validate.integer("--runs", args.runs, lo=3)  # two runs bound their spread only within ×8
    validate.integer("--repeats", args.repeats, lo=2)
    if args.action == "baseline":
        return _record_baseline(args, spec, command)
    return _record_tolerance(args, spec, command)


def _run_model(args: argparse.Namespace) -> ModelSpec:
    """The model ``calibrate run`` measures: --model-dir, else the shipped model for real
    drafts, else --preset."""
    if args.model_dir is None and args.drafter == "early-exit":
        return ModelSpec(preset=None, path=str(SHIPPED_MODEL))
    if args.model_dir is not None:
        if not (Path(args.model_dir) / "config.json").is_file():
            raise ConfigError(
                "--model-dir", f"{args.model_dir} is not a model folder (no config.json)"
            )
        return ModelSpec(preset=None, path=args.model_dir)
    return ModelSpec(args.preset)


def _sampling(args: argparse.Namespace) -> SamplingSpec:
    """The runs' decoding; refused where it cannot apply (the oracle only replays argmaxes)."""
    d = decoding.from_args(args)
    sampling = SamplingSpec(d.temperature, d.top_k, d.top_p, args.seed)
    for flag, given in (("--heads", args.heads), ("--shared-head", args.shared_head or None)):
        if given is not None and args.drafter == "oracle":
            raise ConfigError(flag, "applies to --drafter early-exit (the oracle uses no head)")
    if args.heads is not None and args.shared_head:
        raise ConfigError("--heads", "drafts with trained heads; --shared-head with the LM head")
    if not sampling.greedy and args.drafter == "oracle":
        raise ConfigError(
            "--temperature",
            "the oracle drafter is greedy only (it replays AR's argmax at a set rate): give "
            "--drafter early-exit to calibrate sampled decoding",
        )
    return sampling


def _heads(args: argparse.Namespace, spec: ModelSpec, n_layers: int) -> tuple[dict, str]:
    """Exit → the head file that drafts there (None: the LM head), and how to name them."""
    from calibration.grid import exits_for
    from ppsd_real.drafters import head_for_exit
    from ppsd_real.model_loading import model_fingerprint

    fingerprint = None if args.heads is None else model_fingerprint(spec)
    heads = {
        e: head_for_exit(
            e,
            model_dir=spec.path,
            heads_dir=args.heads,
            fingerprint=fingerprint,
            shared_head=args.shared_head,
        )
        for e in exits_for(n_layers)
    }
    if args.heads is not None:
        label = f"trained ({args.heads})"
    elif all(h is None for h in heads.values()):
        label = "shared LM head"
    else:
        label = "trained (shipped beside the model)"
    return heads, label


def _run(args: argparse.Namespace, spec: ModelSpec, command: str) -> int:
    validate.integer("--repeats", args.repeats, lo=1)
    sampling = _sampling(args)
    name = slug(spec.name)
    if args.drafter == "early-exit":
        name += "-early-exit" + ("" if sampling.greedy else "-" + slug(sampling.decoding.label()))
    out = Path(args.out) if args.out else Path("results/calibration") / gate.hardware_class() / name
    from calibration.loop import run_calibration
    from calibration.report import check_outputs

    check_outputs(out)  # every report file, before minutes of measurement, not after
    heads: dict = {}
    heads_label = ""
    if args.drafter == "early-exit":
        heads, heads_label = _heads(args, spec, model_layers(spec))

    cal = run_calibration(
        spec,
        out,
        quick=args.quick,
        tokens=args.tokens,
        repeats=args.repeats,
        transport=args.transport,
        command=command,
        on_progress=_progress("calibrate"),
        drafter=args.drafter,
        sampling=sampling,
        heads=heads,
        heads_label=heads_label,
    )
    s = cal.summary
    print(
        f"calibration of {spec.name} on {gate.hardware_class()}: median |error| "
        f"{s.median_abs_error:.1%}, worst {s.worst_abs_error:.1%} ({s.worst_cell}) over "
        f"{s.cells} cells"
    )
    for name, path in cal.paths.items():
        print(f"{name}: {path}")
    return 0


# ---- regress ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Which gates run, on what, and what to tell the user about the choice."""

    mode: str  # "baseline" | "model" | "both"
    baseline: gate.Baseline | None
    baseline_path: Path | None
    tolerance: model_gate.Tolerance | None
    tolerance_path: Path | None
    said: tuple[str, ...]


def choose_mode(
    requested: str,
    baseline_path: Path,
    baseline_explicit: bool,
    tolerance_path: Path | None,
    model: str,
) -> Plan:
    """The gates to run. ``auto``: both where this hardware class has a baseline, the
    model-relative gate alone where it has none; never nothing (a ConfigError instead)."""
    hw = gate.hardware_class()
    have_base = baseline_path.is_file()
    have_tol = tolerance_path is not None and tolerance_path.is_file()
    said: list[str] = []
    if requested == "auto":
        if not have_base and baseline_explicit:
            raise ConfigError(
                "--baseline",
                f"no baseline at {baseline_path} (leave --baseline out to let the gate choose, "
                "or give --mode model)",
            )
        if have_base and have_tol:
            mode = "both"
            said.append(f"speed gate: mode both (a baseline exists for {hw})")
        elif have_base:
            mode = "baseline"
            said.append(
                f"speed gate: mode baseline; the model-relative gate is NOT run: no tolerance "
                f"for {model} (record one with `ppsd calibrate tolerance`)"
            )
        elif have_tol:
            mode = "model"
            said.append(
                f"speed gate: mode model-relative (no speed baseline for this hardware class "
                f"{hw}: {baseline_path.name})"
            )
        else:
            raise ConfigError(
                "--mode",
                f"nothing to judge against: no speed baseline for this hardware class "
                f"({baseline_path}) and no model-gate tolerance for {model} in "
                f"{BASELINES}; record one with `ppsd calibrate baseline` or "
                "`ppsd calibrate tolerance`",
            )
    else:
        mode = requested
        said.append(f"speed gate: mode {'model-relative' if mode == 'model' else mode} (--mode)")
    base = gate.load_baseline(baseline_path) if mode in ("baseline", "both") else None
    tol = None
    if mode in ("model", "both"):
        if tolerance_path is None:
            raise ConfigError(
                "--tolerance",
                f"no model-gate tolerance for {model} in {BASELINES}: record one with "
                "`ppsd calibrate tolerance`",
            )
        tol = model_gate.load_tolerance(tolerance_path)
    return Plan(
        mode,
        base,
        baseline_path if base else None,
        tol,
        tolerance_path if tol else None,
        tuple(said),
    )


def _check_plan(plan: Plan, model: str, tokens: int, repeats: int, transport: str) -> None:
    """Refuse a baseline or tolerance for another model, length, transport or noise level,
    before measuring anything."""
    if plan.baseline is not None:
        b = plan.baseline
        if b.model != model or b.tokens != tokens:
            raise ConfigError(
                "--baseline",
                f"{plan.baseline_path} is for {b.model} at {b.tokens} tokens, "
                f"not {model} at {tokens}",
            )
    if plan.tolerance is not None:
        t = plan.tolerance
        if t.model != model or t.tokens != tokens or t.transport != transport:
            raise ConfigError(
                "--tolerance",
                f"{plan.tolerance_path} is for {t.model} at {t.tokens} tokens over "
                f"{t.transport}, not {model} at {tokens} over {transport}",
            )
        if repeats < t.repeats:
            raise ConfigError(
                "--repeats",
                f"{repeats} is fewer than the {t.repeats} repeats the tolerance "
                f"{plan.tolerance_path} was recorded with (its spread would understate the noise)",
            )


def _describe_plan(plan: Plan) -> list[str]:
    hw = gate.hardware_class()
    lines = list(plan.said)
    if plan.baseline is not None:
        lines.append(
            f"{BASELINE_GATE}: speedups against {plan.baseline_path} (sees any drop of measured "
            f"speedup on this hardware class)"
        )
    t = plan.tolerance
    if t is not None:
        where = (
            "this hardware class"
            if t.hardware == hw
            else f"{t.hardware}, not this class ({hw}): judged against the model's "
            "claim with the model's error there allowed; record one here with "
            "`ppsd calibrate tolerance` for a tighter gate"
        )
        lines.append(
            f"{MODEL_GATE}: measured ÷ predicted speedup, the prediction from a profile taken "
            f"in this run; tolerance {plan.tolerance_path} ({len(t.cells[0].ratios)} runs on "
            f"{where})"
        )
        if t.provisional:
            lines.append(
                f"{MODEL_GATE}: the tolerance is PROVISIONAL (a trial record, "
                f"{t.provenance.get('note', 'possibly from a busy machine')}); re-record it "
                "on a quiet machine with `ppsd calibrate tolerance`"
            )
        lines.append(f"{MODEL_GATE} sees: {model_gate.SEES}.")
        lines.append(f"{MODEL_GATE} cannot see: {model_gate.BLIND}.")
    return lines


def _regress(args: argparse.Namespace, spec: ModelSpec) -> int:
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    validate.integer("--repeats", repeats, lo=2)
    if args.floor is not None:
        validate.number("--floor", args.floor, lo=0.0, hi=1.0, hi_open=True)
    base_path = Path(args.baseline) if args.baseline else default_baseline(spec.name)
    tol_path = Path(args.tolerance) if args.tolerance else find_tolerance(spec.name)
    plan = choose_mode(args.mode, base_path, bool(args.baseline), tol_path, spec.name)
    _check_plan(plan, spec.name, args.tokens, repeats, args.transport)
    for line in _describe_plan(plan):
        print(line)
    sys.stdout.flush()
    decision, _ = decide_gates(
        spec,
        plan,
        tokens=args.tokens,
        repeats=repeats,
        transport=args.transport,
        quick=args.quick,
        floor=args.floor,
    )
    for line in describe_decision(decision):
        print(line)
    names = ", ".join(p.name for p in (plan.baseline_path, plan.tolerance_path) if p)
    gates = {"both": "both gates", "baseline": BASELINE_GATE, "model": MODEL_GATE}[plan.mode]
    if decision.status == "pass":
        print(f"speed gate passed ({gates}): {decision.reason} ({names})")
    elif decision.status == "inconclusive":
        print(f"speed gate INCONCLUSIVE ({gates}): {decision.reason} ({names})", file=sys.stderr)
    else:
        print(
            f"speed gate FAILED ({gates}): measured speedup dropped beyond the noise threshold; "
            f"{decision.reason} ({names})",
            file=sys.stderr,
        )
    return decision.exit_code


def decide_gates(
    spec: ModelSpec,
    plan: Plan,
    *,
    tokens: int,
    repeats: int,
    transport: str,
    quick: bool,
    floor: float | None,
) -> tuple[gate.Decision, list[Measurement]]:
    """Measure and judge by every gate of ``plan`` (``gate.decide_runs``: a drop must
    reproduce; busy is inconclusive); also returns the measurements, for their timings."""
    base_floor = floor if floor is not None else (gate.QUICK_FLOOR if quick else gate.FLOOR)
    hw = gate.hardware_class()
    cells = gate_cells(model_layers(spec))
    want = {c.label for c in cells}
    for flag, rec, path in (
        ("--baseline", plan.baseline, plan.baseline_path),
        ("--tolerance", plan.tolerance, plan.tolerance_path),
    ):
        if rec is not None and {c.label for c in rec.cells} != want:
            raise ConfigError(  # before measuring: a record of other cells judges nothing
                flag,
                f"{path} holds cells {sorted(c.label for c in rec.cells)}, "
                f"not the gate's {sorted(want)}",
            )
    taken: list[Measurement] = []

    def reading(n: int) -> gate.GateRun:
        m = measure(
            spec,
            cells,
            tokens=tokens,
            repeats=n,
            transport=transport,
            with_profile=plan.tolerance is not None,
            on_progress=_progress("regress"),
        )
        taken.append(m)
        sections: dict[str, Sequence[gate.Judged]] = {}
        notes: list[str] = []
        if plan.baseline is not None:
            sections[BASELINE_GATE] = gate.judge(plan.baseline, m.speedups, base_floor)
        if plan.tolerance is not None:
            assert m.reading is not None
            sections[MODEL_GATE] = model_gate.judge(plan.tolerance, m.reading, hw, floor)
            notes.append(model_gate.control_note(plan.tolerance, m.reading))
        return gate.GateRun(sections, m.load, tuple(notes))

    return gate.decide_runs(reading, repeats, max(repeats, 5)), taken


def describe_decision(decision: gate.Decision) -> list[str]:
    lines = []
    for i, r in enumerate(decision.runs):
        which = "run" if len(decision.runs) == 1 else ("first run", "confirming run")[i]
        lines.append(f"{which} ({gate.describe_load(r.load)}):")
        for name, verdicts in r.sections.items():
            if len(r.sections) > 1:
                lines.append(f"  {name}:")
            lines.extend(v.describe() for v in verdicts)
        lines.extend(f"  {note}" for note in r.notes)
    return lines


# ---- recording ----------------------------------------------------------------------------


def _record_baseline(args: argparse.Namespace, spec: ModelSpec, command: str) -> int:
    """``--runs`` independent runs (fresh stage processes each), pooled; their spread becomes
    part of the gate's threshold. Refused, and nothing written, if the machine was busy."""
    path = Path(args.baseline) if args.baseline else default_baseline(spec.name)
    check_writable(path, "--baseline")
    cells = gate_cells(model_layers(spec))
    runs, loads = [], []
    for _ in range(args.runs):
        m = measure(
            spec,
            cells,
            tokens=args.tokens,
            repeats=args.repeats,
            transport=args.transport,
            with_profile=False,
            on_progress=_progress("baseline"),
        )
        if m.load is not None and m.load.busy:
            print(
                f"baseline not written: the machine was busy ({m.load.describe()}); "
                f"record it on a quiet machine",
                file=sys.stderr,
            )
            return 3
        runs.append(m.speedups)
        loads.append(None if m.load is None else round(m.load.foreign + m.load.steal, 4))
    base = gate.Baseline(
        gate.hardware_class(),
        spec.name,
        args.tokens,
        tuple(_baseline_cell(c, runs) for c in cells),
        wall_clock(),
        {"command": command, "repeats": args.repeats, "runs": args.runs, "machine_load": loads},
    )
    gate.save_baseline(path, base)
    for c in base.cells:
        print(
            f"{c.label}: median speedup {c.median:.3f} over {len(c.speedups)} repeats in "
            f"{len(c.run_medians)} runs (run medians {', '.join(f'{x:.3f}' for x in c.run_medians)})"
        )
    print(f"baseline written: {path}")
    return 0


def _baseline_cell(c: Cell, runs: list[dict[str, list[float]]]) -> gate.GateCell:
    return gate.GateCell(
        c.label,
        c.scheme,
        c.alpha,
        tuple(x for r in runs for x in r[c.label]),
        tuple(statistics.median(r[c.label]) for r in runs),
    )


def record_readings(
    take: Callable[[], Measurement], *, runs: int, allow_busy: bool
) -> list[Measurement] | None:
    """``runs`` independent model-relative readings of unchanged code (``take`` measures one);
    None (after saying why) as soon as one saw a busy machine, unless ``allow_busy``."""
    out = []
    for i in range(runs):
        m = take()
        assert m.reading is not None
        busy = m.load is not None and m.load.busy
        sp = ", ".join(f"{c.cell.label} {c.measured:.3f}" for c in m.cells)
        print(
            f"reading {i + 1}/{runs}: {sp}; profile tick "
            f"{m.reading.profile.tick.median * 1e6:.0f} µs; {m.wall_s:.0f} s "
            f"({gate.describe_load(m.load)}{', BUSY' if busy else ''})"
        )
        sys.stdout.flush()
        if busy and not allow_busy:
            assert m.load is not None
            print(
                f"tolerance not written: the machine was busy ({m.load.describe()}); record it "
                "on a quiet machine (or pass --provisional for a trial record)",
                file=sys.stderr,
            )
            return None
        out.append(m)
    return out


def _record_tolerance(args: argparse.Namespace, spec: ModelSpec, command: str) -> int:
    tol, _ = record_and_describe_tolerance(args, spec, command)
    return 3 if tol is None else 0


def record_and_describe_tolerance(
    args: argparse.Namespace, spec: ModelSpec, command: str
) -> tuple[model_gate.Tolerance | None, Path]:
    """``ppsd calibrate tolerance`` from its flags (``tolerance``, ``runs``, ``tokens``,
    ``repeats``, ``transport``, ``provisional``; benchmarks/gate_spread.py takes the same):
    record the tolerance at ``--tolerance`` (default: this model's file for this hardware
    class), print what it holds and where it went. Returns it and its path; None for the
    tolerance when a busy machine stopped the recording (nothing written)."""
    path = Path(args.tolerance) if args.tolerance else default_tolerance(spec.name)
    t0 = time.perf_counter()
    tol = record_tolerance(
        spec,
        path,
        runs=args.runs,
        tokens=args.tokens,
        repeats=args.repeats,
        transport=args.transport,
        provisional=args.provisional,
        command=command,
    )
    if tol is not None:
        for line in describe_tolerance(tol):
            print(line)
        print(f"tolerance written: {path} ({time.perf_counter() - t0:.0f} s)")
    return tol, path


def record_tolerance(
    spec: ModelSpec,
    path: Path,
    *,
    runs: int,
    tokens: int,
    repeats: int,
    transport: str,
    provisional: bool,
    command: str,
) -> model_gate.Tolerance | None:
    """Record and write the tolerance (``path`` checked first); None if a busy machine
    stopped it (nothing written)."""
    check_writable(path, "--tolerance")
    cells = gate_cells(model_layers(spec))

    def take() -> Measurement:
        return measure(
            spec,
            cells,
            tokens=tokens,
            repeats=repeats,
            transport=transport,
            with_profile=True,
            on_progress=_progress("tolerance"),
        )

    got = record_readings(take, runs=runs, allow_busy=provisional)
    if got is None:
        return None
    tol = tolerance_of(got, spec, tokens, repeats, transport, command, provisional)
    model_gate.save_tolerance(path, tol)
    return tol


def tolerance_of(
    got: list[Measurement],
    spec: ModelSpec,
    tokens: int,
    repeats: int,
    transport: str,
    command: str,
    provisional: bool,
) -> model_gate.Tolerance:
    loads = [None if m.load is None else round(m.load.foreign + m.load.steal, 4) for m in got]
    busy = [m.load is not None and m.load.busy for m in got]
    provenance = {
        "command": command,
        "runs": len(got),
        "machine_load": loads,
        "busy_runs": sum(busy),
        "wall_s": [round(m.wall_s, 2) for m in got],
        "profile_s": [round(m.profile_s, 2) for m in got],
        "tick_s": [m.reading.profile.tick.median for m in got if m.reading],
        "python_s": [m.reading.python_s for m in got if m.reading],
    }
    if provisional:
        provenance["note"] = (
            f"recorded with --provisional; {sum(busy)} of {len(got)} readings on a busy machine"
        )
    return model_gate.build_tolerance(
        [m.reading for m in got if m.reading is not None],
        hardware=gate.hardware_class(),
        model=spec.name,
        tokens=tokens,
        repeats=repeats,
        transport=transport,
        created=wall_clock(),
        provisional=provisional,
        provenance=provenance,
    )


def describe_tolerance(tol: model_gate.Tolerance) -> list[str]:
    lines = [
        f"control cost per step {tol.control.tick_s * 1e6:.0f} µs at Python speed "
        f"{tol.control.python_s * 1e6:.1f} µs per reference call"
    ]
    for c in tol.cells:
        lines.append(
            f"{c.label}: measured ÷ predicted {c.median:.3f} (runs "
            f"{', '.join(f'{r:.3f}' for r in c.ratios)}); sd_run {c.between_runs:.1%}; allowed "
            f"drop {tol.allowed_drop(c, True):.1%} on this class, "
            f"{tol.allowed_drop(c, False):.1%} elsewhere"
        )
    return lines
