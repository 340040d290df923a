"""Which device and dtype the real runner uses, and the one rule for timing on it.

CUDA kernels run asynchronously: a host clock read right after a launch measures the launch,
not the work. Every timed region on a device therefore ends (and starts) with ``sync``; on the
CPU it is free. Whole decoding runs are synchronous anyway (each token's argmax is read on the
host), but per-layer profiling is not.
"""

from __future__ import annotations

import argparse

import torch

from ppsd_sim.errors import ConfigError

DTYPES = ("float32", "bfloat16", "float16")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", *DTYPES),
        help="weights and activations (default auto: float32 on cpu, bfloat16 on cuda)",
    )


def resolve(device: str, dtype: str = "auto") -> tuple[str, str]:
    """A checked (device, dtype) pair; CUDA that this machine lacks is refused by name."""
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise ConfigError("--device", f"must be cpu, cuda or cuda:N, got {device!r}")
    if device != "cpu":
        if not torch.cuda.is_available():
            raise ConfigError(
                "--device",
                f"{device} requested but CUDA is not available here "
                f"(torch {torch.__version__}, {torch.cuda.device_count()} GPUs)",
            )
        index = torch.device(device).index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                "--device", f"{device}: only {torch.cuda.device_count()} GPU(s) are visible"
            )
    if dtype == "auto":
        dtype = "float32" if device == "cpu" else "bfloat16"
    if dtype not in DTYPES:
        raise ConfigError("--dtype", f"must be auto or one of {', '.join(DTYPES)}, got {dtype!r}")
    return device, dtype


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def describe(device: str) -> str:
    """The device in words, for provenance and reports."""
    if device == "cpu":
        import platform

        return f"cpu ({platform.processor() or platform.machine()})"
    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
