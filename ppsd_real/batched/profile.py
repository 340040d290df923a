"""Measure a model's step costs under load: the HardwareProfile's ``batched`` field.

For each cell of a grid — B sequences (batch sizes, default 1, 2, 4, 8, 16) each holding c
cached tokens (2–3 context lengths) and bringing n new tokens (1: a decode step; γ + 1: an
EESD verification) — a step runs on the ``BatchedDriver`` and ``profiler.full_model_steps``
times each layer and the final head inside full steps, with the batch-1 profiler's discipline
(3 warm-up steps excluded, ``repeats`` samples, medians), scaled to add up to the whole step
(``step_scales``). The embedding, and a trained
early-exit head, are timed in loops of their own as the batch-1 profiler times them; the
whole full-model step (embed + all layers + head) and early-exit step (embed + layers[0:E] +
EE head) are timed too and kept in the notes, beside how well the fit reproduces them.

Each component's cell medians, at tokens = B·n (the step's new tokens) and kv = B·c (the KV
entries the step reads), give its ``LoadCost``, the load form ``ppsd_sim.serving.step_costs``
composes: by default a grid (``grid_fit``: per step size a line in kv, interpolated between
step sizes; the cells are batch × context, not a rectangle in (tokens, kv), so the grid is
built row by row), or the linear ``a + b·tokens + c·kv`` of ``LoadCost.fit`` (``form="linear"``,
which misses the concave cost of the first rows of a step by 10-25 % on a 2-core CPU). The
batch-1 fields of a profile are measured before and never touched (``with_batched`` only adds
``batched``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ppsd_real.batched.driver import BatchedDriver
from ppsd_real.profiler import _samples, full_model_steps
from ppsd_real.runner import Loaded
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import HardwareProfile, validate
from ppsd_sim.records.load_cost import BatchedCosts, LoadCost

BATCH_SIZES = (1, 2, 4, 8, 16)
CONTEXTS = (64, 256)
#: decode steps, and verifications at ``ppsd run``'s default γ = 4
STEP_TOKENS = (1, 5, 32)
#: drafts per round when the draft step is timed inside rounds (``ppsd run``'s default γ)
DRAFT_GAMMA = 4


@dataclass(frozen=True)
class Cell:
    """One measured step shape and its medians (seconds)."""

    batch: int
    context: int
    step_tokens: int
    layers: tuple[float, ...]
    embed: float
    final_head: float
    ee_head: float
    full_step: float
    ee_step: float
    draft_step: float | None = None  # one-token cells: the draft step inside rounds

    @property
    def tokens(self) -> int:
        return self.batch * self.step_tokens

    @property
    def kv(self) -> int:
        return self.batch * self.context


def check_axis(field: str, values: str | Sequence[int], lo: int, hi: int) -> tuple[int, ...]:
    """A strictly increasing list of integers in [lo, hi], given as a list or as the flag's
    comma-separated text (one line naming ``field`` otherwise)."""
    if isinstance(values, str):
        try:
            values = [int(x) for x in values.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(field, f"must be comma-separated integers, got {values!r}") from None
    xs = validate.sequence(field, list(values), min_len=1)
    out = tuple(validate.integer(f"{field}[{i}]", v, lo=lo, hi=hi) for i, v in enumerate(xs))
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ConfigError(field, f"must be strictly increasing, got {list(out)}")
    return out


def _rows(bd: BatchedDriver, batch: int, context: int, n: int) -> tuple[Any, torch.Tensor]:
    """A cache of ``batch`` rows holding the same ``context`` entries, and n new hidden states
    per row (a step at position ``context`` rewrites the same n entries every time)."""
    vocab = int(bd.parts.lm_head.weight.shape[0])
    ids = [1 + i % (vocab - 1) for i in range(context + n)]
    cache = bd.new_cache(1)
    h0 = bd.run_layers(bd.embed([ids]), 0, bd.n_layers, cache, 0)
    cache.keep_rows([0] * batch)
    return cache, h0[:, -n:].expand(batch, n, h0.shape[-1]).contiguous()


def _full_step(bd: BatchedDriver, tok: list[list[int]], cache: Any, context: int) -> None:
    bd.head(bd.run_layers(bd.embed(tok), 0, bd.n_layers, cache, context))


def _round_drafts(
    bd: BatchedDriver,
    cache: Any,
    context: int,
    exit_layer: int,
    ee_head: torch.nn.Module | None,
    gamma: int,
    repeats: int,
) -> float:
    """The draft step as ``BatchedEESD`` runs it: per round, γ timed early-exit steps (one token
    per row at successive positions), then an untimed verification of γ + 1 tokens per row
    through layers[E:L] and the final head; the cache is cut back after every round. Returns
    the median over rounds (3 warm-up) of the round's mean draft step: the first draft after a
    verification finds the early layers' weights evicted from the CPU's caches, which a hot
    loop of early-exit steps never sees."""
    rows, n0 = cache.rows, context + 1
    tok = [[5] for _ in range(rows)]
    verify = bd.embed([[5] * (gamma + 1) for _ in range(rows)])
    per_round = []
    for r in range(3 + repeats):
        spent = 0.0
        for j in range(gamma):
            bd.sync()
            t0 = time.perf_counter()
            bd.head(bd.run_layers(bd.embed(tok), 0, exit_layer, cache, context + j), ee_head)
            bd.sync()
            spent += time.perf_counter() - t0
        bd.head(bd.run_layers(verify, exit_layer, bd.n_layers, cache, context))
        for row in range(rows):
            cache.crop_row(row, 0, bd.n_layers, n0)
        if r >= 3:
            per_round.append(spent / gamma)
    return statistics.median(per_round)


def _cell(
    m: Loaded,
    bd: BatchedDriver,
    batch: int,
    context: int,
    n: int,
    exit_layer: int,
    ee_head: torch.nn.Module | None,
    repeats: int,
    gamma: int,
) -> Cell:
    cache, x = _rows(bd, batch, context, n)
    # the batch-1 profiler's per-layer loop, on the batched driver (same calls, B rows)
    layer_s, head_s = full_model_steps(
        dataclasses.replace(m, driver=bd), repeats, cache, x, context
    )
    tok = [[5] * n for _ in range(batch)]
    embed = _samples(lambda: bd.embed(tok), repeats, sync=bd.sync)
    final = statistics.median(head_s)
    ee = final
    if ee_head is not None:  # as the batch-1 profiler: in-step head × (trained ÷ LM head) in loops
        hot_ee = statistics.median(_samples(lambda: bd.head(x, ee_head), repeats, sync=bd.sync))
        hot = statistics.median(_samples(lambda: bd.head(x), repeats, sync=bd.sync))
        ee = final * hot_ee / hot

    def full() -> None:
        _full_step(bd, tok, cache, context)

    def early() -> None:
        bd.head(bd.run_layers(bd.embed(tok), 0, exit_layer, cache, context), ee_head)

    return Cell(
        batch,
        context,
        n,
        tuple(statistics.median(xs) for xs in layer_s),
        statistics.median(embed),
        final,
        ee,
        statistics.median(_samples(full, repeats, sync=bd.sync)),
        statistics.median(_samples(early, repeats, sync=bd.sync)),
        _round_drafts(bd, cache, context, exit_layer, ee_head, gamma, repeats) if n == 1 else None,
    )


@dataclass(frozen=True)
class Grid:
    """The cells to measure: every batch size × context × step tokens (flag names in errors)."""

    batch_sizes: tuple[int, ...] = BATCH_SIZES
    contexts: tuple[int, ...] = CONTEXTS
    step_tokens: tuple[int, ...] = STEP_TOKENS

    def __post_init__(self) -> None:
        for name, flag, hi in (
            ("batch_sizes", "--batch-sizes", 4096),
            ("contexts", "--batch-contexts", 10**6),
            ("step_tokens", "--batch-step-tokens", 4096),
        ):
            object.__setattr__(self, name, check_axis(flag, getattr(self, name), 1, hi))


def measure_cells(
    m: Loaded,
    grid: Grid,
    repeats: int = 30,
    exit_layer: int | None = None,
    ee_head: torch.nn.Module | None = None,
    gamma: int = DRAFT_GAMMA,
) -> list[Cell]:
    """Every (batch, context, step tokens) cell, measured as the module docstring says."""
    bd = BatchedDriver(m.driver)
    validate.integer("--repeats", repeats, lo=5, hi=100_000)
    e = m.n_layers // 2 if exit_layer is None else exit_layer
    validate.integer("exit_layer", e, lo=1, hi=m.n_layers - 1)
    validate.integer("gamma", gamma, lo=1, hi=4096)
    limit = getattr(m.driver.parts.config, "max_position_embeddings", None)
    if limit is not None and grid.contexts[-1] + grid.step_tokens[-1] > limit:
        raise ConfigError(
            "--batch-contexts",
            f"{grid.contexts[-1]} cached + {grid.step_tokens[-1]} new tokens exceed the "
            f"model's max_position_embeddings = {limit}",
        )
    return [
        _cell(m, bd, b, c, n, e, ee_head, repeats, gamma)
        for c in grid.contexts
        for n in grid.step_tokens
        for b in grid.batch_sizes
    ]


#: how the cells become a ``LoadCost``: ``grid`` (default) a row per measured step size,
#: linear in kv within the row, interpolated between rows; ``linear`` one a + b·tokens + c·kv
FITS = ("grid", "linear")


def _fit(cells: list[Cell], seconds: Sequence[float], kv: bool = True, form: str = "grid"):
    tokens = [c.tokens for c in cells]
    kvs = [c.kv if kv else 0 for c in cells]
    if form == "grid" and min(tokens) == 1:
        return grid_fit(tokens, kvs, list(seconds))
    return LoadCost.fit(tokens, kvs, list(seconds))


def grid_fit(tokens: Sequence[int], kv: Sequence[int], seconds: Sequence[float]) -> LoadCost:
    """A grid ``LoadCost`` through measured steps that need not form a rectangle: for each
    step size (tokens) measured, the least-squares line in kv through its steps (slope >= 0:
    more cache never makes a step cheaper; one kv value: flat), sampled at kv = 0 and the
    largest kv measured; between step sizes the grid interpolates, past the last it extends
    linearly. Exact at every step when each size was measured at <= 2 kv values. A batched
    step's cost is far from linear in its tokens on a CPU (the first few rows cost most: the
    weights are read once per step), which one a + b·tokens cannot follow."""
    rows: dict[int, list[tuple[int, float]]] = {}
    for t, k, y in zip(tokens, kv, seconds, strict=True):
        rows.setdefault(int(t), []).append((int(k), float(y)))
    if 1 not in rows:
        raise ConfigError("tokens", "a grid fit needs a measured 1-token step")
    k_max = max(int(k) for k in kv)
    axis = (0, k_max) if k_max > 0 else (0,)
    table = []
    for t in sorted(rows):
        pts = rows[t]
        ks = np.array([k for k, _ in pts], dtype=float)
        ys = np.array([y for _, y in pts], dtype=float)
        slope = 0.0
        if len(set(ks)) > 1:
            slope = max(0.0, float(np.polyfit(ks, ys, 1)[0]))
        at0 = max(0.0, float(np.mean(ys - slope * ks)))
        table.append(tuple(at0 + slope * k for k in axis))
    return LoadCost(tokens=tuple(sorted(rows)), kv=axis, table=tuple(table))


def step_scales(c: Cell, exit_layer: int) -> tuple[float, float]:
    """Factors for a cell's layers [0, E) and [E, L) that make them add up to its whole
    measured steps: embed + early + EE head = the early-exit step, and embed + early + late +
    final head = the full step. Timing each layer in a call of its own pays the call's fixed
    work (positions, masks) once per layer where a real step pays it once, and a step through
    half the layers runs each layer faster than a full step does (less memory traffic between
    its layers): on a 2-core CPU the timed layers summed 5-12 % above the full step and 10-50 %
    above the early-exit step at small batches. The whole steps are what the engines run; the
    per-layer timings keep only their proportions within each part. Never below 0; 1 where a
    part's layers were not timed."""
    early, late = sum(c.layers[:exit_layer]), sum(c.layers[exit_layer:])
    f_early = max(0.0, c.ee_step - c.embed - c.ee_head) / early if early > 0 else 1.0
    rest = c.full_step - c.embed - c.final_head - f_early * early
    f_late = max(0.0, rest) / late if late > 0 else 1.0
    return f_early, f_late


