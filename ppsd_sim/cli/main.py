"""``ppsd`` entry point. Subcommands live in their own modules and are imported lazily, so
``ppsd sim`` works without torch and a missing optional dependency is one clear message.

A subcommand module exposes ``configure(parser)`` and ``run(args) -> int``. Any ConfigError
escaping it becomes one line on stderr and exit code 2 (argparse uses 2 for bad flags too).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ppsd_sim.errors import ConfigError

#: name -> (module, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("ppsd_sim.cli.sim_cmd", "simulate AR/EESD/PPSD from latencies and acceptance"),
    "run": ("ppsd_real.cli_run", "run AR/EESD/PPSD on a real transformers model and measure them"),
    "profile": ("ppsd_real.cli_profile", "measure a HardwareProfile of a model on this machine"),
    "sweep": ("ppsd_sim.sweep.cli", "run a grid of simulations into one resumable Parquet table"),
    "serving": (
        "ppsd_sim.serving.cli",
        "simulate many requests at once: batch, arrivals, KV budget",
    ),
    "plan": (
        "analysis.cli_plan",
        "search exit layer, scheme, stages and γ for the best predicted speed",
    ),
    "report": ("analysis.cli_report", "build an HTML + Markdown report from a folder of records"),
    "calibrate": (
        "calibration.cli",
        "check the simulator against measurements; gate measured speedup in CI",
    ),
    "accept": (
        "ppsd_real.cli_accept",
        "measure acceptance (greedy or sampled) per exit layer of a local model on your prompts",
    ),
    "heads": ("ppsd_real.cli_heads", "train early-exit heads for a local model (heads train)"),
}

#: what to install when a subcommand's module cannot be imported
_EXTRAS = {
    "ppsd_real": "pip install torch==2.13.0 && pip install -e '.[real]'",
    "analysis": "pip install -e '.[analysis]'",
    "calibration": "pip install torch==2.13.0 && pip install -e '.[real,analysis]'",
    "ppsd_sim": "pip install -e '.[sweep]'",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are a single line (no usage dump) with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(names: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ppsd",
        description="Predict and measure early-exit / pipeline-parallel "
        "self-speculative decoding speed.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in SUBCOMMANDS.items():
        if names is not None and name not in names:
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        _load(module).configure(p)
    return parser


def _load(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        hint = _EXTRAS.get(top, "pip install -e '.[real,analysis]'")
        raise ConfigError(
            "command", f"this subcommand needs {err.name!r}, which is not installed ({hint})"
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = [a for a in argv if a in SUBCOMMANDS][:1]
    try:
        # Only the chosen subcommand's module is imported (torch stays out of `ppsd sim`).
        parser = build_parser(wanted if wanted else [])
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 0
        return int(_load(args._module).run(args) or 0)
    except ConfigError as err:
        print(f"ppsd: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppsd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
