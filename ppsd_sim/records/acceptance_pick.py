"""Choosing what a command reads from an AcceptanceRecord: one exit's trace, or one head's α(E).

``ppsd sim --acceptance-trace RECORD@EXIT[:HEAD]`` and ``ppsd plan --curve-file RECORD[@HEAD]``
(``--accept``) name a row by exit and head; the decoding setting is the what-if's own when the
record measured it, else the record's only one (then flagged by ``decoding.mismatch``). A
choice the record cannot answer is one line naming the flag and what the record holds — never
a silent pick among several settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppsd_sim.errors import ConfigError
from ppsd_sim.records.acceptance_record import HEADS, NAME, AcceptanceRecord, ExitAcceptance
from ppsd_sim.records.decoding import FLAGS, DecodingSettings


def split_ref(text: str) -> tuple[str, str | None]:
    """``"rec.json@4:shared"`` → ``("rec.json", "4:shared")``; a path that exists as typed
    (or has no ``@``) is never split, so file names holding ``@`` keep working."""
    if "@" not in text or Path(text).exists():
        return text, None
    path, _, sel = text.rpartition("@")
    return path, sel


def is_record(doc: Any) -> bool:
    """True for a document tagged as an AcceptanceRecord (``ppsd accept --out``)."""
    return isinstance(doc, dict) and doc.get("record") == NAME


def other_record(doc: Any) -> str | None:
    """The tag of a record of another type (a RunRecord given where acceptance is read)."""
    kind = doc.get("record") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) and kind != NAME else None


def as_record(doc: Any, path: str, field: str) -> AcceptanceRecord:
    """The tagged document as a record; a malformed one is one line under ``field``."""
    try:
        return AcceptanceRecord.from_dict(doc)
    except ConfigError as err:
        raise ConfigError(field, f"{path} is not a valid AcceptanceRecord: {err}") from None


def _list(xs: Sequence[Any]) -> str:
    return ", ".join(str(x) for x in xs)


def head_of(
    rec: AcceptanceRecord,
    head: str | None,
    field: str,
    path: str,
    exit_layer: int | None = None,
) -> str:
    """``head`` checked against the heads measured (at ``exit_layer`` if given); None: the
    only head there, else ``shared``."""
    rows = [e for e in rec.exits if exit_layer is None or e.exit == exit_layer]
    have = [h for h in HEADS if any(e.head == h for e in rows)]
    at = "" if exit_layer is None else f" at exit {exit_layer}"
    if head is None:
        return have[0] if len(have) == 1 else "shared"
    if head not in HEADS:
        raise ConfigError(field, f"head {head!r} is not one of {_list(HEADS)}")
    if head not in have:
        raise ConfigError(field, f"{path} has no {head} head{at} (heads measured: {_list(have)})")
    return head


def decoding_of(
    rec: AcceptanceRecord,
    head: str,
    target: DecodingSettings,
    field: str,
    path: str,
    exit_layer: int | None = None,
) -> DecodingSettings:
    """The setting to read: ``target`` when measured, else the only one measured for this
    head (and exit); several others are refused, naming them and the flags that choose."""
    have: list[DecodingSettings] = []
    for e in rec.exits:
        here = e.head == head and (exit_layer is None or e.exit == exit_layer)
        if here and e.decoding not in have:
            have.append(e.decoding)
    if target in have:
        return target
    if len(have) == 1:
        return have[0]
    flags = "/".join(FLAGS.values())
    raise ConfigError(
        field,
        f"{path} holds the {head} head at {len(have)} decoding settings "
        f"({_list([d.label() for d in have])}), none of them this what-if's "
        f"{target.label()}: choose one with {flags}",
    )


def parse_exit_head(sel: str, field: str, path: str) -> tuple[int, str | None]:
    """``"4"`` or ``"4:trained"`` (the text after ``@``)."""
    exit_text, _, head = sel.partition(":")
    try:
        exit_layer = int(exit_text)
    except ValueError:
        raise ConfigError(
            field,
            f"after @ comes EXIT[:HEAD] (HEAD one of {_list(HEADS)}), e.g. {path}@4:shared; "
            f"got {sel!r}",
        ) from None
    return exit_layer, head or None


def trace_of(
    rec: AcceptanceRecord,
    sel: str | None,
    target: DecodingSettings,
    field: str,
    path: str,
) -> tuple[ExitAcceptance, str]:
    """The row ``sel`` (``EXIT[:HEAD]``; None only when one exit was measured) names, at
    ``target``'s decoding if measured (``decoding_of``), and a line saying what was read;
    ``row.flat_trace()`` is the 0/1 sequence."""
    exits = sorted({e.exit for e in rec.exits})
    if sel is None:
        if len(exits) != 1:
            raise ConfigError(
                field,
                f"{path} is an AcceptanceRecord of exits {_list(exits)}: name one as "
                f"{path}@EXIT[:HEAD], e.g. {path}@{exits[0]}",
            )
        exit_layer, head = exits[0], None
    else:
        exit_layer, head = parse_exit_head(sel, field, path)
    if exit_layer not in exits:
        raise ConfigError(
            field, f"{path} has no exit {exit_layer} (exits measured: {_list(exits)})"
        )
    head = head_of(rec, head, field, path, exit_layer)
    dec = decoding_of(rec, head, target, field, path, exit_layer)
    row = rec.of(exit_layer, head, field, dec)
    alpha = "-" if row.alpha is None else f"{row.alpha:.4f}"
    what = (
        f"exit {exit_layer}, {head} head, {dec.label()} of {path} "
        f"({describe(rec)}): {row.judged} judged, α {alpha}"
    )
    return row, what


def describe(rec: AcceptanceRecord) -> str:
    """The model and prompt set a record measured, in a few words."""
    m, p = rec.model, rec.prompts
    n = len(p.get("prompt_tokens") or [])
    src = f" {p['source']}" if p.get("source") else ""
    count = f"{n} × " if n else ""
    return (
        f"model {m.get('name') or '?'} (L = {m['n_layers']}); prompts{src}: "
        f"{count}{p['new_tokens']} generated tokens"
    )
