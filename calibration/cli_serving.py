"""``ppsd calibrate serving``: the serving model against batched runs on this machine.

Profiles the model (batch-1 latencies and the batched step-cost grid), measures batched AR,
EESD, PP-AR and PPSD (--pp-stages processes) at every --batches × --alphas cell, predicts each from the profile alone and writes
``serving.json``, ``serving.md`` and ``profile.json`` (``calibration.serving``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import validate


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(flag, f"must be comma-separated integers, got {text!r}") from None


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(flag, f"must be comma-separated numbers, got {text!r}") from None


def configure(p: argparse.ArgumentParser) -> None:
    from calibration.serving import ALPHAS, BATCHES, QUICK_ALPHAS, QUICK_BATCHES
    from ppsd_real.model_loading import SHIPPED_MODEL

    p.description = (
        "Serve several requests at once on the real model (batched AR, EESD, PP-AR and PPSD, "
        "continuous batching) at each batch size and acceptance rate, predict the same requests with the "
        "serving simulator from a profile taken in the same run, and report predicted vs "
        "measured throughput and p50 TPOT."
    )
    a = p.add_argument
    a("--model-dir", help=f"a local model folder (default: the shipped {SHIPPED_MODEL.name})")
    a("--preset", help="a random-weight preset instead of the shipped model (default: none)")
    a("--batches", default=None, help=f"batch sizes (default {','.join(map(str, BATCHES))})")
    a("--alphas", default=None, help=f"oracle acceptance rates (default {ALPHAS})")
    a(
        "--quick",
        action="store_true",
        help=f"batches {QUICK_BATCHES} at α {QUICK_ALPHAS}, 3 repeats (a smoke run)",
    )
    a("--tokens", type=int, default=32, help="output tokens per request (default 32)")
    a("--gamma", type=int, default=4, help="EESD drafts per round (default 4)")
    a("--exit", type=int, default=None, help="EESD's and PPSD's exit layer (default L/2)")
    a(
        "--pp-stages",
        type=int,
        default=2,
        help="batched PP-AR (layers split evenly) and PPSD (stage 1 = layers [0, E)) on this "
        "many stage processes; 0: neither measured (default 2)",
    )
    a("--repeats", type=int, default=None, help="timed repeats per cell (default 5; --quick 3)")
    a("--profile-repeats", type=int, default=30, help="samples per profiled latency (30)")
    a("--seeds", type=int, default=16, help="simulator seeds averaged per prediction (16)")
    a("--seed", type=int, default=0, help="oracle draws and default prompts (default 0)")
    a(
        "--out",
        help="results folder (default results/calibration/<hardware>/<model>-serving); its "
        "serving.json, serving.md and profile.json are replaced",
    )


def run(args: argparse.Namespace, command: str) -> int:
    from calibration.gate import hardware_class
    from calibration.measure import wall_clock
    from calibration.serving import (
        ALPHAS,
        BATCHES,
        QUICK_ALPHAS,
        QUICK_BATCHES,
        ServingGrid,
        compare_cells,
        measure_cells,
        serving_profile,
    )
    from calibration.serving_report import check_outputs, summary_lines, write_report
    from ppsd_real import runner
    from ppsd_real.batched.run import default_prompts
    from ppsd_real.model_loading import SHIPPED_MODEL, ModelSpec
    from ppsd_real.threads import torch_threads
    from ppsd_sim.records.calibration_report import CalibrationInfo
    from ppsd_sim.records.serving_calibration import ServingCalibration

    if args.preset and args.model_dir:
        raise ConfigError("model", "give --preset or --model-dir, not both")
    batches = _ints(args.batches, "--batches") if args.batches else None
    alphas = _floats(args.alphas, "--alphas") if args.alphas else None
    if args.quick:
        batches, alphas = batches or QUICK_BATCHES, alphas or QUICK_ALPHAS
    grid = ServingGrid(
        batches=batches or BATCHES,
        alphas=alphas or ALPHAS,
        tokens=args.tokens,
        gamma=args.gamma,
        exit_layer=args.exit,
        pp_stages=args.pp_stages or None,
    )
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    validate.integer("--repeats", repeats, lo=1, hi=1000)
    validate.integer("--profile-repeats", args.profile_repeats, lo=5, hi=100_000)
    validate.integer("--seeds", args.seeds, lo=1, hi=1000)
    validate.integer("--seed", args.seed, lo=0)
    model_dir = args.model_dir
    if model_dir is None and args.preset is None:
        model_dir = str(SHIPPED_MODEL)
    if model_dir is not None and not (Path(model_dir) / "config.json").is_file():
        raise ConfigError("--model-dir", f"{model_dir} is not a model folder (no config.json)")
    spec = ModelSpec(preset=args.preset, path=model_dir, seed=args.seed)
    from calibration.cli import slug

    name = slug(Path(model_dir).name if model_dir else spec.name)
    out = Path(args.out or Path("results/calibration") / hardware_class() / f"{name}-serving")
    check_outputs(out)  # before minutes of measurement, not after
    t0 = time.perf_counter()
    with torch_threads(1):
        m = runner.load(spec)
        e = grid.exit_for(m.n_layers)
        grid.pp_scheme(m.n_layers)  # refused before the profile, not after
        grid.ppsd_scheme(m.n_layers)
        need = grid.batches[-1] * grid.requests_per_slot
        prompts = default_prompts(m, model_dir, need, args.seed)
        longest = max(len(p) for p in prompts)
        limit = getattr(m.model.config, "max_position_embeddings", None)
        if limit is not None and longest + grid.tokens + grid.gamma > limit:
            raise ConfigError("--tokens", f"prompt + tokens + γ exceed the model's {limit}")
        print(f"profiling {spec.name} (batch-1 latencies, batched step-cost grid)", flush=True)
        profile = serving_profile(m, args.profile_repeats, e, grid.gamma, grid.pp_stages)

        def said(done: int, total: int) -> None:
            print(f"measured cell {done}/{total}", file=sys.stderr, flush=True)

        cells = measure_cells(m, prompts, grid, repeats, args.seed, on_cell=said)
    compared = compare_cells(profile, cells, grid, args.seeds)
    busy = [x for x in compared.loads if x.busy]
    notes = list(compared.notes)
    if busy:
        notes.append(
            f"WARNING: the machine was busy during {len(busy)} of {len(compared.loads)} cells "
            f"({busy[0].describe()}): the measured figures are not reliable"
        )
    elif compared.loads:
        notes.append(f"machine load: quiet in every cell (first: {compared.loads[0].describe()})")
    notes.append(f"wall time {time.perf_counter() - t0:.0f} s")
    info = CalibrationInfo(
        model=spec.name,
        hardware=hardware_class(),
        date=wall_clock(),
        tokens=grid.tokens,
        repeats=repeats,
        sim_tokens=args.seeds,
        command=command,
        quick=bool(args.quick),
        extra={
            "scheme_exit": e,
            "gamma": grid.gamma,
            "batches": list(grid.batches),
            "alphas": list(grid.alphas),
            "requests_per_slot": grid.requests_per_slot,
            "drafter": "oracle",
            "threads": 1,
        },
    )
    rep = ServingCalibration(info, tuple(compared.rows), tuple(notes), profile)
    paths = write_report(out, rep)
    print(f"serving calibration of {spec.name} on {hardware_class()}:")
    for line in summary_lines(rep):
        print(f"  {line}")
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
