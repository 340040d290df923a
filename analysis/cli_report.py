"""``ppsd report``: a self-contained HTML page and a Markdown twin from a folder of records
(or, with no folder, from the embedded example)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import check_writable, check_writable_dir, validate

DEFAULT_OUT = "ppsd-report"


def configure(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "With no arguments: a report on the embedded example, written to ./ppsd-report/. "
        "Malformed or unrecognised record files are named in the report and skipped."
    )
    p.add_argument("records", nargs="?", help="folder of JSON/YAML records (default: example)")
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"output folder (default ./{DEFAULT_OUT}); report.html, report.md and figures/ "
        "are replaced together or not at all",
    )
    p.add_argument("--devices", type=int, default=4, help="devices for the capacity plan (4)")
    p.add_argument("--gamma", type=int, default=4, help="EESD γ in the heatmap (4)")
    p.add_argument("--max-stages", type=int, default=4, help="PPSD stages in the heatmap (4)")
    p.add_argument(
        "--sim-tokens", type=int, default=20_000, help="tokens per confirming simulation (20000)"
    )
    p.add_argument("--seed", type=int, default=0, help="simulation seed (0)")


def run(args: argparse.Namespace) -> int:
    from analysis.report_build import build_report
    from analysis.report_write import FIG_DIR, write_report

    validate.integer("--devices", args.devices, lo=1, hi=1024)
    validate.integer("--gamma", args.gamma, lo=1, hi=64)
    validate.integer("--max-stages", args.max_stages, lo=2, hi=1024)
    validate.integer("--sim-tokens", args.sim_tokens, lo=0, hi=10**7)
    if args.records is not None and not Path(args.records).is_dir():
        raise ConfigError("records", f"not a folder: {args.records}")
    out = check_writable_dir(args.out, "--out")  # before the work, not after it
    check_writable_dir(out / FIG_DIR, "--out")
    for name in ("report.md", "report.html"):
        check_writable(out / name, "--out")
    report = build_report(
        args.records,
        devices=args.devices,
        gamma=args.gamma,
        max_stages=args.max_stages,
        sim_tokens=args.sim_tokens,
        seed=args.seed,
    )
    html_path, md_path = write_report(report, out)
    if report.skipped:
        print(f"skipped {len(report.skipped)} record file(s):")
        for name, why in report.skipped:
            print(f"  {name}: {why}")
    print(f"report: {html_path.resolve()}")
    print(f"markdown: {md_path.resolve()}")
    return 0
