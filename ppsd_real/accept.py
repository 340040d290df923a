"""Greedy acceptance of a model's early exits along its own continuations (``ppsd accept``).

For each prompt the model's greedy continuation is generated (``model.generate``, the
oracle every lossless decoder reproduces), then prompt + continuation go through the runner's
own layer-by-layer path once: after each exit layer E, the exit's greedy token at every
position (final norm + the shared LM head, or a trained head) is compared with the
continuation. Bit t says whether the draft for generated position t — made, as every greedy
draft is, from a prefix equal to AR output — would be accepted. The traces, and everything
derived from them, go into an ``AcceptanceRecord``.

Sampled decoding (``settings`` with temperature > 0, ``sampled_rows``): the continuation is AR
sampling of the full model (token t drawn from warp(p) with a uniform keyed by (seed, prompt,
t)), then the same one pass gives, per exit and head, the warped draft distribution q at every
position; a row holds the expected acceptance Σ_x min(p(x), q(x)) per position and the
realised outcome of the exact rule (a draft x ~ q judged by ``sampling.judge``, uniforms keyed
by the same position, so exits share random numbers and their difference is less noisy).

Cost: one generate per prompt plus one forward over its tokens, and per exit one head over
every position (``benchmarks/accept_speed.py`` measures it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppsd_real import sampling
from ppsd_real.prompts import Prompt
from ppsd_real.sampling import GREEDY, SamplingSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_record import (
    DEFAULT_GAMMAS,
    AcceptanceRecord,
    ExitAcceptance,
)
from ppsd_sim.records.decoding import DecodingSettings

#: prompt i's positions are keyed from i << PROMPT_SHIFT (Philox counters are 64-bit)
PROMPT_SHIFT = 32


def parse_exits(text: str | None, n_layers: int, field: str = "--exits") -> tuple[int, ...]:
    """``"1,3,5"`` or ``"2-6"`` (or None: every exit 1..L-1), each checked against L."""
    if text is None or text.strip() in ("", "all"):
        return tuple(range(1, n_layers))
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise ConfigError(
                field, f"must be exit layers like 1,3,5 or 2-6, got {part!r}"
            ) from None
    bad = sorted(e for e in out if not 1 <= e < n_layers)
    if bad or not out:
        raise ConfigError(
            field, f"exit layers must satisfy 1 <= E < L = {n_layers}, got {bad or '[]'}"
        )
    return tuple(sorted(out))


def continuation(model: Any, ids: tuple[int, ...], n: int) -> list[int]:
    """The model's greedy continuation of ``ids`` (``n`` tokens, end-of-text ignored)."""
    dev = next(model.parameters()).device
    out = model.generate(
        torch.tensor([list(ids)], device=dev),
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
    )
    return out[0, len(ids) :].tolist()


@torch.inference_mode()
def exit_logits(
    driver: Any,
    prompt: tuple[int, ...],
    cont: list[int],
    exits: tuple[int, ...],
    heads: dict[int, torch.nn.Module],
) -> tuple[dict[tuple[int, str], torch.Tensor], torch.Tensor]:
    """Logits (n, V) for every generated position at each exit and head (final norm + the
    shared LM head, or the trained head), and the full model's, from one pass through the
    runner's own layer-by-layer path over prompt + continuation."""
    seq = [*prompt, *cont[:-1]]
    p = len(prompt)
    cache = driver.new_cache()
    h = driver.embed(seq)
    out: dict[tuple[int, str], torch.Tensor] = {}
    want = set(exits)
    for i in range(driver.n_layers):
        h = driver.run_layers(h, i, i + 1, cache, 0)
        e = i + 1
        if e not in want:
            continue
        feats = driver.features(h[:, p - 1 :])
        out[(e, "shared")] = driver.parts.lm_head(feats)[0]
        if e in heads:
            out[(e, "trained")] = heads[e](feats)[0]
    full = driver.parts.lm_head(driver.features(h[:, p - 1 :]))[0]
    return out, full


def exit_bits(
    driver: Any,
    prompt: tuple[int, ...],
    cont: list[int],
    exits: tuple[int, ...],
    heads: dict[int, torch.nn.Module],
) -> tuple[dict[tuple[int, str], list[int]], int]:
    """0/1 per generated position at each exit and head: does the exit's greedy token for
    that position equal the continuation's? Also the number of positions where the runner's
    own full model disagrees with the continuation (expected 0: a check of the path)."""
    logits, full = exit_logits(driver, prompt, cont, exits, heads)
    ref = torch.tensor(cont, device=driver.device)
    out = {k: (v.argmax(-1) == ref).int().tolist() for k, v in logits.items()}
    return out, int((full.argmax(-1) != ref).sum())


