"""Drive a decoder-only model layer by layer with the library's own layers and KV cache.

Where a model keeps its embedding, position encodings, layers, final norm and head, and how it
calls a layer, is learnt from the model itself (``ppsd_real.arch.observe``: one watched forward
pass), then checked end to end against the model's own forward (``ppsd_real.arch.probe``), so
an architecture is either reproduced exactly or refused before any work. The cache is the
library's ``DynamicCache`` made croppable for sliding-window and linear-attention layers
(``ppsd_real.arch.cache``). Attention itself is always the library's.

One contract callers rely on: ``embed(ids)`` returns the token embeddings; learned absolute
position embeddings (GPT-2, OPT) are added by ``run_layers`` when it starts at layer 0, where it
knows the positions. So every call site keeps ``run_layers(embed(ids), 0, …, pos0)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ppsd_real.arch import observe as obs
from ppsd_real.arch.cache import FULL, LINEAR, ROLLBACK, DriverCache
from ppsd_real.arch.support import text_config
from ppsd_sim.errors import ConfigError

#: Submodules of a decoder layer before which a stage checks for a rejection (Llama naming;
#: other layers poll before each of their direct children with weights).
POLL_POINTS = ("self_attn.o_proj", "mlp", "mlp.down_proj")


def _has(module: nn.Module, name: str) -> bool:
    try:
        module.get_submodule(name)
    except AttributeError:
        return False
    return True


class _Abandon(Exception):
    """Raised by the mid-layer poll hook to leave a layer whose work became useless."""


class TokenEmbedding(nn.Module):
    """Token ids → the first layer's input, except learned absolute positions: the model's input
    embedding, the modules its forward applies next (e.g. OPT's ``project_in``) and a constant
    factor (e.g. Granite's embedding multiplier)."""

    def __init__(self, embed: nn.Module, pre: list[nn.Module], scale: float | None) -> None:
        super().__init__()
        self.embed = embed
        self.pre = nn.ModuleList(pre)
        self.scale = scale

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        for m in self.pre:
            h = m(h)
        return h if self.scale is None else h * self.scale


class FinalNorm(nn.Module):
    """Last layer's output → the LM head's input: the final norm, any output projection (OPT's
    ``project_out``) and a constant factor. Early-exit heads act on its output too."""

    def __init__(self, post: list[nn.Module], scale: float | None) -> None:
        super().__init__()
        self.post = nn.ModuleList(post)
        self.scale = scale

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for m in self.post:
            h = m(h)
        return h if self.scale is None else h * self.scale


@dataclass
class Positions:
    """Position encodings: rotary modules replayed per call (one per layer type where the
    model has several), and a learned absolute table (``table[pos + offset]``) or None."""

    ropes: list[obs.RopeCall]
    table: torch.Tensor | None = None
    offset: int = 0

    def rope(self, j: int, hidden: torch.Tensor, pos: torch.Tensor) -> Any:
        call = self.ropes[j]
        args = [self._fill(a, hidden, pos) for a in call.args]
        kwargs = {k: self._fill(v, hidden, pos) for k, v in call.kwargs.items()}
        return call.module(*args, **kwargs)

    @staticmethod
    def _fill(x: Any, hidden: torch.Tensor, pos: torch.Tensor) -> Any:
        if isinstance(x, obs.Slot):
            return hidden if x.kind == obs.HIDDEN else pos[0].expand(*x.lead, pos.shape[-1])
        return x

    def absolute(self, pos: torch.Tensor) -> torch.Tensor | None:
        if self.table is None:
            return None
        return self.table[pos + self.offset]


@dataclass
class ModelParts:
    """The pieces of a decoder-only causal LM that the runner calls itself. ``embed`` and
    ``layers`` entries may be None in a stage process that does not hold them."""

    embed: nn.Module | None
    layers: list[nn.Module | None]
    norm: nn.Module
    lm_head: nn.Module
    rotary: Positions
    config: Any
    templates: list[dict[str, tuple]] = field(default_factory=list)
    model_type: str = ""
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, model: nn.Module, verify: bool = True) -> ModelParts:
        """The parts of ``model`` found by watching its forward; with ``verify`` (default) the
        layer-by-layer path is checked against the model's own forward first."""
        from ppsd_real.arch import probe

        try:
            st = obs.observe(model)
            parts = cls(
                embed=TokenEmbedding(st.token_embedding, st.pre, st.embed_scale),
                layers=list(st.layers),
                norm=FinalNorm(st.post, st.feature_scale),
                lm_head=st.lm_head,
                rotary=Positions(st.ropes, st.position_table, st.position_offset),
                config=text_config(model.config),
                templates=st.templates,
                model_type=st.model_type,
                notes=st.notes,
            )
            if verify:
                probe.verify(parts, model)
        except ConfigError:
            raise
        except Exception as err:  # the layers cannot be called the way the model calls them
            first = (str(err).splitlines() or [""])[0][:200]
            raise ConfigError(
                "model",
                f"{obs.model_type_of(model)}: its layers cannot be driven one at a time "
                f"({type(err).__name__}: {first}); unsupported",
            ) from None
        return parts


#: one layer's call, split once: its constant arguments, and (name, kind, detail) of those
#: made per step (``arch.observe``'s producers)
LayerCall = tuple[dict[str, Any], list[tuple[str, str, Any]]]


def split_calls(templates: list[dict[str, tuple]]) -> list[LayerCall]:
    """Each layer's observed call template (``ModelParts.templates``) split for replay."""
    return [
        (
            {k: d for k, (kind, d) in tpl.items() if kind == obs.CONST},
            [(k, kind, d) for k, (kind, d) in tpl.items() if kind != obs.CONST],
        )
        for tpl in templates
    ]


def call_arguments(
    call: LayerCall, i: int, hidden: torch.Tensor, cache: Any, step: Any, pos0: Any
) -> dict[str, Any]:
    """Layer ``i``'s keyword arguments for one step: the hidden state and cache as given, the
    mask, positions and rotary encodings from ``step`` (``mask(cache, i, n, pos0)``,
    ``positions(lead)``, ``rope(j)``: the batch-1 ``_Step`` here, a batched one in
    ``ppsd_real.batched.driver``)."""
    consts, dynamic = call
    kwargs = dict(consts)
    for name, kind, detail in dynamic:
        if kind == obs.HIDDEN:
            kwargs[name] = hidden
        elif kind == obs.CACHE:
            kwargs[name] = cache
        elif kind == obs.MASK:
            kwargs[name] = step.mask(cache, i, int(hidden.shape[1]), pos0)
        elif kind == obs.POS:
            kwargs[name] = step.positions(detail)
        else:
            kwargs[name] = step.rope(detail)
    return kwargs


class _Step:
    """What one ``run_layers`` call computes once and shares between its layers."""

    def __init__(self, driver: LayerDriver, hidden: torch.Tensor, pos: torch.Tensor) -> None:
        self.d, self.hidden, self.pos = driver, hidden, pos
        self.ropes: dict[int, Any] = {}
        self.masks: dict[tuple, torch.Tensor | None] = {}
        self.pos_as: dict[tuple[int, ...], torch.Tensor] = {}

    def positions(self, lead: tuple[int, ...]) -> torch.Tensor:
        """The positions broadcast to ``lead + (n,)`` (what a layer was seen to take)."""
        if lead not in self.pos_as:
            self.pos_as[lead] = self.pos[0].expand(*lead, self.pos.shape[-1])
        return self.pos_as[lead]

    def rope(self, j: int) -> Any:
        if j not in self.ropes:
            self.ropes[j] = self.d.parts.rotary.rope(j, self.hidden, self.pos)
        return self.ropes[j]

    def mask(self, cache: DriverCache, i: int, n: int, pos0: int) -> torch.Tensor | None:
        """Additive mask for ``n`` new tokens at ``pos0`` against what layer ``i`` attends to
        (None for one token: it may see every key the layer returns, and the attention
        backends' implicit causal flag would be misaligned for a multi-token step over a
        non-empty cache; None for linear-attention layers)."""
        if n == 1:
            return None
        kind = cache.kinds[i] if i < len(cache.kinds) else FULL
        if kind == LINEAR:
            return None
        layer = cache.layers[i] if i < len(cache.layers) else None
        kv_len, kv_off = layer.get_mask_sizes(n) if layer is not None else (pos0 + n, 0)
        window = (
            getattr(layer, "sliding_window", None) if getattr(layer, "is_sliding", False) else None
        )
        key = (kv_len, kv_off, window)
        if key not in self.masks:
            dev = self.d.device
            q = torch.arange(pos0, pos0 + n, device=dev)[:, None]
            k = torch.arange(kv_off, kv_off + kv_len, device=dev)[None, :]
            banned = k > q
            if window is not None:
                banned |= q - k >= window
            mask = torch.zeros(n, kv_len, dtype=self.d.dtype, device=dev)
            mask.masked_fill_(banned, self.d._min)
            self.masks[key] = mask[None, None]
        return self.masks[key]


class LayerDriver:
    """Runs embeddings → layers[a:b] → heads for one sequence (batch 1) on a ``DriverCache``.

    Every layer's cache may hold a different length (early layers run ahead while drafting);
    the caller passes the absolute position of the first new token, and a layer whose cache is
    longer than that is cropped first (those entries belonged to a flushed branch). A crop may
    remove at most ``rollback`` tokens (sliding-window and recurrent layers keep that much).
    """

    def __init__(
        self, parts: ModelParts, held: range | None = None, rollback: int = ROLLBACK
    ) -> None:
        self.parts = parts
        self.n_layers = len(parts.layers)
        self.held = held if held is not None else range(self.n_layers)
        self.rollback = rollback
        first = next(iter(parts.lm_head.parameters()))
        self.device = first.device
        self.dtype = first.dtype
        self._min = torch.finfo(self.dtype).min
        # Mid-layer polls (before each held layer's attention output projection, MLP and MLP
        # down projection): a stage notices a rejection within a fraction of a layer instead
        # of up to a whole one (~1 ms here). The hooks read this driver's current poll (None
        # outside run_layers); they are registered on the first polled run.
        self._poll = None
        self._hooked = False
        self._calls = split_calls(parts.templates)

    def _hook_polls(self) -> None:
        self._hooked = True
        for i in self.held:
            layer = self.parts.layers[i]
            if layer is None:
                continue
            names = [n for n in POLL_POINTS if _has(layer, n)]
            if not names:  # other naming: before each direct child with weights but the first
                kids = [n for n, c in layer.named_children() if any(True for _ in c.parameters())]
                names = kids[1:]
            for name in names:
                layer.get_submodule(name).register_forward_pre_hook(self._mid_layer_poll)

    def sync(self) -> None:
        """Wait for this driver's device (see ppsd_real.device); free on the CPU."""
        if self.device.type != "cpu":
            torch.cuda.synchronize(self.device)

    def _mid_layer_poll(self, module: nn.Module, args: object) -> None:
        if self._poll is not None and self._poll():
            raise _Abandon

    # ---- cache -----------------------------------------------------------------------------
    def new_cache(self) -> DriverCache:
        """An empty cache shaped for this model's layer types."""
        return DriverCache(self.parts.config, self.rollback)

    @staticmethod
    def cache_len(cache: Any, layer: int) -> int:
        """Tokens cached for one layer (0 if the layer has never run)."""
        if isinstance(cache, DriverCache):
            return cache.length(layer)
        if layer >= len(cache.layers):
            return 0
        return int(cache.layers[layer].get_seq_length())

    def crop(self, cache: DriverCache, start: int, stop: int, length: int) -> int:
        """Cut layers[start:stop] back to at most ``length`` tokens; returns tokens removed."""
        removed = 0

        def rerun(i: int, inputs: torch.Tensor, pos0: int) -> None:
            # Rebuild layer i's recurrent state over stored inputs (a crop into a multi-token
            # step); the outputs were already used and are dropped.
            pos = torch.arange(pos0, pos0 + inputs.shape[1], device=self.device)[None, :]
            with torch.inference_mode():
                self._layer(i, inputs, _Step(self, inputs, pos), pos0, cache)

        for i in range(start, stop):
            removed += cache.crop_layer(i, length, rerun)
        return removed

    # ---- compute ---------------------------------------------------------------------------
    @torch.inference_mode()
    def embed(self, token_ids: list[int]) -> torch.Tensor:
        """Token embeddings of ``token_ids`` (absolute positions are added by ``run_layers``)."""
        ids = torch.tensor([token_ids], dtype=torch.long, device=self.device)
        return self.parts.embed(ids)

    def _layer(
        self, i: int, hidden: torch.Tensor, step: _Step, pos0: int, cache: Any
    ) -> torch.Tensor:
        n = hidden.shape[1]
        kwargs = call_arguments(self._calls[i], i, hidden, cache, step, pos0)
        cache.before(i, pos0, hidden)
        try:
            out = self.parts.layers[i](**kwargs)
        except _Abandon:
            cache.abandon(i, pos0)
            raise
        cache.after(i, pos0, n)
        return out[0] if isinstance(out, tuple) else out

    @torch.inference_mode()
    def run_layers(
        self, hidden: torch.Tensor, start: int, stop: int, cache, pos0: int, poll=None
    ) -> torch.Tensor | None:
        """Run layers[start:stop] on ``hidden`` (1, n, d) at positions pos0.. and cache their KV.

        ``poll()`` is called between layers; if it returns True the work is abandoned and None
        is returned (a rejection made it useless). Layers already run keep their new entries,
        to be cropped by the caller. Starting at layer 0, ``hidden`` is ``embed``'s output.
        """
        n = hidden.shape[1]
        self.crop(cache, start, stop, pos0)
        pos = torch.arange(pos0, pos0 + n, device=self.device)[None, :]
        if start == 0:
            absolute = self.parts.rotary.absolute(pos)
            if absolute is not None:
                hidden = hidden + absolute.to(hidden.dtype)
        step = _Step(self, hidden, pos)
        if poll is not None and not self._hooked:
            self._hook_polls()
        self._poll = poll
        try:
            for i in range(start, stop):
                if poll is not None and i > start and poll():
                    return None
                hidden = self._layer(i, hidden, step, pos0, cache)
        except _Abandon:
            return None  # this layer's attention already cached its entry: cropped later
        finally:
            self._poll = None
        return hidden

    @torch.inference_mode()
    def draft_token(
        self, hidden: torch.Tensor, head: nn.Module | None, poll, chunks: int = 4
    ) -> int | None:
        """Greedy draft from the last position, the head's vocabulary rows in ``chunks`` with
        ``poll()`` between them; None if it returns True. Why: a verdict tends to arrive while
        the exit stage runs its head (~0.7 ms here, as long as a layer) and a rejection should
        not wait for it. Drafts are proposals only, so this never affects losslessness."""
        mod = head or self.parts.lm_head
        w, b = mod.weight, getattr(mod, "bias", None)
        h = self.parts.norm(hidden[:, -1:])[0, 0]
        best, best_i = None, 0
        step = -(-w.shape[0] // chunks)
        for a in range(0, w.shape[0], step):
            if a and poll():
                return None
            logits = torch.mv(w[a : a + step], h)
            if b is not None:
                logits = logits + b[a : a + step]
            v, i = logits.max(0)
            if best is None or v > best:
                best, best_i = v, a + int(i)
        return best_i

    @torch.inference_mode()
    def draft_logits(
        self, hidden: torch.Tensor, head: nn.Module | None, poll, chunks: int = 4
    ) -> torch.Tensor | None:
        """``draft_token``'s sampling twin: the head's logits at the last position (a vector),
        computed in the same ``chunks`` with ``poll()`` between them; None if it returns True."""
        mod = head or self.parts.lm_head
        w, b = mod.weight, getattr(mod, "bias", None)
        h = self.parts.norm(hidden[:, -1:])[0, 0]
        step = -(-w.shape[0] // chunks)
        parts = []
        for a in range(0, w.shape[0], step):
            if a and poll():
                return None
            parts.append(torch.mv(w[a : a + step], h))
        logits = torch.cat(parts)
        return logits if b is None else logits + b

    @torch.inference_mode()
    def features(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the LM head (and an early-exit head) reads: the final norm of ``hidden``."""
        return self.parts.norm(hidden)

    @torch.inference_mode()
    def head(self, hidden: torch.Tensor, head: nn.Module | None = None) -> torch.Tensor:
        """Greedy tokens from final norm + LM head (or a separate head) at every position."""
        return self.logits(hidden, head).argmax(-1)

    @torch.inference_mode()
    def logits(self, hidden: torch.Tensor, head: nn.Module | None = None) -> torch.Tensor:
        """Final norm + LM head (or a separate head): logits (positions, vocab), what ``head``
        takes the argmax of and sampling warps."""
        return (head or self.parts.lm_head)(self.parts.norm(hidden))[0]
