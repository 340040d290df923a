"""The model card's acceptance runs: its evaluation prompts, pinned as token ids in the model
folder, and ``ppsd accept``'s own measurement over them (the greedy table and the sampled
section both come from ``acceptance_record``, the code ``ppsd accept`` runs).

The held-out prompts are windows of the running interpreter's standard library, and its text
differs between patch releases (``dataclasses.py`` changed between 3.11.2 and 3.11.7), which
shifts every window: a card measured on one interpreter could not be reproduced on another.
So the card records the exact prompts it measured (``eval_prompts.json``, written once by
``python -m ppsd_real.lm.card``), and every rerun of the card reads them back from there.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

from ppsd_real.prompts import Prompt
from ppsd_real.sampling import GREEDY, SamplingSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import atomic_write_text
from ppsd_sim.records.acceptance_record import AcceptanceRecord

FILE = "eval_prompts.json"


def path(model_dir: str | Path) -> Path:
    return Path(model_dir) / FILE


def load(model_dir: str | Path) -> list[Prompt]:
    """The pinned prompts, in the order the card measured them."""
    f = path(model_dir)
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        rows = data["prompts"]
        out = [Prompt(tuple(int(x) for x in r["ids"]), str(r["source"])) for r in rows]
    except FileNotFoundError:
        raise ConfigError(
            "model.path", f"{f} is missing: run python -m ppsd_real.lm.card to pin the prompts"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("model.path", f"{f} is not a prompts file ({exc})") from None
    if not out or any(not p.ids for p in out):
        raise ConfigError("model.path", f"{f} holds no prompts (or an empty one)")
    return out


def record(model_dir: str | Path, prompts: list[Prompt]) -> Path:
    """Write ``prompts`` as the card's pinned prompts, naming the interpreter they came from."""
    rows = [{"source": p.source, "ids": list(p.ids)} for p in prompts]
    body = ",\n".join("  " + json.dumps(r, separators=(",", ":")) for r in rows)
    head = {
        "record": "EvalPrompts",
        "made_from": f"the held-out stdlib stream of Python {platform.python_version()}",
        "count": len(prompts),
        "prompt_len": sorted({len(p.ids) for p in prompts}),
    }
    text = json.dumps(head, indent=1)[:-2] + ',\n "prompts": [\n' + body + "\n ]\n}\n"
    json.loads(text)  # the hand-joined layout is still one JSON document
    f = path(model_dir)
    atomic_write_text(f, text)
    return f


def pinned(model_dir: str | Path, count: int, length: int) -> list[Prompt]:
    """The pinned prompts, refused unless they are ``count`` prompts of ``length`` tokens."""
    got = load(model_dir)
    if not _shaped(got, count, length):
        raise ConfigError(
            "greedy_eval",
            f"{path(model_dir)} holds {len(got)} prompts of "
            f"{sorted({len(p.ids) for p in got})} tokens, not {count} of {length}",
        )
    return got


def _shaped(prompts: list[Prompt], count: int, length: int) -> bool:
    return len(prompts) == count and all(len(p.ids) == length for p in prompts)


def held_out(model_dir: str | Path, count: int, length: int) -> tuple[list[Prompt], bool]:
    """``count`` held-out prompts of ``length`` tokens: the folder's pinned ones when they have
    this shape (True), otherwise windows of the running stdlib (``accept.stdlib_held_out``)."""
    from ppsd_real import accept

    if path(model_dir).is_file():
        got = load(model_dir)
        if _shaped(got, count, length):
            return got, True
    return accept.stdlib_held_out(str(model_dir), count, length), False


def pinned_or_new(model_dir: str | Path, count: int, length: int) -> list[Prompt]:
    """``held_out``, pinning new prompts in the folder for the next run."""
    got, was_pinned = held_out(model_dir, count, length)
    if not was_pinned:
        record(model_dir, got)
    return got


def acceptance_record(
    model_dir: str | Path,
    prompts: list[Prompt],
    new_tokens: int,
    exits: tuple[int, ...] | None = None,
    settings: tuple[SamplingSpec, ...] = (GREEDY,),
) -> AcceptanceRecord:
    """``ppsd accept`` on the card's model with its trained heads and the shared head: every
    exit (or ``exits``) and every decoding setting, no progress bar."""
    from ppsd_real import accept, runner
    from ppsd_real.lm.heads import load_heads
    from ppsd_real.model_loading import ModelSpec, model_fingerprint

    spec = ModelSpec(preset=None, path=str(model_dir))
    m = runner.load(spec)
    heads = load_heads(model_dir, model_fingerprint(spec), m.driver.parts.lm_head)
    exits = exits or tuple(range(1, m.n_layers))
    return accept.measure(
        m, prompts, new_tokens, exits, heads=heads, settings=settings, progress=False
    )
