"""Transports between PPSD stages (the interfaces are in ``backends.base``).

- ``LocalTransport``: in-process inboxes (sequential backend); messages pass as objects.
- ``PipeTransport``: one OS pipe per pair of stages that talk; messages go through the wire
  codec of ``backends.messages`` (raw tensor bytes).
- ``GlooTransport``: torch.distributed point-to-point over gloo (TCP): per peer, a fixed-size
  header then the payload, received by one blocking thread per peer (see the class for why).

``TRANSPORTS`` names every transport between stage processes; a new one is a
``ProcessTransport`` subclass added there.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any, Self

import torch

from ppsd_real.backends.base import PeerLost, ProcessTransport, peers_of, talk_pairs
from ppsd_real.backends.messages import Bye, StageMessage, decode, encode


class LocalTransport:
    """Inboxes in one process: ``inboxes[i]`` is stage i's queue."""

    def __init__(self, me: int, inboxes: list[deque]) -> None:
        self.me, self.inboxes = me, inboxes

    def send(self, dst: int, msg: StageMessage) -> None:
        self.inboxes[dst].append(msg)

    def recv(self, timeout: float | None) -> StageMessage | None:
        box = self.inboxes[self.me]
        return box.popleft() if box else None

    def poll(self) -> bool:
        return bool(self.inboxes[self.me])

    def close(self) -> None:
        return None


def spin_then_poll(
    poller: select.poll, spin_s: float, timeout: float | None
) -> list[tuple[int, int]]:
    """``poller``'s events (data waiting, or a hung-up peer whose recv raises EOFError):
    checked at once; then, with ``spin_s`` > 0, busy-polled that long (only on a core of its
    own: sharing one, the spin would starve the other stage; a sleeping wake-up costs tens to
    hundreds of µs on a VM); then waited for up to ``timeout`` s (None: forever; 0: no wait)."""
    events = poller.poll(0)
    if events or timeout == 0:
        return events
    if spin_s > 0:
        end = time.perf_counter() + min(spin_s, timeout or spin_s)
        while time.perf_counter() < end:
            events = poller.poll(0)
            if events:
                return events
    return poller.poll(-1 if timeout is None else max(1, round(timeout * 1e3)))


