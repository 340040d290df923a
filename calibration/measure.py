"""Measure calibration cells on the real runner, with the AR baseline measured beside them.

The loop is ``ppsd_real.bench`` (the one ``ppsd run`` and the benchmarks use): all cells run
interleaved, repeat after repeat (one warm-up repeat excluded); AR with one thread is measured
right before and right after every group of ``GROUP`` cells and each cell's speedup uses the
mean of the two, so machine drift (±15% here) cancels in the ratio. Every output is checked
token for token against AR: calibration never times a lossy run.

``Progress`` keeps what was measured: each (repeat, group) block is appended to a JSONL file in
the output folder as soon as it is measured, so an interrupted calibration resumes where it
stopped when the same command runs again (and refuses a folder measured with other settings).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from calibration.grid import Cell
from ppsd_real import runner
from ppsd_real.bench import Bench, Block, Variant, blocks, schedule
from ppsd_real.decoders import ARDecoder
from ppsd_real.drafters import DrafterSpec
from ppsd_real.model_loading import ModelSpec
from ppsd_real.prompts import default_prompt
from ppsd_real.sampling import GREEDY, SamplingSpec
from ppsd_real.threads import torch_threads
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, SchemeConfig, validate
from ppsd_sim.records.io import atomic_write_text, read_record, write_record
from ppsd_sim.records.schema import check_tag, tag

GROUP = 4  # cells between two AR baselines
PROGRESS_FILE = "progress.jsonl"
PROFILE_FILE = "progress-profile.json"
PROGRESS_RECORD = "CalibrationProgress"
# how each setting is named to the user when a resumed folder disagrees
SETTING_NAMES = {
    "model": "the model (--preset)",
    "hardware": "the machine (hardware class)",
    "tokens": "--tokens",
    "repeats": "--repeats",
    "seed": "the seed",
    "transport": "--transport",
    "quick": "--quick",
    "fixed_trace": "fixed acceptance traces",
    "drafter": "--drafter",
    "decoding": "the decoding (--temperature, --top-k, --top-p, --seed)",
    "heads": "the early-exit heads (--heads, --shared-head)",
}


@dataclass
class Measured:
    cell: Cell
    speedups: list[float] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    trace: tuple[int, ...] = ()  # accept/reject sequence of the first timed repeat
    judged: int = 0
    accepted: int = 0
    resumed: int = 0  # repeats taken from a Progress file instead of measured now

    @property
    def median(self) -> float:
        return statistics.median(self.speedups)

    @property
    def observed_alpha(self) -> float | None:
        return self.accepted / self.judged if self.judged else None

    def add(
        self, rep: int, time_s: float, base_s: float, trace: list[int] | tuple[int, ...]
    ) -> None:
        """One timed repeat: its time, the AR baseline beside it, its accept/reject trace."""
        self.times_s.append(time_s)
        self.speedups.append(base_s / time_s)
        if rep == 1 and trace:
            self.trace = tuple(trace)
        self.judged += len(trace)
        self.accepted += sum(trace)


class Progress:
    """An append-only JSONL of measured blocks: a header line with the settings, then one
    line per (repeat, group) block. Each line is flushed and synced as it is written; a torn
    last line (a crash mid-write) is dropped on reading. The profile sits beside it."""

    def __init__(self, folder: Path, settings: dict[str, Any], saved: list[dict[str, Any]]) -> None:
        self.folder, self.settings, self.saved = folder, settings, saved
        self.path = folder / PROGRESS_FILE

    @classmethod
    def open(cls, folder: str | os.PathLike[str], settings: dict[str, Any]) -> Progress:
        """The folder's progress with these settings: resumed if it was measured with the
        same ones, started if there is none; refused (naming what differs) otherwise."""
        folder = Path(folder)
        path = folder / PROGRESS_FILE
        settings = json.loads(json.dumps(settings))  # as it reads back
        if not path.is_file():
            atomic_write_text(
                path, json.dumps({**tag(PROGRESS_RECORD), "settings": settings}) + "\n"
            )
            return cls(folder, settings, [])
        lines = path.read_bytes().split(b"\n")
        complete, torn = lines[:-1], lines[-1]
        if torn:  # no newline after it: written partly when the process died
            with path.open("r+b") as fh:
                fh.truncate(sum(len(x) + 1 for x in complete))
        try:
            head = json.loads(complete[0]) if complete else None
            check_tag(head, PROGRESS_RECORD)
        except (ValueError, ConfigError) as err:
            raise ConfigError(
                "--out", f"{path} is not a calibration progress file ({err})"
            ) from None
        assert isinstance(head, dict)  # check_tag refused anything else
        theirs = head["settings"]
        diff = [
            f"{SETTING_NAMES.get(k, k)}: {theirs.get(k)!r} there, {settings.get(k)!r} now"
            for k in sorted(set(theirs) | set(settings))
            if theirs.get(k) != settings.get(k)
        ]
        if diff:
            raise ConfigError(
                "--out",
                f"{folder} holds an unfinished calibration measured with other settings "
                f"({'; '.join(diff)}); rerun with those to resume it, or give another --out "
                f"(or delete {path} to start over)",
            )
        saved = []
        for n, raw in enumerate(complete[1:], start=2):
            try:
                saved.append(json.loads(raw))
            except ValueError:
                raise ConfigError("--out", f"{path} line {n} is not valid JSON") from None
        return cls(folder, settings, saved)

    def append(self, block: Block) -> None:
        """Save one measured block (synced before returning)."""
        line = {
            "rep": block.rep,
            "group": block.group,
            "base_s": block.base_s,
            "cells": [
                {
                    "label": label,
                    "time_s": r.time_s,
                    "trace": r.trace,
                }
                for label, r in block.results.items()
            ],
        }
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def restore(self, cells: dict[str, Measured]) -> set[tuple[int, int]]:
        """Put the saved blocks into ``cells``; returns the (repeat, group) blocks done."""
        done = set()
        for b in sorted(self.saved, key=lambda b: (b["rep"], b["group"])):
            for c in b["cells"]:
                if c["label"] not in cells:
                    raise ConfigError("--out", f"{self.path}: unknown cell {c['label']!r}")
                meas = cells[c["label"]]
                meas.add(b["rep"], c["time_s"], b["base_s"], c["trace"])
                meas.resumed += 1
            done.add((b["rep"], b["group"]))
        return done

    def load_profile(self) -> HardwareProfile | None:
        p = self.folder / PROFILE_FILE
        return read_record(p, HardwareProfile, "--out") if p.is_file() else None

    def save_profile(self, profile: HardwareProfile) -> None:
        write_record(self.folder / PROFILE_FILE, profile)

    def remove(self) -> None:
        """The calibration is complete (its report written): nothing is left to resume."""
        (self.folder / PROFILE_FILE).unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)


def measure_grid(
    spec: ModelSpec,
    cells: list[Cell],
    *,
    tokens: int = 128,
    repeats: int = 5,
    seed: int = 0,
    transport: str = "pipe",
    on_progress: Callable[[int, int], None] | None = None,
    fixed_trace: bool = False,
    progress: Progress | None = None,
    sampling: SamplingSpec = GREEDY,
    heads: Mapping[int, str | None] | None = None,
) -> list[Measured]:
    """Speedup of every cell over AR with one thread (the per-process budget of one stage).
    Each repeat draws a new acceptance sequence (a median over acceptance luck, as the model's
    i.i.d. prediction assumes), or with ``fixed_trace`` the same one every time: the gate then
    watches the code's speed, not acceptance luck (at α = 0.9 over 128 tokens the number of
    rejections is binomial, about 12 ± 3.4, each costing a flushed pipeline slot).
    ``progress``: blocks saved there are not measured again, new ones are saved as they come.
    Early-exit cells draft with the model's exit and ``heads[E]`` (a trained head file, None for
    the shared LM head); ``sampling`` applies to every cell and to the AR baseline, which then
    samples too (sampled outputs are exact in distribution, not token-equal to AR's, so only
    greedy runs are checked token for token). The prompt is ``prompts.default_prompt``: real
    held-out text for a model with a tokenizer."""
    validate.integer("tokens", tokens, lo=8)
    validate.integer("repeats", repeats, lo=1)
    with torch_threads(1):
        m = runner.load(spec)
        for c in cells:
            c.scheme.check_layers(m.n_layers)
        prompt = default_prompt(spec.path, m.vocab, seed)
        out = {c.label: Measured(c) for c in cells}
        done = progress.restore(out) if progress is not None else set()
        groups, plan = schedule(len(cells), repeats, GROUP, done)
        left = {i for _, g in plan for i in groups[g]}
        ar_out = ARDecoder(m.driver, sampling).decode(prompt, tokens).tokens
        ref = ar_out if sampling.greedy else None
        resumed = sum(meas.resumed for meas in out.values())
        total = resumed + sum(len(groups[g]) for _, g in plan)
        count = [resumed]

        def tick() -> None:
            count[0] += 1
            if on_progress:
                on_progress(count[0], total)

        with Bench() as bench:
            backends = {}  # stage processes first, so none starts mid-timing
            for s in dict.fromkeys(cells[i].scheme for i in sorted(left)):
                if s.kind == "ppsd":
                    backends[s] = bench.backend(
                        s,
                        partial(
                            runner.open_distributed,
                            spec,
                            s,
                            m.n_layers,
                            _early_exit(s, heads),
                            transport=transport,
                        ),
                    )

            def variant(c: Cell) -> Variant:
                def go(rep: int):
                    drafter = (
                        _early_exit(c.scheme, heads)
                        if c.alpha is None
                        else DrafterSpec("oracle", c.alpha, seed if fixed_trace else seed + rep)
                    )
                    if c.scheme.kind == "ppsd":
                        return backends[c.scheme].run(prompt, tokens, drafter, ref, sampling)
                    return runner.run_local(m, c.scheme, drafter, prompt, tokens, ref, sampling)

                return Variant(c.label, go)

            baseline = Variant(
                "AR 1 thread", lambda rep: ARDecoder(m.driver, sampling).decode(prompt, tokens)
            )
            for b in blocks(
                [variant(c) for c in cells],
                baseline,
                ref,
                repeats=repeats,
                group=GROUP,
                skip=done,
                on_run=tick,
            ):
                for label, r in b.results.items():
                    out[label].add(b.rep, r.time_s, b.base_s, r.trace)
                if progress is not None:
                    progress.append(b)
    return [out[c.label] for c in cells]


def _early_exit(scheme: SchemeConfig, heads: Mapping[int, str | None] | None) -> DrafterSpec:
    """The model's own early exit at the scheme's exit, with its trained head if given."""
    e = scheme.draft_exit_layer
    return DrafterSpec(head_path=None if e is None else (heads or {}).get(e))


def wall_clock() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
