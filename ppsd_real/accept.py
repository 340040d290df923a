"""Greedy acceptance of a model's early exits along its own continuations (``ppsd accept``).

For each prompt the model's greedy continuation is generated (``model.generate``, the
oracle every lossless decoder reproduces), then prompt + continuation go through the runner's
own layer-by-layer path once: after each exit layer E, the exit's greedy token at every
position (final norm + the shared LM head, or a trained head) is compared with the
continuation. Bit t says whether the draft for generated position t — made, as every greedy
draft is, from a prefix equal to AR output — would be accepted. The traces, and everything
derived from them, go into an ``AcceptanceRecord``.

Cost: one generate per prompt plus one forward over its tokens, and per exit one head over
every position (``benchmarks/accept_speed.py`` measures it).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppsd_real.prompts import Prompt
from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_record import (
    DEFAULT_GAMMAS,
    AcceptanceRecord,
    ExitAcceptance,
)


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
    seq = [*prompt, *cont[:-1]]
    p = len(prompt)
    ref = torch.tensor(cont, device=driver.device)
    cache = driver.new_cache()
    h = driver.embed(seq)
    out: dict[tuple[int, str], list[int]] = {}
    want = set(exits)
    for i in range(driver.n_layers):
        h = driver.run_layers(h, i, i + 1, cache, 0)
        e = i + 1
        if e not in want:
            continue
        feats = driver.features(h[:, p - 1 :])
        shared = driver.parts.lm_head(feats)[0].argmax(-1)
        out[(e, "shared")] = (shared == ref).int().tolist()
        if e in heads:
            trained = heads[e](feats)[0].argmax(-1)
            out[(e, "trained")] = (trained == ref).int().tolist()
    full = driver.head(h[:, p - 1 :])
    return out, int((full != ref).sum())


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
) -> AcceptanceRecord:
    """Measure acceptance of ``loaded`` (a ``runner.Loaded``) at ``exits`` on ``prompts``."""
    from tqdm import tqdm

    heads = heads or {}
    d = loaded.driver
    traces: dict[tuple[int, str], list[tuple[int, ...]]] = {}
    mismatched = 0
    t0 = time.perf_counter()
    for pr in tqdm(prompts, desc="ppsd accept", disable=not progress, leave=False):
        cont = continuation(loaded.model, pr.ids, new_tokens)
        if on_continuation is not None:
            on_continuation(pr, cont)
        bits, wrong = exit_bits(d, pr.ids, cont, exits, heads)
        for key, b in bits.items():
            traces.setdefault(key, []).append(tuple(b))
        mismatched += wrong
    elapsed = time.perf_counter() - t0
    rows = [
        ExitAcceptance(e, head, tuple(traces[(e, head)]))
        for e in exits
        for head in ("shared", "trained")
        if (e, head) in traces
    ]
    notes = f"{elapsed:.1f} s for {len(prompts)} prompts × {new_tokens} tokens, {len(exits)} exits"
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
