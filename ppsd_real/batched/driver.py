"""Run a batch of sequences through the library's own layers, each row at its own positions.

The batch-1 ``LayerDriver`` learnt how the model calls its layers (``parts.templates``: which
argument is the hidden state, the cache, the mask, the positions, the rotary encodings); this
driver makes the same calls with a batch dimension: per-row positions (B, n) for the rotary
modules and absolute tables, a ``RaggedCache`` (``batched.cache``) and an additive mask per
layer type that lets row b's query at position p see that row's slots <= p (and, for a sliding
layer, > p - window). The mask is always given, also for one new token, because rows differ
in length; it is the only thing besides the cache that batching changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ppsd_real.arch import observe as obs
from ppsd_real.arch.cache import FULL, SLIDING, DriverCache
from ppsd_real.batched.cache import RaggedCache
from ppsd_real.layers import LayerDriver
from ppsd_sim.errors import ConfigError


class BatchedDriver:
    """Embeddings → layers[a:b] → heads for B sequences at once on a ``RaggedCache``.

    Mirrors ``LayerDriver``'s calls (``embed``, ``run_layers``, ``head``, ``sync``) so the
    profiler's timing loops run on either; ``pos0`` is one position for every row or one per
    row. Refuses models whose layers keep recurrent state (they cannot be cropped per row
    here) or take no attention mask (padding could not be hidden from them).
    """

    def __init__(self, driver: LayerDriver) -> None:
        self.base = driver
        self.parts = driver.parts
        self.n_layers = driver.n_layers
        self.device, self.dtype = driver.device, driver.dtype
        self._min = torch.finfo(self.dtype).min
        probe = DriverCache(self.parts.config)
        arch = self.parts.model_type or "model"
        self.windows: list[int | None] = []
        for i in range(self.n_layers):
            kind = probe.kinds[i] if i < len(probe.kinds) else FULL
            if kind not in (FULL, SLIDING):
                raise ConfigError(
                    "model",
                    f"{arch}: layer {i} is a {kind} layer; batched runs support attention "
                    "layers only (full or sliding window)",
                )
            window = int(probe.layers[i].sliding_window) if kind == SLIDING else None
            self.windows.append(window)
        self._calls: list[tuple[dict[str, Any], list[tuple[str, str, Any]]]] = []
        for i, tpl in enumerate(self.parts.templates):
            kinds = {kind for kind, _ in tpl.values()}
            if obs.MASK not in kinds or obs.CACHE not in kinds:
                raise ConfigError(
                    "model",
                    f"{arch}: layer {i} takes no attention mask or cache argument; batched "
                    "runs need both (rows of different lengths)",
                )
            for name, (kind, detail) in tpl.items():
                if kind == obs.POS and (not detail or detail[-1] != 1):
                    raise ConfigError(
                        "model",
                        f"{arch}: layer {i} takes positions {name!r} without a batch axis; "
                        "batched runs need per-row positions",
                    )
            self._calls.append(
                (
                    {k: d for k, (kind, d) in tpl.items() if kind == obs.CONST},
                    [(k, kind, d) for k, (kind, d) in tpl.items() if kind != obs.CONST],
                )
            )

    # ---- cache ------------------------------------------------------------------------------
    def new_cache(self, rows: int) -> RaggedCache:
        """An empty cache for ``rows`` sequences."""
        return RaggedCache(self.n_layers, rows)

    def sync(self) -> None:
        """Wait for this driver's device (see ppsd_real.device); free on the CPU."""
        self.base.sync()

    # ---- compute ------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """Token embeddings (B, n, d) of B rows of n ids (absolute positions: ``run_layers``)."""
        ids = torch.tensor([list(r) for r in token_ids], dtype=torch.long, device=self.device)
        return self.parts.embed(ids)

    def _positions(self, x: Any, hidden: torch.Tensor, pos: torch.Tensor) -> Any:
        if isinstance(x, obs.Slot):
            if x.kind == obs.HIDDEN:
                return hidden
            return pos.expand(*x.lead[:-1], *pos.shape)
        return x

    def _mask(self, starts: torch.Tensor, n: int, span: int, window: int | None) -> torch.Tensor:
        q = starts[:, None] + torch.arange(n, device=self.device)[None, :]  # (B, n)
        k = torch.arange(span, device=self.device)[None, None, :]
        banned = k > q[:, :, None]
        if window is not None:
            banned |= q[:, :, None] - k >= window
        mask = torch.zeros(banned.shape, dtype=self.dtype, device=self.device)
        return mask.masked_fill_(banned, self._min)[:, None]

    @torch.inference_mode()
    def run_layers(
        self,
        hidden: torch.Tensor,
        start: int,
        stop: int,
        cache: RaggedCache,
        pos0: int | Sequence[int],
        valid: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Run layers[start:stop] on ``hidden`` (B, n, d), row b at positions
        ``pos0[b] ..``, and cache their KV in row b's own slots. ``valid[b]`` (a padded
        prefill): only row b's first ``valid[b]`` tokens are real; its cache keeps those."""
        rows, n = int(hidden.shape[0]), int(hidden.shape[1])
        starts = [int(pos0)] * rows if isinstance(pos0, int) else [int(p) for p in pos0]
        if len(starts) != rows or cache.rows != rows:
            raise RuntimeError(
                f"batched step: {rows} rows of hidden states, {len(starts)} positions, "
                f"{cache.rows} cache rows"
            )
        first = torch.tensor(starts, dtype=torch.long, device=self.device)
        pos = first[:, None] + torch.arange(n, device=self.device)[None, :]
        span = max(starts) + n
        if start == 0:
            absolute = self.parts.rotary.absolute(pos)
            if absolute is not None:
                hidden = hidden + absolute.to(hidden.dtype)
        ropes: dict[int, Any] = {}
        masks: dict[int | None, torch.Tensor] = {}
        ends = None if valid is None else [s + int(v) for s, v in zip(starts, valid, strict=True)]
        for i in range(start, stop):
            window = self.windows[i]
            if window not in masks:
                masks[window] = self._mask(first, n, span, window)
            consts, dynamic = self._calls[i]
            kwargs = dict(consts)
            for name, kind, detail in dynamic:
                if kind == obs.HIDDEN:
                    kwargs[name] = hidden
                elif kind == obs.CACHE:
                    kwargs[name] = cache
                elif kind == obs.MASK:
                    kwargs[name] = masks[window]
                elif kind == obs.POS:
                    kwargs[name] = pos.expand(*detail[:-1], rows, n)
                else:
                    if detail not in ropes:
                        call = self.parts.rotary.ropes[detail]
                        args = [self._positions(a, hidden, pos) for a in call.args]
                        kw = {k: self._positions(v, hidden, pos) for k, v in call.kwargs.items()}
                        ropes[detail] = call.module(*args, **kw)
                    kwargs[name] = ropes[detail]
            cache.layers[i].plan(starts, pos, span)
            out = self.parts.layers[i](**kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
            if ends is not None:
                cache.layers[i].lengths = list(ends)
        return hidden

    @torch.inference_mode()
    def head(self, hidden: torch.Tensor, head: nn.Module | None = None) -> torch.Tensor:
        """Greedy tokens (B, n) from final norm + LM head (or a separate early-exit head)."""
        return (head or self.parts.lm_head)(self.parts.norm(hidden)).argmax(-1)
