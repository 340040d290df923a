"""Transports between PPSD stages, all behind the ``Transport`` protocol of decoders.ppsd.

- ``LocalTransport``: in-process inboxes (sequential backend).
- ``PipeTransport``: one OS pipe per pair of stages that talk; messages are pickled headers with
  raw tensor bytes (never torch's shared-memory pickling, which costs ~1 ms per hand-off).
- ``GlooTransport``: torch.distributed point-to-point over gloo (TCP): a fixed-size header from
  any source, then the payload from that source. The same calls run over NCCL on GPUs only once
  any-source receives are replaced by posted per-peer receives (not done yet).
"""

from __future__ import annotations

import contextlib
import pickle
from collections import deque
from multiprocessing.connection import Connection, wait
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
    """Duplex pipes to the peers this stage talks to (``peers[rank] = Connection``)."""

    def __init__(self, me: int, peers: dict[int, Connection], device: str = "cpu") -> None:
        self.me, self.peers, self.device = me, peers, device
        self._conns = list(peers.values())

    def send(self, dst: int, msg: Msg) -> None:
        self.peers[dst].send_bytes(encode(msg))

    def recv(self, timeout: float | None) -> Msg | None:
        ready = wait(self._conns, timeout)
        if not ready:
            return None
        return decode(ready[0].recv_bytes(), self.device)  # EOFError if the peer died

    def poll(self) -> bool:
        return any(c.poll() for c in self._conns)


class GlooTransport:
    """torch.distributed point-to-point (gloo): header [nbytes] from any rank, then payload."""

    HEADER_TAG, PAYLOAD_TAG = 1, 2

    def __init__(self, me: int, device: str = "cpu") -> None:
        import torch.distributed as dist

        self.dist, self.me, self.device = dist, me, device
        self._hdr = torch.zeros(1, dtype=torch.int64)
        self._work = None
        self._sends: list[tuple[Any, torch.Tensor]] = []

    def send(self, dst: int, msg: Msg) -> None:
        # Non-blocking: two stages sending to each other at once would otherwise deadlock
        # (a gloo send waits for the matching receive, posted only after the header).
        data = encode(msg)
        hdr = torch.tensor([len(data)], dtype=torch.int64)
        payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        self._sends = [w for w in self._sends if not w[0].is_completed()]
        self._sends.append((self.dist.isend(hdr, dst, tag=self.HEADER_TAG), hdr))
        self._sends.append((self.dist.isend(payload, dst, tag=self.PAYLOAD_TAG), payload))

    def _source(self) -> int:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return int(self._work.source_rank())

    def _post(self) -> None:
        if self._work is None:
            self._work = self.dist.irecv(self._hdr, tag=self.HEADER_TAG)

    def poll(self) -> bool:
        self._post()
        return bool(self._work.is_completed())

    def recv(self, timeout: float | None) -> Msg | None:
        import datetime
        import time

        self._post()
        deadline = None if timeout is None else time.perf_counter() + timeout
        while not self._work.is_completed():
            if deadline is not None and time.perf_counter() >= deadline:
                return None
            if timeout is None or timeout > 0.01:
                with contextlib.suppress(RuntimeError):  # a wait timeout: check deadline
                    self._work.wait(datetime.timedelta(milliseconds=10))
        src = self._source()
        n = int(self._hdr.item())
        self._work = None
        buf = torch.empty(n, dtype=torch.uint8)
        self.dist.recv(buf, src, tag=self.PAYLOAD_TAG)
        return decode(buf.numpy().tobytes(), self.device)
