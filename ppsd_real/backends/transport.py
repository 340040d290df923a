"""Transports between PPSD stages, all behind the ``Transport`` protocol of decoders.ppsd.

- ``LocalTransport``: in-process inboxes (sequential backend).
- ``PipeTransport``: one OS pipe per pair of stages that talk; messages are pickled headers with
  raw tensor bytes (never torch's shared-memory pickling, which costs ~1 ms per hand-off).
- ``GlooTransport``: torch.distributed point-to-point over gloo (TCP): per peer, a fixed-size
  header then the payload, received by one blocking thread per peer (see the class for why).
"""

from __future__ import annotations

import pickle
import queue
import select
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

import torch

Msg = tuple[Any, ...]


def encode(msg: Msg) -> bytes:
    """Tensors become (dtype, shape, raw bytes); everything else is pickled as is."""
    parts = []
    for x in msg:
        if isinstance(x, torch.Tensor):
            t = x.detach().to("cpu").contiguous()
            parts.append(
                (
                    "__t__",
                    str(t.dtype).removeprefix("torch."),
                    tuple(t.shape),
                    t.view(torch.uint8).numpy().tobytes(),
                )
            )
        else:
            parts.append(x)
    return pickle.dumps(tuple(parts), protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes, device: str = "cpu") -> Msg:
    out = []
    for x in pickle.loads(data):
        if isinstance(x, tuple) and len(x) == 4 and x[0] == "__t__":
            raw = torch.frombuffer(bytearray(x[3]), dtype=torch.uint8)
            out.append(raw.view(getattr(torch, x[1])).reshape(x[2]).to(device))
        else:
            out.append(x)
    return tuple(out)


class LocalTransport:
    """Inboxes in one process: ``inboxes[i]`` is stage i's queue."""

    def __init__(self, me: int, inboxes: list[deque]) -> None:
        self.me, self.inboxes = me, inboxes

    def send(self, dst: int, msg: Msg) -> None:
        self.inboxes[dst].append(msg)

    def recv(self, timeout: float | None) -> Msg | None:
        box = self.inboxes[self.me]
        return box.popleft() if box else None

    def poll(self) -> bool:
        return bool(self.inboxes[self.me])


class PipeTransport:
    """Duplex pipes to the peers this stage talks to (``peers[rank] = Connection``).

    ``spin_s``: a blocking receive first busy-polls for up to this long. Each stage owns a
    core, so spinning costs the pipeline nothing, while a receiver asleep in the kernel must be
    woken (on a VM an inter-processor interrupt, a VM exit) before it can run the next token.
    """

    def __init__(
        self, me: int, peers: dict[int, Connection], device: str = "cpu", spin_s: float = 0.0
    ) -> None:
        self.me, self.peers, self.device, self.spin_s = me, peers, device, spin_s
        # One registered poll object: Connection.poll()/wait() build a selector per call,
        # measured at ~25 µs per check inside a stage (4 checks per token between layers).
        self._by_fd = {c.fileno(): c for c in peers.values()}
        self._poller = select.poll()
        for fd in self._by_fd:
            self._poller.register(fd, select.POLLIN)

    def send(self, dst: int, msg: Msg) -> None:
        self.peers[dst].send_bytes(encode(msg))

    def _ready(self, timeout_ms: int) -> Connection | None:
        """A connection with data (or hung up: its recv raises EOFError), or None."""
        events = self._poller.poll(timeout_ms)
        return self._by_fd[events[0][0]] if events else None

    def recv(self, timeout: float | None) -> Msg | None:
        conn = self._ready(0)
        if conn is None and (timeout is None or timeout > 0):
            if self.spin_s > 0:
                end = time.perf_counter() + min(self.spin_s, timeout or self.spin_s)
                while conn is None and time.perf_counter() < end:
                    conn = self._ready(0)
            if conn is None:
                conn = self._ready(-1 if timeout is None else max(1, round(timeout * 1e3)))
        if conn is None:
            return None
        return decode(conn.recv_bytes(), self.device)  # EOFError if the peer died

    def poll(self) -> bool:
        return bool(self._poller.poll(0))


class GlooTransport:
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

    HEADER_TAG, PAYLOAD_TAG = 1, 2
    MAX_OPEN_SENDS = 64
    BYE: Msg = ("__bye__",)

    def __init__(self, me: int, peers: list[int], device: str = "cpu") -> None:
        import torch.distributed as dist

        self.dist, self.me, self.device = dist, me, device
        self._inbox: queue.SimpleQueue[Msg | BaseException] = queue.SimpleQueue()
        self._sends: deque[tuple[Any, Any, torch.Tensor, torch.Tensor]] = deque()
        self._threads = [
            threading.Thread(target=self._receive_from, args=(p,), daemon=True, name=f"rx{p}")
            for p in sorted(set(peers))
        ]
        for t in self._threads:
            t.start()

    def _receive_from(self, peer: int) -> None:
        """Receiver thread: header then payload from ``peer``, forever (until the peer goes)."""
        try:
            while True:
                hdr = torch.zeros(1, dtype=torch.int64)
                self.dist.recv(hdr, peer, tag=self.HEADER_TAG)
                buf = torch.empty(int(hdr.item()), dtype=torch.uint8)
                self.dist.recv(buf, peer, tag=self.PAYLOAD_TAG)
                msg = decode(buf.numpy().tobytes(), self.device)
                if msg == self.BYE:
                    return
                self._inbox.put(msg)
        except BaseException as exc:  # handed to the stage loop, which raises it
            self._inbox.put(ConnectionError(f"gloo receive from stage {peer} failed: {exc}"))

    def send(self, dst: int, msg: Msg) -> None:
        data = encode(msg)
        hdr = torch.tensor([len(data)], dtype=torch.int64)
        payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        while len(self._sends) >= self.MAX_OPEN_SENDS:
            old = self._sends.popleft()
            old[0].wait()
            old[1].wait()
        w_hdr = self.dist.isend(hdr, dst, tag=self.HEADER_TAG)
        w_data = self.dist.isend(payload, dst, tag=self.PAYLOAD_TAG)
        self._sends.append((w_hdr, w_data, hdr, payload))

    def poll(self) -> bool:
        return not self._inbox.empty()

    def recv(self, timeout: float | None) -> Msg | None:
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
        """Tell every peer's receiver thread to stop, wait for ours and for pending sends, so
        the process group can be destroyed without a receive still blocked in it."""
        for t in self._threads:
            self.send(int(t.name.removeprefix("rx")), self.BYE)
        for t in self._threads:
            t.join(timeout)
        while self._sends:
            old = self._sends.popleft()
            old[0].wait()
            old[1].wait()
