"""The interfaces every PPSD backend and transport implements (ARCHITECTURE.md promises them).

- ``Transport``: how one stage talks to the others (send to a stage, receive from any). The
  stage logic (``decoders.ppsd``) sees nothing else, so it runs unchanged over every transport.
- ``ProcessTransport``: a transport between stage *processes*. It adds the two steps a new
  kind needs: ``links`` (made in the parent before the processes start: pipes, a rendezvous
  port, ...) and ``connect`` (in each stage process). A new one (e.g. NCCL) is one subclass
  registered in ``transport.TRANSPORTS``.
- ``PipelineBackend``: where the stages run (one process stepping them in turn, one process
  per stage, ...). ``run`` generates losslessly; a new backend (e.g. CUDA streams) is one
  subclass, and ``MeasurableBackend`` adds the probes the profiler needs (hop, per-stage time).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol, Self

from ppsd_real.backends.messages import StageMessage
from ppsd_real.decoders.result import DecodeResult
from ppsd_real.drafters import DrafterSpec, refuse_oracle
from ppsd_real.sampling import GREEDY, SamplingSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig


class PeerLost(ConnectionError):
    """The link to stage ``peer`` closed or broke (that stage died or hung up)."""

    def __init__(self, peer: int, what: str = "closed") -> None:
        self.peer = peer
        super().__init__(f"lost the link to stage {peer} ({what})")


class Transport(Protocol):
    """One stage's end of the links between stages."""

    def send(self, dst: int, msg: StageMessage) -> None:
        """Hand ``msg`` to stage ``dst``; raises ``PeerLost`` if that link is gone."""

    def recv(self, timeout: float | None) -> StageMessage | None:
        """The next message from any stage, waiting up to ``timeout`` s (None: forever; 0: do
        not wait); None if none came. Raises ``PeerLost`` if a link closed."""

    def poll(self) -> bool:
        """Whether a message (or a closed link) is waiting."""

    def close(self) -> None:
        """Release the links (no message is sent or received after this)."""


class ProcessTransport(ABC):
    """A ``Transport`` between stage processes (see the module docstring)."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def links(cls, k: int, ctx: Any) -> list[Any]:
        """In the parent, before any stage starts: what each of the ``k`` stage processes
        needs to connect (picklable by ``ctx``, a multiprocessing context), by rank."""

    @classmethod
    @abstractmethod
    def connect(cls, rank: int, k: int, link: Any, device: str, own_core: bool) -> Self:
        """In stage process ``rank``: this stage's end of the links. ``own_core``: the stage
        has a CPU core to itself (a transport may then busy-poll instead of sleeping)."""

    @abstractmethod
    def send(self, dst: int, msg: StageMessage) -> None: ...

    @abstractmethod
    def recv(self, timeout: float | None) -> StageMessage | None: ...

    @abstractmethod
    def poll(self) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


def talk_pairs(k: int) -> set[tuple[int, int]]:
    """Stage pairs that exchange messages: 0 with every stage (drafts, verdicts, flushes) and
    each stage with the next (hidden states)."""
    return {(0, s) for s in range(1, k)} | {(s, s + 1) for s in range(1, k - 1)}


def peers_of(rank: int, k: int) -> list[int]:
    """The stages ``rank`` exchanges messages with."""
    return sorted(b if a == rank else a for a, b in talk_pairs(k) if rank in (a, b))


def require_ppsd(scheme: SchemeConfig) -> None:
    """The real pipeline backends run PPSD only (PP-AR and TP-AR exist in the simulator)."""
    if scheme.kind != "ppsd":
        raise ConfigError(
            "scheme.kind", f"the real pipeline backends run PPSD only, not {scheme.kind!r}"
        )


class PipelineBackend(ABC):
    """Runs PPSD for one ``scheme`` (its stage geometry and in-flight limit), lossless vs AR.
    The EE head is fixed when the backend is built (``head_path``); a context manager."""

    scheme: SchemeConfig
    head_path: str | None = None

    @abstractmethod
    def run(
        self,
        prompt: list[int],
        max_new_tokens: int,
        drafter: DrafterSpec,
        reference: list[int] | None = None,
        sampling: SamplingSpec = GREEDY,
    ) -> DecodeResult:
        """One generation of ``max_new_tokens`` after ``prompt``: greedy (equal to AR), or
        sampled as ``sampling`` says (distributed as AR sampling; fixed by its seed)."""

    def close(self) -> None:
        """Release whatever the backend holds (processes, devices). Safe to call twice."""
        return None

    def check_drafter(
        self, drafter: DrafterSpec, reference: list[int] | None, sampling: SamplingSpec = GREEDY
    ) -> None:
        """Refused here, in the caller's process, not inside a stage: a drafter naming another
        EE head than the backend's (fixed when it was built), an oracle without the AR
        reference it replays, or an oracle asked to sample."""
        refuse_oracle(drafter, sampling)
        if drafter.head_path != self.head_path:
            raise ConfigError(
                "drafter.head_path",
                f"this backend was built with EE head {self.head_path!r}, not {drafter.head_path!r}",
            )
        if drafter.needs_reference and reference is None:
            raise ConfigError("drafter", "the oracle drafter needs the AR reference output")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MeasurableBackend(PipelineBackend):
    """A backend whose stages can be probed where they run (what ``ppsd profile`` needs)."""

    transport_name: str = "in-process"  # what carries the messages between its stages

    @abstractmethod
    def hop_latency(self, repeats: int = 200) -> list[float]:
        """One-way hand-off times of one hidden-state message between stage 0 and stage 1."""

    @abstractmethod
    def stage_latency(
        self, context_len: int, window_s: float, together: bool
    ) -> list[dict[str, list]]:
        """Per-stage decode timings taken inside the stages: each alone, or all at once."""
