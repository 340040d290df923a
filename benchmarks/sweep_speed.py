"""Benchmark (not a test): ``ppsd sweep`` on 10,000 PPSD points of 10,000 tokens each, or
(``--serving``) on 1,000 serving load points.

Measures, interleaved per repeat (BENCHMARKING.md: warm-up, repeats, medians, min–max):
  local   the whole command, local process pool (``--workers N``), fresh results folder
  ray     the same command with ``--backend ray`` (a local Ray instance with N CPUs)
  raystart  starting and stopping that Ray instance alone (the fixed part of Ray's overhead)
  inproc  one process, no pool, no store: simulate + row building for the first 2,000
          points (the per-point compute the sweep cannot avoid); with ``--serving`` the
          mean per-point compute the local run's workers recorded (``sim_ms``)

    python benchmarks/sweep_speed.py [--points 10000] [--tokens 10000] [--repeats 5]
        [--workers 2] [--no-ray] [--serving]

``--serving`` (default --points 1000): EESD and PPSD (4 stages, exit 8) on the embedded
serving example profile, α × batch cap × Poisson rate = 2 × 5 × 5 × (points / 50), each
point 100 requests (prompts 64–256, 64 output tokens) with its AR and PP-AR baselines at the
same load, ``seed_mode: common`` (every point serves the same requests). Each repeat also
times the rerun of the finished local sweep (``resume``: every point skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import yaml

from ppsd_sim.records.io import write_record
from ppsd_sim.serving.example import example_serving_profile
from ppsd_sim.sweep import load_results
from ppsd_sim.sweep.evaluate import evaluate_batch
from ppsd_sim.sweep.runner import make_batches
from ppsd_sim.sweep.spec import load_spec


def bench_spec(points: int, tokens: int) -> dict:
    """PPSD on a 32-layer profile: α × exit × k, 100 × 10 × 10 = 10,000 points by default."""
    n_alpha = max(1, points // 100)
    return {
        "name": "bench",
        "seed": 0,
        "fixed": {
            "layers": 32,
            "t_layer": 5e-4,
            "head_fraction": 0.5,
            "hop": 2e-5,
            "tick": 3e-5,
            "flush": 4e-5,
            "tokens": tokens,
            "scheme": "ppsd",
            "engine": "fast",
        },
        "axes": {
            "alpha": [round((i + 0.5) / n_alpha, 6) for i in range(n_alpha)],
            "exit": list(range(2, 12)),
            "k": list(range(2, 12)),
        },
    }


def serving_spec(points: int) -> dict:
    """Serving load points: scheme × α × batch cap × rate, 2 × 5 × 5 × (points / 50)."""
    n_rate = max(1, points // 50)
    return {
        "name": "bench-serving",
        "seed": 0,
        "seed_mode": "common",
        "fixed": {
            "mode": "serving",
            "profile": "serving_profile.json",
            "requests": 100,
            "prompt_len": "uniform:64:256",
            "output_len": 64,
            "exit": 8,
            "gamma": 4,
            "k": 4,
        },
        "axes": {
            "scheme": ["eesd", "ppsd"],
            "alpha": [0.6, 0.7, 0.8, 0.9, 1.0],
            "max_batch": [1, 4, 16, 32, 64],
            # geometric, 1 to 100 requests/s
            "rate": [round(10 ** (2 * i / max(1, n_rate - 1)), 4) for i in range(n_rate)],
        },
    }


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return wall


def sweep_cmd(spec: Path, out: Path, workers: int, backend: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ppsd_sim.cli.main",
        "sweep",
        str(spec),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--backend",
        backend,
        "--no-progress",
    ]


def ray_start_cmd(workers: int) -> list[str]:
    code = (
        "from ppsd_sim.sweep import make_backend\n"
        f"b = make_backend('ray', {workers})\n"
        "b.__enter__(); b.__exit__(None, None, None)"
    )
    return [sys.executable, "-c", code]


def inproc_ms(spec_path: Path, n: int) -> float:
    spec = load_spec(spec_path)
    batches = make_batches(spec.points[:n], 1, spec)
    t0 = time.perf_counter()
    for b in batches:
        evaluate_batch(b)
    return (time.perf_counter() - t0) / min(n, len(spec.points)) * 1e3


def provenance(workers: int) -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    versions = {}
    for pkg in ("numpy", "pyarrow", "simpy", "ray"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores_available": len(os.sched_getaffinity(0)),
        "workers": workers,
        "python": platform.python_version(),
        "commit": commit,
        **versions,
    }


def stats(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} (min {min(xs):.2f}, max {max(xs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, help="default 10,000 (--serving: 1,000)")
    ap.add_argument("--tokens", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--serving", action="store_true", help="serving load points")
    args = ap.parse_args()
    if args.points is None:
        args.points = 1_000 if args.serving else 10_000
    use_ray = not args.no_ray
    if use_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            use_ray = False
            print("ray not installed: skipping the Ray backend", file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="sweep_bench_"))
    spec_path = tmp / "bench.yaml"
    if args.serving:
        write_record(tmp / "serving_profile.json", example_serving_profile())
        spec_path.write_text(yaml.safe_dump(serving_spec(args.points)))
        warm = serving_spec(50)
        warm["fixed"]["requests"] = 20
    else:
        spec_path.write_text(yaml.safe_dump(bench_spec(args.points, args.tokens)))
        warm = bench_spec(200, args.tokens)
    warm_path = tmp / "warm.yaml"
    warm_path.write_text(yaml.safe_dump(warm))
    prov = provenance(args.workers)
    print(json.dumps(prov), flush=True)

    # warm-up (imports, page cache, Ray's session files), not timed
    timed(sweep_cmd(warm_path, tmp / "warm-local", args.workers, "local"))
    if use_ray:
        timed(sweep_cmd(warm_path, tmp / "warm-ray", args.workers, "ray"))

    res: dict[str, list[float]] = {
        "local": [],
        "resume": [],
        "ray": [],
        "raystart": [],
        "inproc_ms": [],
    }
    loads = []
    for i in range(args.repeats):
        loads.append(load())
        res["local"].append(timed(sweep_cmd(spec_path, tmp / f"local-{i}", args.workers, "local")))
        res["resume"].append(timed(sweep_cmd(spec_path, tmp / f"local-{i}", args.workers, "local")))
        if use_ray:
            res["ray"].append(timed(sweep_cmd(spec_path, tmp / f"ray-{i}", args.workers, "ray")))
            res["raystart"].append(timed(ray_start_cmd(args.workers)))
        if args.serving:  # the compute the workers timed per point (sim_ms), baselines included
            res["inproc_ms"].append(float(load_results(tmp / f"local-{i}").sim_ms.mean()))
        else:
            res["inproc_ms"].append(inproc_ms(spec_path, 2000))
        loads.append(load())
        print(
            f"repeat {i}: local {res['local'][-1]:.2f} s (resume {res['resume'][-1]:.2f} s)"
            + (
                f", ray {res['ray'][-1]:.2f} s, ray start {res['raystart'][-1]:.2f} s"
                if use_ray
                else ""
            )
            + f", in-process {res['inproc_ms'][-1]:.3f} ms/point; load {loads[-2]} -> {loads[-1]}",
            flush=True,
        )
        shutil.rmtree(tmp / f"local-{i}", ignore_errors=True)
        shutil.rmtree(tmp / f"ray-{i}", ignore_errors=True)

    n = len(load_spec(spec_path).points)
    what = "serving load points" if args.serving else f"points x {args.tokens:,} tokens"
    print(f"\n{n:,} {what}, {args.workers} workers, {args.repeats} repeats")
    print(f"local backend, whole command (s): {stats(res['local'])}")
    print(f"rerun of the finished local sweep, all skipped (s): {stats(res['resume'])}")
    print(f"in-process compute (ms/point, 1 core): {stats(res['inproc_ms'])}")
    ideal = [m * n / 1e3 / args.workers for m in res["inproc_ms"]]
    print(f"  -> ideal {args.workers}-core compute alone (s): {stats(ideal)}")
    if use_ray:
        ratio = [r / loc for r, loc in zip(res["ray"], res["local"], strict=True)]
        extra = [r - loc for r, loc in zip(res["ray"], res["local"], strict=True)]
        print(f"ray backend, whole command (s): {stats(res['ray'])}")
        print(f"ray / local per pair: {stats(ratio)}")
        print(f"ray - local per pair (s): {stats(extra)}")
        print(f"ray start + stop alone (s): {stats(res['raystart'])}")
    print(f"load averages (1/5/15 min) around repeats: {', '.join(loads)}")
    print(json.dumps({"provenance": prov, "results": res, "loads": loads}))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