@torch.inference_mode()
def sampled_continuation(
    driver: Any, ids: tuple[int, ...], n: int, spec: SamplingSpec, base: int
) -> list[int]:
    """AR sampling of ``n`` tokens through the runner's path: token t is drawn from the
    warped full-model distribution with the uniform keyed by (seed, base + t)."""
    cache = driver.new_cache()
    h = driver.run_layers(driver.embed(list(ids)), 0, driver.n_layers, cache, 0)
    out: list[int] = []
    for t in range(n):
        logits = driver.parts.lm_head(driver.features(h[:, -1:]))[0, 0]
        tok = sampling.target_from(sampling.warp(logits, spec), spec.seed, base + t)
        out.append(tok)
        if t + 1 < n:
            h = driver.run_layers(driver.embed([tok]), 0, driver.n_layers, cache, len(ids) + t)
    return out


def sampled_rows(
    driver: Any,
    prompt: tuple[int, ...],
    cont: list[int],
    exits: tuple[int, ...],
    heads: dict[int, torch.nn.Module],
    spec: SamplingSpec,
    base: int,
) -> dict[tuple[int, str], tuple[list[int], list[float]]]:
    """Per exit and head: (realised 0/1, expected Σ min(p, q)) at every generated position,
    p and q warped by ``spec`` alike (see the module docstring)."""
    logits, full = exit_logits(driver, prompt, cont, exits, heads)
    p = sampling.warp(full, spec)
    out = {}
    for key, lg in logits.items():
        q = sampling.warp(lg, spec)
        bits, exp = [], []
        for t in range(len(cont)):
            draft = sampling.draft_from(q[t], spec.seed, base + t)
            ok, _ = sampling.judge(draft, p[t], q[t], spec.seed, base + t)
            bits.append(int(ok))
            exp.append(min(1.0, sampling.expected_acceptance(p[t], q[t])))
        out[key] = (bits, exp)
    return out


def decoding_of(spec: SamplingSpec) -> DecodingSettings:
    """The record-side settings of a sampling spec (the seed is not part of them)."""
    return spec.decoding


def measure(
    loaded: Any,
    prompts: list[Prompt],
    new_tokens: int,
    exits: tuple[int, ...],
    *,
    heads: dict[int, torch.nn.Module] | None = None,
    heads_info: dict[str, Any] | None = None,
    gammas: tuple[int, ...] = DEFAULT_GAMMAS,
    fingerprint: str = "",
    prompt_source: str = "",
    progress: bool = True,
    provenance: Any = None,
    on_continuation: Any = None,
    settings: tuple[SamplingSpec, ...] = (GREEDY,),
) -> AcceptanceRecord:
    """Measure acceptance of ``loaded`` (a ``runner.Loaded``) at ``exits`` on ``prompts``,
    one row per exit, head and decoding setting in ``settings`` (greedy: the model's greedy
    continuation; sampled: see the module docstring)."""
    from tqdm import tqdm

    heads = heads or {}
    d = loaded.driver
    traces: dict[tuple[int, str, int], list[tuple[int, ...]]] = {}
    expected: dict[tuple[int, str, int], list[tuple[float, ...]]] = {}
    mismatched = 0
    t0 = time.perf_counter()
    jobs = [(s, i, pr) for s in range(len(settings)) for i, pr in enumerate(prompts)]
    for s, i, pr in tqdm(jobs, desc="ppsd accept", disable=not progress, leave=False):
        spec = settings[s]
        if spec.greedy:
            cont = continuation(loaded.model, pr.ids, new_tokens)
            if on_continuation is not None:
                on_continuation(pr, cont)
            bits, wrong = exit_bits(d, pr.ids, cont, exits, heads)
            for key, b in bits.items():
                traces.setdefault((*key, s), []).append(tuple(b))
            mismatched += wrong
            continue
        base = i << PROMPT_SHIFT
        cont = sampled_continuation(d, pr.ids, new_tokens, spec, base)
        if on_continuation is not None:
            on_continuation(pr, cont)
        for key, (b, x) in sampled_rows(d, pr.ids, cont, exits, heads, spec, base).items():
            traces.setdefault((*key, s), []).append(tuple(b))
            expected.setdefault((*key, s), []).append(tuple(x))
    elapsed = time.perf_counter() - t0
    rows = [
        ExitAcceptance(
            e,
            head,
            tuple(traces[(e, head, s)]),
            decoding_of(settings[s]),
            None if settings[s].greedy else tuple(expected[(e, head, s)]),
        )
        for s in range(len(settings))
        for e in exits
        for head in ("shared", "trained")
        if (e, head, s) in traces
    ]
    notes = f"{elapsed:.1f} s for {len(prompts)} prompts × {new_tokens} tokens, {len(exits)} exits"
    if len(settings) > 1 or not settings[0].greedy:
        notes += f", {len(settings)} decoding settings"
        seeds = sorted({x.seed for x in settings if not x.greedy})
        notes += f" (sampling seed {', '.join(map(str, seeds))})" if seeds else ""
    if mismatched:
        notes += (
            f"; the layer-by-layer full model's token differed from generate's at {mismatched} "
            "positions (numerical ties)"
        )
    cfg = d.parts.config
    return AcceptanceRecord(
        model={
            "name": loaded.spec.name,
            "fingerprint": fingerprint,
            "model_type": d.parts.model_type or str(getattr(cfg, "model_type", "")),
            "n_layers": d.n_layers,
            "vocab": int(d.parts.lm_head.weight.shape[0]),
        },
        prompts={
            "source": prompt_source,
            "prompt_tokens": [len(p.ids) for p in prompts],
            "new_tokens": new_tokens,
        },
        exits=tuple(rows),
        gammas=gammas,
        heads=heads_info,
        provenance=provenance,
        notes=notes,
    )


