"""The model card's sampled-acceptance section: α(E) at T ∈ {0, 0.7, 1.0}, top-p 1.0 and 0.9.

Measured by ``ppsd_real.accept.measure`` (the same code as ``ppsd accept --temperatures``) on
the held-out prompts the greedy section uses (pinned in ``eval_prompts.json``, ``card_eval``),
with the trained heads and the shared head: per setting the expected acceptance (mean
Σ_x min(p(x), q(x)) of the warped distributions) and the realised one (drafts x ~ q judged by
the exact rule), each ± its prompt-clustered standard error. ``python -m
ppsd_real.lm.card_sampling`` refreshes only this section of card.json and re-renders
model_card.md; ``python -m ppsd_real.lm.card`` measures it with the rest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: (temperature, top-p) measured; temperature 0 is greedy (top-p does not apply)
SETTINGS = ((0.0, 1.0), (0.7, 1.0), (0.7, 0.9), (1.0, 1.0), (1.0, 0.9))
SEED = 0


def measure(
    model_dir: Path,
    prompts: int = 16,
    prompt_len: int = 64,
    new_tokens: int = 128,
    threads: int = 2,
    seed: int = SEED,
    grid: tuple[tuple[float, float], ...] = SETTINGS,
    exits: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """The ``sampling_eval`` section of card.json (see the module docstring). Each cell
    depends only on its own setting, exit and head (uniforms are keyed by position), so a
    smaller ``grid`` or ``exits`` reproduces the card's cells it covers."""
    from ppsd_real import accept
    from ppsd_real.lm import card_eval
    from ppsd_real.sampling import GREEDY, SamplingSpec
    from ppsd_real.threads import torch_threads

    settings = tuple(GREEDY if t == 0 else SamplingSpec(t, None, p, seed) for t, p in grid)
    plist = card_eval.pinned(model_dir, prompts, prompt_len)
    with torch_threads(threads):
        rec = card_eval.acceptance_record(model_dir, plist, new_tokens, exits, settings)
    exits = exits or tuple(sorted({r.exit for r in rec.exits}))
    out = []
    for s in settings:
        dec = accept.decoding_of(s)
        rows = []
        for e in exits:
            row: dict[str, Any] = {"exit": e}
            for head in ("shared", "trained"):
                r = rec.of(e, head, decoding=dec)
                row[head] = {
                    "expected": _r(r.expected_alpha),
                    "expected_se": _r(r.expected_se),
                    "realised": _r(r.alpha),
                    "realised_se": _r(r.alpha_se),
                }
            rows.append(row)
        out.append({**dec.to_dict(), "exits": rows})
    return {
        "prompts": prompts,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "seed": seed,
        "judged_per_row": prompts * new_tokens,
        "settings": out,
    }


def add_to(card: dict[str, Any], model_dir: Path, threads: int) -> None:
    """Measure the section on the prompts of the card's greedy section and put it in."""
    g = card["greedy_eval"]
    card["sampling_eval"] = measure(
        model_dir, g["prompts"], g["prompt_len"], g["new_tokens"], threads
    )


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _setting(s: dict[str, Any]) -> str:
    if s["temperature"] == 0:
        return "greedy"
    return f"T={s['temperature']:g}" + (f", top-p {s['top_p']:g}" if s["top_p"] < 1 else "")


def render(card: dict[str, Any]) -> list[str]:
    """The model_card.md lines of the section ([] when card.json has none yet)."""
    ev = card.get("sampling_eval")
    if not ev:
        return []

    def cell(v: dict[str, Any], greedy: bool) -> str:
        if greedy:
            return f"{v['realised']:.3f}"
        return f"{v['expected']:.3f} / {v['realised']:.3f}"

    sets = ev["settings"]
    lines = [
        "",
        "## Acceptance by exit layer and temperature (sampling)",
        "",
        "Per decoding setting, along sampled continuations (AR sampling of the full model, seed "
        f"{ev['seed']}) of the same {ev['prompts']} held-out prompts ({ev['prompt_len']} + "
        f"{ev['new_tokens']} tokens, {ev['judged_per_row']:,} judged drafts per cell): expected α",
        "= mean over positions of Σ_x min(p(x), q(x)) (p the full model's, q the exit's distribution,",
        "both warped by the same temperature and top-p) / realised α = accepted / judged when a draft",
        "x ~ q is accepted with probability min(1, p(x)/q(x)) (exact speculative sampling). Greedy:",
        "argmax agreement. Measured by `ppsd accept --temperatures 0,0.7,1 --top-p 1,0.9 --heads ...`'s",
        "code (`ppsd_real.accept.measure`); prompt-clustered standard errors are in card.json.",
        "",
        "| exit E | head | " + " | ".join(_setting(s) for s in sets) + " |",
        "|---|---|" + "---|" * len(sets),
    ]
    for i, row in enumerate(sets[0]["exits"]):
        for head in ("shared", "trained"):
            cells = [cell(s["exits"][i][head], s["temperature"] == 0) for s in sets]
            lines.append(f"| {row['exit']} | {head} | " + " | ".join(cells) + " |")
    greedy = next((s for s in sets if s["temperature"] == 0), None)
    hot = [s for s in sets if s["temperature"] == max(x["temperature"] for x in sets)]
    if greedy is not None and hot and hot[0] is not greedy:
        h = hot[0]
        pairs = [
            (h["exits"][i][head]["expected"], greedy["exits"][i][head]["realised"])
            for i in range(len(greedy["exits"]))
            for head in ("shared", "trained")
        ]
        up = sum(a > b for a, b in pairs)
        lines += [
            "",
            f"Direction on this model: the expected α at {_setting(h)} is above the greedy α in "
            f"{up} of {len(pairs)} (exit, head) cells.",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    from ppsd_real.lm import card as card_mod
    from ppsd_sim.records.io import atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=Path("ppsd_real/models/stdlib-lm"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    path = args.model / "card.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    add_to(card, args.model, args.threads)
    atomic_write_text(path, json.dumps(card, indent=1, allow_nan=False) + "\n")
    atomic_write_text(args.model / "model_card.md", card_mod.render_card(args.model))
    print(json.dumps(card["sampling_eval"]["settings"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
