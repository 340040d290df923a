"""``ppsd calibrate``: run the calibration loop, or gate measured speedup against a baseline.

ppsd calibrate run [--quick]          profile → predict → measure → compare → report
ppsd calibrate regress [--quick]      measure the gate cells against the baseline
ppsd calibrate baseline [--runs N]    measure the gate cells in N runs and (re)write the baseline

Exit codes of ``regress``: 0 passed; 1 a drop beyond the noise threshold reproduced on a quiet
machine; 2 bad input; 3 inconclusive (the drop reproduced but other processes held the CPUs).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from calibration import gate
from calibration.grid import Cell
from calibration.measure import measure_grid, wall_clock
from ppsd_real.cli_run import DEFAULT_CPU_PRESET
from ppsd_real.machine_load import LoadMeter, MachineLoad
from ppsd_real.model_loading import ModelSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig, validate

BASELINES = Path(__file__).resolve().parent / "baselines"
GATE_ALPHA = 0.9


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        choices=("run", "regress", "baseline"),
        help="run: the full loop and report; regress: the CI gate; baseline: record the gate's baseline",
    )
    p.add_argument(
        "--preset", default=DEFAULT_CPU_PRESET, help=f"model preset (default {DEFAULT_CPU_PRESET})"
    )
    p.add_argument(
        "--quick", action="store_true", help="run: 7 cells instead of 25; regress: 3 repeats"
    )
    p.add_argument("--tokens", type=int, default=128, help="tokens per measured run (default 128)")
    p.add_argument(
        "--repeats", type=int, help="timed repeats per cell (default 5; regress --quick: 3)"
    )
    p.add_argument("--transport", choices=("pipe", "gloo"), default="pipe")
    p.add_argument(
        "--out", help="run: results folder (default results/calibration/<hardware>/<model>)"
    )
    p.add_argument(
        "--floor",
        type=float,
        help=f"regress: smallest drop that fails, as a fraction "
        f"(default {gate.FLOOR}; with --quick {gate.QUICK_FLOOR})",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=5,
        help="baseline: independent runs (at least 3) whose spread joins the threshold (default 5)",
    )
    p.add_argument(
        "--baseline", help="baseline file (default calibration/baselines/<hardware>__<model>.json)"
    )


def gate_cells(n_layers: int) -> list[Cell]:
    """The small fixed set the gate watches: PPSD and EESD at α = 0.9, exit L/2."""
    e = n_layers // 2
    return [
        Cell(SchemeConfig.ppsd((e, n_layers)), GATE_ALPHA),
        Cell(SchemeConfig.eesd(e, 4), GATE_ALPHA),
    ]


def baseline_path(args: argparse.Namespace, model: str) -> Path:
    return Path(args.baseline) if args.baseline else default_baseline(model)


def default_baseline(model: str) -> Path:
    """The committed baseline for this machine's hardware class and a model."""
    return BASELINES / f"{gate.hardware_class()}__{slug(model)}.json"


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
    validate.integer("--tokens", args.tokens, lo=8)
    repeats = (
        args.repeats
        if args.repeats is not None
        else (3 if args.quick and args.action == "regress" else 5)
    )
    validate.integer("--repeats", repeats, lo=2 if args.action != "run" else 1)
    validate.integer("--runs", args.runs, lo=3)  # two runs bound their spread only within ×8
    spec = ModelSpec(args.preset)
    command = "ppsd calibrate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    if args.action == "run":
        from calibration.loop import run_calibration

        out = (
            Path(args.out)
            if args.out
            else Path("results/calibration") / gate.hardware_class() / slug(spec.name)
        )
        cal = run_calibration(
            spec,
            out,
            quick=args.quick,
            tokens=args.tokens,
            repeats=repeats,
            transport=args.transport,
            command=command,
            on_progress=_progress("calibrate"),
        )
        s = cal.summary
        print(
            f"calibration of {spec.name} on {gate.hardware_class()}: median |error| {s.median_abs_error:.1%}, "
            f"worst {s.worst_abs_error:.1%} ({s.worst_cell}) over {s.cells} cells"
        )
        for name, path in cal.paths.items():
            print(f"{name}: {path}")
        return 0

    from ppsd_real import runner

    path = baseline_path(args, spec.name)
    base = None
    if args.action == "regress":  # refuse a missing or mismatched baseline before measuring
        base = gate.load_baseline(path)
        if base.model != spec.name or base.tokens != args.tokens:
            raise ConfigError(
                "--baseline",
                f"{path} is for {base.model} at {base.tokens} tokens, "
                f"not {spec.name} at {args.tokens}",
            )
    cells = gate_cells(runner.load(spec).n_layers)

    def measure(n: int) -> tuple[dict[str, list[float]], MachineLoad | None]:
        meter = LoadMeter()  # read after measure_grid has joined its stage processes
        got = measure_grid(
            spec,
            cells,
            tokens=args.tokens,
            repeats=n,
            transport=args.transport,
            on_progress=_progress(args.action),
            fixed_trace=True,
        )
        return {m.cell.label: m.speedups for m in got}, meter.stop()

    if args.action == "baseline":
        return _record_baseline(args, spec.name, cells, measure, repeats, path, command)
    assert base is not None
    floor = (
        args.floor if args.floor is not None else (gate.QUICK_FLOOR if args.quick else gate.FLOOR)
    )
    decision = gate.decide(base, measure, repeats, max(repeats, 5), floor=floor)
    for i, r in enumerate(decision.runs):
        which = "run" if len(decision.runs) == 1 else ("first run", "confirming run")[i]
        print(f"{which} ({_load_text(r.load)}):")
        for v in r.verdicts:
            print(
                f"{'ok  ' if v.ok else 'FAIL'} {v.label}: speedup {v.fresh:.3f} vs baseline "
                f"{v.baseline:.3f} ({v.change:+.1%}; allowed drop {v.threshold:.1%})"
            )
    if decision.status == "pass":
        print(f"speed gate passed: {decision.reason} ({path.name})")
    elif decision.status == "inconclusive":
        print(f"speed gate INCONCLUSIVE: {decision.reason} ({path.name})", file=sys.stderr)
    else:
        print(
            f"speed gate FAILED: measured speedup dropped beyond the noise threshold; "
            f"{decision.reason} ({path.name})",
            file=sys.stderr,
        )
    return decision.exit_code


