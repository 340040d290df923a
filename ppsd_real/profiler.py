"""Measure a HardwareProfile: what the PPSD pipeline needs, measured where it happens.

With stage processes (a ``MeasurableBackend``, e.g. ``DistributedBackend``) every latency the
pipeline uses is taken inside the stage processes themselves (``latency_context = "per_stage"``): a stage's layers run faster
with only their own weights hot than inside a full-model step, so both are measured and the
full-model figures go to the notes. Also measured there: ``concurrency_slowdown`` (each stage
alone vs all stages over the same time window, interleaved), ``hop`` over the transport in use,
and ``tick`` (the per-token control cost: a stage's time in a real run minus its layers, heads
and blocked waits). Without stage processes the profile is full-model only and tick stays 0.
At a sampling setting the per-vector cost of choosing a token that way is measured too
(``sampling_costs``), on the model's own logits, in the calling process.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ppsd_real import sampling as sampling_rules
from ppsd_real.backends.base import MeasurableBackend
from ppsd_real.decoders import ARDecoder
from ppsd_real.drafters import DrafterSpec
from ppsd_real.measure import provenance
from ppsd_real.runner import Loaded
from ppsd_real.sampling import GREEDY, SamplingSpec
from ppsd_real.threads import torch_threads
from ppsd_sim.records import HardwareProfile, Timing
from ppsd_sim.records.sampling_cost import SamplingCosts

VERIFY_TOKENS = (1, 2, 4, 8, 16)
SAMPLING_REPEATS = 300  # each part takes tens of µs: many samples for a stable median


def _samples(
    fn: Callable[[], object],
    repeats: int,
    warmup: int = 3,
    sync: Callable[[], None] = lambda: None,
) -> list[float]:
    """Wall time of ``fn`` per call; ``sync`` (the device's) closes each timed region."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def _med(xs: list[float]) -> float:
    return statistics.median(xs)


def full_model_steps(
    m: Loaded, repeats: int, cache: Any, x1: Any, ctx: int
) -> tuple[list[list[float]], list[float]]:
    """Each layer and the head timed inside full decode steps (as an AR token pays them: the
    head timed in a tight loop of its own stays cache-hot and measured ~2x faster)."""
    d, n_layers = m.driver, m.n_layers
    out: list[list[float]] = [[] for _ in range(n_layers)]
    heads: list[float] = []
    for rep in range(repeats + 3):
        x = x1
        d.sync()
        for i in range(n_layers):
            t0 = time.perf_counter()
            x = d.run_layers(x, i, i + 1, cache, ctx)
            d.sync()
            if rep >= 3:
                out[i].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        d.head(x)
        d.sync()
        if rep >= 3:
            heads.append(time.perf_counter() - t0)
    return out, heads


def sampling_costs(
    m: Loaded, target: Any, draft: Any, spec: SamplingSpec, repeats: int = SAMPLING_REPEATS
) -> SamplingCosts:
    """warp, draw and judge (``records.sampling_cost``) timed on the model's logits for the
    hidden states ``target`` (p) and ``draft`` (q), one vocabulary-wide vector each, as the
    decoders call them (``ppsd_real.sampling``). Each draw and judge is at its own position, so
    the keyed uniforms differ and the judged drafts mix acceptances and rejections (a
    rejection's residual draw included) as in a run."""
    d = m.driver
    lp, lq = d.logits(target)[-1], d.logits(draft)[-1]
    warps = _samples(lambda: sampling_rules.probs(lp, spec), repeats, sync=d.sync)
    p, q = sampling_rules.probs(lp, spec), sampling_rules.probs(lq, spec)
    drafts = [sampling_rules.draft_from(q, spec.seed, i) for i in range(repeats + 3)]
    draws: list[float] = []
    judges: list[float] = []
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        sampling_rules.target_from(p, spec.seed, i)
        t1 = time.perf_counter()
        sampling_rules.judge(drafts[i], p, q, spec.seed, i)
        sampling_rules.expected_acceptance(p, q)
        t2 = time.perf_counter()
        if i >= 3:  # warm-up
            draws.append(t1 - t0)
            judges.append(t2 - t1)
    return SamplingCosts(
        settings=spec.decoding,
        warp=Timing.of_samples(warps),
        draw=Timing.of_samples(draws),
        judge=Timing.of_samples(judges),
    )


def _stage_timings(
    be: MeasurableBackend, ctx: int, window_s: float, rounds: int
) -> tuple[list[dict], list[dict], list[list[float]]]:
    """Alone and together, interleaved ``rounds`` times (the machine drifts); returns the pooled
    alone and together samples per stage and, per stage, the slowdown of each round."""
    k = be.scheme.n_stages
    be.stage_latency(ctx, 0.2, together=False)  # warm-up
    alone: list[dict] = [{} for _ in range(k)]
    both: list[dict] = [{} for _ in range(k)]
    ratios: list[list[float]] = [[] for _ in range(k)]
    for _ in range(rounds):
        a = be.stage_latency(ctx, window_s, together=False)
        b = be.stage_latency(ctx, window_s, together=True)
        for s in range(k):
            for pool, got in ((alone[s], a[s]), (both[s], b[s])):
                pool.setdefault("layers", [[] for _ in got["layers"]])
                for i, xs in enumerate(got["layers"]):
                    pool["layers"][i].extend(xs)
                pool.setdefault("head", []).extend(got["head"])
                pool.setdefault("embed", []).extend(got["embed"])
            ratios[s].append(
                sum(_med(xs) for xs in b[s]["layers"]) / sum(_med(xs) for xs in a[s]["layers"])
            )
    return alone, both, ratios


def tick_samples(
    be: MeasurableBackend, m: Loaded, runs: int = 5, n: int = 48
) -> tuple[list[float], list[list[float]]]:
    """Per-token control cost per stage from real runs at acceptance 1 (no flushes): a stage's
    run time minus its blocked waits, layer and head compute, per step. Covers the controller's
    bookkeeping, the drafter, message encode/decode, sends and the polls between layers."""
    prompt = [1 + i * 13 % (m.vocab - 1) for i in range(8)]
    ref = ARDecoder(m.driver).decode(prompt, n).tokens
    per_run: list[float] = []
    per_stage: list[list[float]] = [[] for _ in be.scheme.stages()]
    for rep in range(runs + 1):
        res = be.run(prompt, n, DrafterSpec("oracle", 1.0, rep), ref)
        if rep == 0:
            continue  # warm-up
        ticks = []
        for s, st in enumerate(res.extra["stages"]):
            compute = st["layers_s"] - st["poll_s"] + st["heads_s"]
            t = (st["elapsed_s"] - st["wait_s"] - compute) / max(1, st["steps"])
            per_stage[s].append(t)
            ticks.append(t)
        per_run.append(statistics.fmean(ticks))
    return per_run, per_stage


def profile(
    m: Loaded,
    repeats: int = 30,
    context_len: int = 64,
    backend: MeasurableBackend | None = None,
    threads: int = 1,
    window_s: float = 0.5,
    rounds: int = 6,
    ee_head: Any = None,
    sampling: SamplingSpec = GREEDY,
) -> HardwareProfile:
    """Latencies at a cache of ``context_len`` tokens; warm-up excluded, raw samples kept.
    With ``backend`` the pipeline's latencies are per-stage (see the module docstring). The
    full-model timings run with ``threads`` torch threads (set here, restored after), so the
    provenance's thread count is the one measured with. ``ee_head`` (a trained head) is timed
    as the early-exit head without stage processes; with them, the stages' own drafter head
    is (open the backend with its ``DrafterSpec``). A sampling ``sampling`` adds the
    profile's ``sampling`` costs, measured at those settings."""
    with torch_threads(threads):
        prof = _profile(m, repeats, context_len, backend, threads, window_s, rounds, ee_head)
        if sampling.greedy:
            return prof
        d, prompt = m.driver, list(range(1, 9))
        full = d.run_layers(d.embed(prompt), 0, m.n_layers, d.new_cache(), 0)
        early = d.run_layers(d.embed(prompt), 0, max(1, m.n_layers // 2), d.new_cache(), 0)
        costs = sampling_costs(m, full[:, -1:], early[:, -1:], sampling)
        return replace(prof, sampling=costs)


def _profile(
    m: Loaded,
    repeats: int,
    context_len: int,
    backend: MeasurableBackend | None,
    threads: int,
    window_s: float,
    rounds: int,
    ee_head: Any,
) -> HardwareProfile:
    d, n_layers = m.driver, m.n_layers
    cache = d.new_cache()
    h0 = d.run_layers(d.embed(list(range(1, context_len + 1))), 0, n_layers, cache, 0)
    x1 = h0[:, -1:]
    full_layers, step_heads = full_model_steps(m, repeats, cache, x1, context_len)
    full = {
        n: _med(
            _samples(
                lambda n=n: d.run_layers(h0[:, -n:], 0, n_layers, cache, context_len),
                max(5, repeats // 3),
                sync=d.sync,
            )
        )
        for n in VERIFY_TOKENS
    }
    head = Timing.of_samples(step_heads)
    hot_head = _med(_samples(lambda: d.head(x1), repeats, sync=d.sync))
    hot_ee = hot_head
    if ee_head is not None:
        hot_ee = _med(_samples(lambda: d.head(x1, ee_head), repeats, sync=d.sync))
        hot_head = _med(_samples(lambda: d.head(x1), repeats, sync=d.sync))
    embed = Timing.of_samples(_samples(lambda: d.embed([5]), repeats, sync=d.sync))
    crops: list[float] = []
    for _ in range(repeats // 3 + 2):
        d.run_layers(h0[:, -4:], 0, n_layers, cache, context_len)
        d.sync()
        t0 = time.perf_counter()
        d.crop(cache, 0, n_layers, context_len)
        d.sync()
        crops.append(time.perf_counter() - t0)
    full_t = embed.median + sum(_med(xs) for xs in full_layers) + head.median
    notes: dict[str, Any] = {
        "cached_tokens": context_len,
        "full_model_layer_median_s": [round(_med(xs), 7) for xs in full_layers],
        "full_model_T_s": round(full_t, 7),
        "head": "norm + LM head timed inside full-model steps (as AR pays it); in a tight "
        f"loop of its own it measured {hot_head:.6f} s",
        "flush": "KV crop of all layers after a 4-token step, full model",
        "verify_factor": "full-model steps of n tokens over one token",
    }
    common = {
        "flush": Timing.of_samples(crops[2:]),
        "verify_tokens": VERIFY_TOKENS,
        "verify_factor": tuple(full[n] / full[1] for n in VERIFY_TOKENS),
    }
    if backend is None:
        notes["tick"] = "not measured without stage processes (0)"
        if ee_head is not None:
            notes["ee_head"] = (
                "the trained head (--heads): the in-step LM head's timing × (trained head ÷ LM "
                f"head, each in a loop of its own: {hot_ee:.6f} s ÷ {hot_head:.6f} s)"
            )
        return HardwareProfile(
            layer_decode=tuple(Timing.of_samples(xs) for xs in full_layers),
            ee_head=head if ee_head is None else head.scaled(hot_ee / hot_head),
            final_head=head,
            embed=embed,
            **common,
            provenance=provenance(m.spec, threads, "full_model", notes=json.dumps(notes)),
        )
    stages = backend.scheme.stages()
    transport = backend.transport_name
    hop = backend.hop_latency(220)[20:]
    alone, both, ratios = _stage_timings(backend, context_len, window_s, rounds)
    ticks, ticks_by_stage = tick_samples(backend, m)
    layers = [Timing.of_samples(xs) for st in alone for xs in st["layers"]]
    exit_i = next(st.index for st in stages if st.exit)
    slowdown_raw = _med([r for rs in ratios for r in rs])
    e_layer = stages[exit_i].stop
    stage_t = embed.median + sum(t.median for t in layers) + _med(alone[-1]["head"])
    notes.update(
        {
            "layer_decode": "per stage: each layer timed inside its own stage process (one "
            "thread, pinned), that stage's step only (its layers and head)",
            "transport": transport,
            "hop": f"one-way {transport} hand-off of one token's hidden state (1x1x"
            f"{m.driver.parts.config.hidden_size} {m.spec.dtype} on {m.spec.device}), stage 0<->1",
            "tick": "per stage per token: stage run time - blocked waits - layers - heads, "
            "real runs at acceptance 1; per stage medians below",
            "tick_per_stage_median_s": [round(_med(xs), 7) for xs in ticks_by_stage],
            "concurrency": "each stage's layer sum, all stages running over the same window "
            "vs each alone, interleaved rounds; ratio per stage per round below",
            "concurrency_ratios": [[round(r, 4) for r in rs] for rs in ratios],
            "concurrency_slowdown_measured": round(slowdown_raw, 4),
            "together_layer_median_s": [round(_med(xs), 7) for st in both for xs in st["layers"]],
            "per_stage_T_s": round(stage_t, 7),
            "c_full_model": round(
                (embed.median + sum(_med(xs) for xs in full_layers[:e_layer]) + head.median)
                / full_t,
                4,
            ),
            "c_per_stage": round(
                (
                    embed.median
                    + sum(t.median for t in layers[:e_layer])
                    + _med(alone[exit_i]["head"])
                )
                / stage_t,
                4,
            ),
        }
    )
    return HardwareProfile(
        layer_decode=tuple(layers),
        ee_head=Timing.of_samples(alone[exit_i]["head"]),
        final_head=Timing.of_samples(alone[-1]["head"]),
        embed=Timing.of_samples(alone[0]["embed"]) if alone[0]["embed"] else embed,
        hop=Timing.of_samples(hop),
        tick=Timing.of_samples(ticks),
        concurrency_slowdown=max(1.0, slowdown_raw),
        **common,
        provenance=provenance(m.spec, threads, "per_stage", notes=json.dumps(notes)),
    )