def stdlib_held_out(model_dir: str | Path, count: int, length: int) -> list[Prompt]:
    """The project's example prompts: ``count`` windows of ``length`` tokens spread evenly
    over the stdlib's held-out token stream (the prompts ``ppsd_real.lm.card`` measures)."""
    from ppsd_real.lm.corpus import load_corpus
    from ppsd_real.lm.train import encode_stream
    from ppsd_real.prompts import load_tokenizer

    tok = load_tokenizer(model_dir, "--prompt-set")
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise ConfigError("--prompt-set", "stdlib-held-out needs a fast (tokenizers) tokenizer")
    eos = tok.eos_token_id
    held = encode_stream(backend, load_corpus().read("held_out"), eos)
    if len(held) < length + 2:
        raise ConfigError("--prompt-tokens", f"longer than the held-out stream ({len(held)})")
    starts = np.linspace(0, len(held) - length - 1, count).astype(int)
    return [
        Prompt(tuple(int(x) for x in held[s : s + length]), f"stdlib-held-out@{s}") for s in starts
    ]


def _values(field: str, given: list[str] | None, kind: type) -> list[Any]:
    """Comma-separated values of a repeatable flag, in order, without repeats."""
    out: list[Any] = []
    for text in given or []:
        for part in text.split(","):
            if not part.strip():
                continue
            try:
                v = kind(part)
            except ValueError:
                what = "integers" if kind is int else "numbers"
                raise ConfigError(
                    field, f"must be {what} like 1,2 (comma-separated), got {part!r}"
                ) from None
            if v not in out:
                out.append(v)
    return out


def decoding_grid(
    temperatures: list[str] | None,
    top_ks: list[str] | None,
    top_ps: list[str] | None,
    seed: int | None,
) -> tuple[SamplingSpec, ...]:
    """Every setting the flags name: each temperature × top-k × top-p (``--temperature 0,1
    --top-p 1,0.9``), temperature 0 once (greedy; top-k/top-p do not apply to it). Nothing
    given: greedy alone. A bad value is one line naming the flag."""
    temps = _values("--temperature", temperatures, float) or [0.0]
    ks: list[int | None] = _values("--top-k", top_ks, int) or [None]
    ps = _values("--top-p", top_ps, float) or [1.0]
    if seed is not None and all(t == 0 for t in temps):
        raise ConfigError("--seed", "has no effect at temperature 0 (greedy draws nothing)")
    out: list[SamplingSpec] = []
    for t in temps:
        if t == 0 and any(x > 0 for x in temps):
            cand = [GREEDY]  # alongside sampled settings top-k/top-p are for those
        else:
            cand = [SamplingSpec(t, k, p, 0 if seed is None else seed) for k in ks for p in ps]
        out.extend(c for c in cand if c not in out)
    return tuple(out)
