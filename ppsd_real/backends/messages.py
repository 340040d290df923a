"""The stage protocol as types: what stages say to each other, and what the parent asks them.

Stage messages (between stages, over a ``Transport``):
- ``Forward``: a token (or the prompt) and, after stage 0, the hidden states it produced;
- ``Draft``: the exit stage's early-exit proposal for a position, to the controller (stage 0);
- ``Verdict``: the last stage's full-model token for a position, to the controller;
- ``Flush``: the controller's rejection at a position: a new epoch, crop back to ``pos``;
- ``Stop``: the run is over.

An *epoch* names a branch; a rejection bumps it and every message of an older one is stale.

Jobs (parent → stage process, over its control pipe) and their replies (stage → parent):
``RunJob`` → ``Done``, ``HopJob`` → ``HopResult``, ``LatencyJob`` → ``LatencyResult``,
``Quit`` (no reply). A stage that cannot go on replies ``Failed`` instead (and exits).

The wire codec (``encode``/``decode``) turns a stage message into bytes: a pickled tuple
(type code, fields...) with every tensor (a Forward's hidden states, a sampled Draft's or
Verdict's probabilities) as (dtype, shape, raw bytes). Never torch's own tensor pickling, which
goes through shared memory and costs ~1 ms per hand-off.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

import torch

from ppsd_real.drafters import DrafterSpec
from ppsd_sim.records.sampling import GREEDY, SamplingSpec

# ---- between stages -----------------------------------------------------------------------


@dataclass(slots=True)
class Forward:
    epoch: int
    pos: int  # absolute position of tokens[0]
    tokens: list[int]
    hidden: torch.Tensor | None  # None into stage 0 (it embeds the tokens)


@dataclass(slots=True)
class Draft:
    epoch: int
    pos: int  # the position the draft is for
    token: int  # the early-exit head's argmax (the drafter may replace it), or its sample
    probs: torch.Tensor | None = None  # sampling: the warped EE distribution q it came from


@dataclass(slots=True)
class Verdict:
    epoch: int
    pos: int
    token: int  # the full model's token for ``pos`` (sampling: a sample of p)
    sent: float  # perf_counter at the send (one monotonic clock for all processes)
    probs: torch.Tensor | None = None  # sampling: the warped full-model distribution p


@dataclass(slots=True)
class Flush:
    epoch: int  # the new epoch
    pos: int  # first position of the new branch: caches are cropped back to it


@dataclass(slots=True)
class Stop:
    pass


@dataclass(slots=True)
class Bye:
    """A transport closing its side (gloo: ends the peer's receiver thread)."""


StageMessage = Forward | Draft | Verdict | Flush | Stop | Bye

# ---- parent → stage process -----------------------------------------------------------------


@dataclass(frozen=True)
class RunJob:
    """One PPSD generation. ``epoch0`` keeps runs on shared processes apart (stale drops)."""

    epoch0: int
    prompt: list[int]
    max_new_tokens: int
    drafter: DrafterSpec
    reference: list[int] | None
    sampling: SamplingSpec = GREEDY


@dataclass(frozen=True)
class HopJob:
    """Round trips of one hidden-state message between stage 0 and stage 1."""

    repeats: int


@dataclass(frozen=True)
class LatencyJob:
    """Time this stage's own decode step from ``t_start`` (shared clock) for ``window_s``."""

    context_len: int
    t_start: float
    window_s: float


@dataclass(frozen=True)
class Quit:
    pass


Job = RunJob | HopJob | LatencyJob | Quit

# ---- stage process → parent -----------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    rank: int
    pid: int


@dataclass(frozen=True)
class Done:
    """A finished run: this stage's counters; stage 0 adds the output and what it judged."""

    rank: int
    summary: dict[str, Any]
    tokens: list[int] = field(default_factory=list)
    trace: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    flushes: int = 0
    expected: list[float] = field(default_factory=list)  # sampling: Σ min(p, q) per judged


@dataclass(frozen=True)
class HopResult:
    rank: int
    one_way_s: list[float]  # stage 0 only; the echoing stage returns []


@dataclass(frozen=True)
class LatencyResult:
    rank: int
    timings: dict[str, list]  # layers (per layer), head, embed: seconds per sample


@dataclass(frozen=True)
class Failed:
    """Why a stage stopped. ``peer``: the stage it lost its link to (the likely culprit);
    ``details``: the traceback, for a bug rather than a fault."""

    rank: int
    reason: str
    peer: int | None = None
    details: str = ""


Reply = Ready | Done | HopResult | LatencyResult | Failed

# ---- wire codec (stage messages) --------------------------------------------------------------
# Hand-specialised: a hand-off is on the pipeline's critical path (a few µs each way), so
# Forward's tensor is the only field looked at; the rest travel as plain tuples.

_WIRE: tuple[type, ...] = (Forward, Draft, Verdict, Flush, Stop, Bye)
_CODE = {cls: i for i, cls in enumerate(_WIRE)}
_FIELDS = {cls: attrgetter(*[f.name for f in fields(cls)]) for cls in _WIRE if fields(cls)}
_DUMP = pickle.HIGHEST_PROTOCOL
_PROBS = (Draft, Verdict)  # their last field: a probability vector (sampling) or None


def pack_tensor(t: torch.Tensor) -> tuple[str, tuple[int, ...], bytes]:
    """A tensor as (dtype name, shape, raw bytes): plain data any pickle carries, any dtype."""
    t = t.detach().to("cpu").contiguous()
    return (
        str(t.dtype).removeprefix("torch."),
        tuple(t.shape),
        t.view(torch.uint8).numpy().tobytes(),
    )


def unpack_tensor(x: tuple[str, tuple[int, ...], bytes], device: str) -> torch.Tensor:
    t = (
        torch.frombuffer(bytearray(x[2]), dtype=torch.uint8)
        .view(getattr(torch, x[0]))
        .reshape(x[1])
    )
    return t if device == "cpu" else t.to(device)


def encode(msg: StageMessage) -> bytes:
    """Bytes of a stage message (see the module docstring)."""
    if type(msg) is Forward:
        h = msg.hidden
        return pickle.dumps(
            (0, msg.epoch, msg.pos, msg.tokens, None if h is None else pack_tensor(h)), _DUMP
        )
    cls = type(msg)
    get = _FIELDS.get(cls)
    if get is None:
        return pickle.dumps((_CODE[cls],), _DUMP)
    values = get(msg)
    if cls in _PROBS and values[-1] is not None:
        values = (*values[:-1], pack_tensor(values[-1]))
    return pickle.dumps(
        (_CODE[cls], *values) if isinstance(values, tuple) else (_CODE[cls], values), _DUMP
    )


def decode(data: bytes, device: str = "cpu") -> StageMessage:
    """The message ``encode`` made, its tensors on ``device``."""
    t = pickle.loads(data)
    if t[0] == 0:
        h = t[4]
        return Forward(t[1], t[2], t[3], None if h is None else unpack_tensor(h, device))
    cls = _WIRE[t[0]]
    if cls in _PROBS and t[-1] is not None:
        return cls(*t[1:-1], unpack_tensor(t[-1], "cpu"))  # judged on the host (sampling.probs)
    return cls(*t[1:])