class PipeTransport(ProcessTransport):
    """Duplex pipes to the peers this stage talks to (``peers[rank] = Connection``).

    ``spin_s``: a blocking receive first busy-polls for up to this long. With a core of its
    own, spinning costs the pipeline nothing, while a receiver asleep in the kernel must be
    woken (on a VM an inter-processor interrupt, a VM exit) before it can run the next token.
    """

    name = "pipe"
    SPIN_S = 0.005  # busy-poll this long before a blocking receive (own core only)

    def __init__(
        self, me: int, peers: dict[int, Connection], device: str = "cpu", spin_s: float = 0.0
    ) -> None:
        self.me, self.peers, self.device, self.spin_s = me, peers, device, spin_s
        # One registered poll object: Connection.poll()/wait() build a selector per call,
        # measured at ~25 µs per check inside a stage (4 checks per token between layers).
        self._by_fd = {c.fileno(): c for c in peers.values()}
        self._rank_of = {c.fileno(): r for r, c in peers.items()}
        self._poller = select.poll()
        for fd in self._by_fd:
            self._poller.register(fd, select.POLLIN)

    @classmethod
    def links(cls, k: int, ctx: Any) -> list[dict[int, Connection]]:
        out: list[dict[int, Connection]] = [{} for _ in range(k)]
        for a, b in sorted(talk_pairs(k)):
            ca, cb = ctx.Pipe(duplex=True)
            out[a][b], out[b][a] = ca, cb
        return out

    @classmethod
    def connect(
        cls, rank: int, k: int, link: dict[int, Connection], device: str, own_core: bool
    ) -> Self:
        # Spin only on a core of its own: sharing one, it would starve the other stage.
        return cls(rank, link, device, cls.SPIN_S if own_core else 0.0)

    def send(self, dst: int, msg: StageMessage) -> None:
        try:
            self.peers[dst].send_bytes(encode(msg))
        except (BrokenPipeError, ConnectionError, EOFError, OSError) as err:
            raise PeerLost(dst, type(err).__name__) from None

    def recv(self, timeout: float | None) -> StageMessage | None:
        events = spin_then_poll(self._poller, self.spin_s, timeout)
        conn = self._by_fd[events[0][0]] if events else None
        if conn is None:
            return None
        try:
            data = conn.recv_bytes()
        except (EOFError, ConnectionError, OSError) as err:
            raise PeerLost(self._rank_of[conn.fileno()], type(err).__name__) from None
        return decode(data, self.device)

    def poll(self) -> bool:
        return bool(self._poller.poll(0))

    def close(self) -> None:
        for c in self.peers.values():
            c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GlooTransport(ProcessTransport):
    """torch.distributed point-to-point (gloo on CPU): per peer, a header [nbytes] then payload.

    Why receiver threads: a gloo receive never reports ``is_completed()`` until ``wait()`` is
    called on it, and a ``wait(timeout)`` that times out *completes the work with an error*
    (the posted receive is lost). Polling a posted any-source receive therefore cannot work
    (it hung every run). Instead one daemon thread per peer blocks in ``recv(src=peer)``
    (the GIL is released while it waits), decodes, and queues the message; ``poll`` and
    ``recv`` read that queue. Receiving from a named peer also keeps each header with its own
    payload (no ``source_rank()``, deprecated) and is what NCCL needs (no any-source there).
    Sends are ``isend``; the work and its buffers are kept until a bounded number of younger
    sends exist, then waited on (long complete by then), so no buffer is freed in flight.
    """

    name = "gloo"
    HEADER_TAG, PAYLOAD_TAG = 1, 2
    MAX_OPEN_SENDS = 64

    def __init__(self, me: int, peers: list[int], device: str = "cpu") -> None:
        import torch.distributed as dist

        self.dist, self.me, self.device = dist, me, device
        self._inbox: queue.SimpleQueue[StageMessage | BaseException] = queue.SimpleQueue()
        self._sends: deque[tuple[Any, Any, torch.Tensor, torch.Tensor]] = deque()
        self._threads = {
            p: threading.Thread(target=self._receive_from, args=(p,), daemon=True, name=f"rx{p}")
            for p in sorted(set(peers))
        }
        for t in self._threads.values():
            t.start()

    @classmethod
    def links(cls, k: int, ctx: Any) -> list[int]:
        port = _free_port()
        return [port] * k

    @classmethod
    def connect(cls, rank: int, k: int, link: int, device: str, own_core: bool) -> Self:
        import torch.distributed as dist

        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{link}", rank=rank, world_size=k
        )
        return cls(rank, peers_of(rank, k), device)

    def _receive_from(self, peer: int) -> None:
        """Receiver thread: header then payload from ``peer``, forever (until the peer goes)."""
        try:
            while True:
                hdr = torch.zeros(1, dtype=torch.int64)
                self.dist.recv(hdr, peer, tag=self.HEADER_TAG)
                buf = torch.empty(int(hdr.item()), dtype=torch.uint8)
                self.dist.recv(buf, peer, tag=self.PAYLOAD_TAG)
                msg = decode(buf.numpy().tobytes(), self.device)
                if isinstance(msg, Bye):
                    return
                self._inbox.put(msg)
        except BaseException as exc:  # handed to the stage loop, which raises it
            self._inbox.put(PeerLost(peer, f"gloo receive failed: {str(exc).splitlines()[0]}"))

    def send(self, dst: int, msg: StageMessage) -> None:
        data = encode(msg)
        hdr = torch.tensor([len(data)], dtype=torch.int64)
        payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        try:
            while len(self._sends) >= self.MAX_OPEN_SENDS:
                old = self._sends.popleft()
                old[0].wait()
                old[1].wait()
            w_hdr = self.dist.isend(hdr, dst, tag=self.HEADER_TAG)
            w_data = self.dist.isend(payload, dst, tag=self.PAYLOAD_TAG)
        except RuntimeError as err:
            raise PeerLost(dst, f"gloo send failed: {str(err).splitlines()[0]}") from None
        self._sends.append((w_hdr, w_data, hdr, payload))

    def poll(self) -> bool:
        return not self._inbox.empty()

    def recv(self, timeout: float | None) -> StageMessage | None:
        try:
            if timeout is not None and timeout <= 0:
                item = self._inbox.get_nowait()
            else:
                item = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self, timeout: float = 2.0) -> None:
        """Tell every peer's receiver thread to stop, wait for ours and for pending sends, then
        destroy the process group (no receive is still blocked in it)."""
        for peer in self._threads:
            self.send(peer, Bye())
        for t in self._threads.values():
            t.join(timeout)
        while self._sends:
            old = self._sends.popleft()
            old[0].wait()
            old[1].wait()
        self.dist.destroy_process_group()


#: Every transport between stage processes, by the name ``--transport`` takes.
TRANSPORTS: dict[str, type[ProcessTransport]] = {
    cls.name: cls for cls in (PipeTransport, GlooTransport)
}