def costs_from_cells(cells: list[Cell], exit_layer: int, form: str = "grid") -> BatchedCosts:
    """The fitted ``BatchedCosts`` (one cost per layer; heads and embed read no KV), of
    ``form`` (``FITS``), and, in its notes, the cells' medians and the fit's relative error on
    the whole steps."""
    if not cells:
        raise ConfigError("cells", "needs at least one measured cell")
    validate.choice("--batch-fit", form, FITS)
    L = len(cells[0].layers)
    scales = [step_scales(c, exit_layer) for c in cells]
    layers = tuple(
        _fit(
            cells,
            [
                c.layers[i] * f[0 if i < exit_layer else 1]
                for c, f in zip(cells, scales, strict=True)
            ],
            form=form,
        )
        for i in range(L)
    )
    embed = _fit(cells, [c.embed for c in cells], kv=False, form=form)
    final = _fit(cells, [c.final_head for c in cells], kv=False, form=form)
    ee = _fit(cells, [c.ee_head for c in cells], kv=False, form=form)
    full_fit = LoadCost.total([embed, *layers, final])
    ee_fit = LoadCost.total([embed, *layers[:exit_layer], ee])

    def err(fit: LoadCost, c: Cell, measured: float) -> float:
        return fit.time(c.tokens, c.kv) / measured - 1.0 if measured > 0 else 0.0

    full_err = [err(full_fit, c, c.full_step) for c in cells]
    ee_err = [err(ee_fit, c, c.ee_step) for c in cells]
    in_rounds = [c for c in cells if c.draft_step is not None]
    draft = None
    if in_rounds:
        draft = _fit(in_rounds, [c.draft_step or 0.0 for c in in_rounds], form=form)
    notes = {
        "how": "per (batch B, context c, step tokens n): B rows of c cached tokens; layers and "
        "final head timed inside full steps (3 warm-up, medians), embed and a trained EE head "
        "in loops; per cell, layers [0, E) scaled so that embed + them + EE head = the whole "
        "early-exit step and layers [E, L) so that embed + all layers + final head = the whole "
        "full step (both timed as the engines run them); the whole draft step (n = 1) timed "
        "inside rounds of gamma drafts and a verification of the late layers; tokens = B*n, kv = B*c; each component fitted "
        + (
            "as a grid: per step size, a line in kv (slope >= 0), interpolated between sizes"
            if form == "grid"
            else "a + b*tokens + c*kv (non-negative least squares)"
        ),
        "exit_layer": exit_layer,
        "cells": [
            {
                "batch": c.batch,
                "context": c.context,
                "step_tokens": c.step_tokens,
                "full_step_s": round(c.full_step, 7),
                "ee_step_s": round(c.ee_step, 7),
                "layers_sum_s": round(sum(c.layers), 7),
            }
            for c in cells
        ],
        "fit_rel_error_full_step": {
            "median_abs": round(statistics.median(abs(x) for x in full_err), 4),
            "max_abs": round(max(abs(x) for x in full_err), 4),
        },
        "draft_step_over_hot_ee_step": (
            round(statistics.median((c.draft_step or 0.0) / c.ee_step for c in in_rounds), 4)
            if in_rounds
            else None
        ),
        "fit_rel_error_ee_step": {
            "median_abs": round(statistics.median(abs(x) for x in ee_err), 4),
            "max_abs": round(max(abs(x) for x in ee_err), 4),
        },
    }
    return BatchedCosts(
        layers=layers,
        embed=embed,
        ee_head=ee,
        final_head=final,
        notes=json.dumps(notes),
        draft_step=draft,
        draft_exit=exit_layer if draft is not None else None,
    )


def profile_batched(
    m: Loaded,
    grid: Grid,
    repeats: int = 30,
    *,
    exit_layer: int | None = None,
    ee_head: Any = None,
    form: str = "grid",
    gamma: int = DRAFT_GAMMA,
) -> BatchedCosts:
    """Measure the grid and fit it (see the module docstring): the early-exit step at
    ``exit_layer`` (default L/2) with ``ee_head`` (a trained head, else the LM head). Runs with
    torch's current thread count: the caller sets it (``threads.torch_threads``) as for the
    batch-1 profile."""
    e = m.n_layers // 2 if exit_layer is None else exit_layer
    validate.choice("--batch-fit", form, FITS)
    return costs_from_cells(measure_cells(m, grid, repeats, e, ee_head, gamma), e, form)


def with_batched(profile: HardwareProfile, costs: BatchedCosts) -> HardwareProfile:
    """``profile`` with its ``batched`` costs set; every batch-1 field stays as measured."""
    return dataclasses.replace(profile, batched=costs)