def _load_text(load: MachineLoad | None) -> str:
    return "machine load unknown" if load is None else load.describe()


def _record_baseline(
    args: argparse.Namespace,
    model: str,
    cells: list[Cell],
    measure: Callable[[int], tuple[dict[str, list[float]], MachineLoad | None]],
    repeats: int,
    path: Path,
    command: str,
) -> int:
    """``--runs`` independent runs (fresh stage processes each), pooled; their spread becomes
    part of the gate's threshold. Refused, and nothing written, if the machine was busy."""
    runs, loads = [], []
    for _ in range(args.runs):
        fresh, load = measure(repeats)
        if load is not None and load.busy:
            print(
                f"baseline not written: the machine was busy ({load.describe()}); "
                f"record it on a quiet machine",
                file=sys.stderr,
            )
            return 3
        runs.append(fresh)
        loads.append(None if load is None else round(load.foreign + load.steal, 4))
    base = gate.Baseline(
        gate.hardware_class(),
        model,
        args.tokens,
        tuple(
            gate.GateCell(
                c.label,
                c.scheme,
                c.alpha,
                tuple(x for r in runs for x in r[c.label]),
                tuple(statistics.median(r[c.label]) for r in runs),
            )
            for c in cells
        ),
        wall_clock(),
        {"command": command, "repeats": repeats, "runs": args.runs, "machine_load": loads},
    )
    gate.save_baseline(path, base)
    for c in base.cells:
        print(
            f"{c.label}: median speedup {c.median:.3f} over {len(c.speedups)} repeats in "
            f"{len(c.run_medians)} runs (run medians {', '.join(f'{x:.3f}' for x in c.run_medians)})"
        )
    print(f"baseline written: {path}")
    return 0
