"""Learn how a decoder-only model calls its own parts by watching one forward pass.

Models keep their embedding, position encodings, layers, final norm and head under many names
(``embed_tokens``/``wte``/``embed_in``, ``norm``/``ln_f``/``final_layer_norm``, a rotary module
per layer type, learned absolute positions with an index offset, input/output projections, a
constant multiplier on the embeddings). Rather than a list of attribute names, ``observe`` runs
the model's own ``forward`` once on a few tokens with hooks on the decoder's direct children,
its layers and the LM head, and reads off the structure:

- the layers: the ``ModuleList`` of ``num_hidden_layers`` blocks under the decoder;
- the prologue: modules called before the first layer (the token embedding, position tables,
  projections; dropout is skipped), and a constant factor between their composition and what
  the first layer really received;
- the position encodings each layer received (matched by object identity to the rotary
  modules' outputs, so a rotary embedding per layer type is replayed per layer);
- how each layer is called: which argument is the hidden state, the cache, the mask, the
  positions (anything else it received must be a constant, or the architecture is refused);
- the epilogue: modules between the last layer and the LM head (final norm, output projection)
  and a constant factor before the head.

Everything learnt is checked end to end by ``ppsd_real.arch.probe`` before a run.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ppsd_real.arch.support import text_config
from ppsd_sim.errors import ConfigError

#: how a layer argument is produced at run time
HIDDEN, CACHE, MASK, POS, ROPE, CONST = ("hidden", "cache", "mask", "pos", "rope", "const")


@dataclass(frozen=True)
class Slot:
    """A placeholder in a replayed call: the hidden state, or the positions broadcast to
    ``lead + (n,)`` (``(1,)``: the usual (batch, n) ids; ``(3, 1)``: multimodal rotary ids)."""

    kind: str
    lead: tuple[int, ...] = ()


def pos_lead(x: Any, pos: torch.Tensor) -> tuple[int, ...] | None:
    """The leading shape if ``x`` is the positions ``pos`` (1, n) broadcast to ``lead + (n,)``."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.long or x.ndim < 1:
        return None
    n = pos.shape[-1]
    if x.shape[-1] != n:
        return None
    if not bool((x.reshape(-1, n) == pos.reshape(1, n)).all()):
        return None
    return tuple(x.shape[:-1])


@dataclass
class Call:
    """One observed module call, in the order the model made it."""

    name: str
    module: nn.Module
    args: tuple
    kwargs: dict
    output: Any


@dataclass
class RopeCall:
    """A position-encoding module call to replay with new positions (per layer type, etc.)."""

    module: nn.Module
    args: tuple  # with Slot placeholders for the hidden state and the positions
    kwargs: dict


@dataclass
class Structure:
    """What ``observe`` learnt; turned into runnable parts by ``ppsd_real.layers.ModelParts``."""

    model_type: str
    decoder: nn.Module
    layers: list[nn.Module]
    token_embedding: nn.Module
    pre: list[nn.Module]  # hidden-path modules after the token embedding, before positions
    position_table: torch.Tensor | None  # learned absolute positions (rows), or None
    position_offset: int
    embed_scale: float | None
    ropes: list[RopeCall]
    templates: list[dict[str, tuple]]  # per layer: parameter -> (producer, detail)
    post: list[nn.Module]  # final norm, output projection
    feature_scale: float | None
    lm_head: nn.Module
    notes: list[str] = field(default_factory=list)


def find_layers(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """The decoder module and its list of ``num_hidden_layers`` blocks (the one holding the
    most parameters, so a vision tower's list of equal length is not taken)."""
    cfg = text_config(model.config)
    n = getattr(cfg, "num_hidden_layers", None)
    best: tuple[int, nn.Module, nn.ModuleList] | None = None
    for parent in model.modules():
        for child in parent.children():
            if isinstance(child, nn.ModuleList) and len(child) > 0 and len(child) == n:
                size = sum(p.numel() for p in child.parameters())
                if best is None or size > best[0]:
                    best = (size, parent, child)
    if best is None:
        raise ConfigError(
            "model",
            f"{model_type_of(model)}: no list of {n} decoder layers found "
            "(not a decoder-only transformer the runner can drive layer by layer)",
        )
    return best[1], best[2]


def model_type_of(model: nn.Module) -> str:
    return str(getattr(model.config, "model_type", type(model).__name__))


def _is(a: Any, b: Any) -> bool:
    return a is b


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, tuple | list):
        return [t for t in x if isinstance(t, torch.Tensor)]
    return []


def _record(model: nn.Module, decoder: nn.Module, layers: nn.ModuleList, lm_head: nn.Module):
    """Run the model's forward on a few tokens, recording calls in order."""
    from transformers import DynamicCache

    calls: list[Call] = []

    def hook(name: str):
        def fn(mod: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            calls.append(Call(name, mod, args, dict(kwargs), out))

        return fn

    handles = []
    for name, child in decoder.named_children():
        if child is not layers:
            handles.append(child.register_forward_hook(hook(name), with_kwargs=True))
    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(hook(f"layers.{i}"), with_kwargs=True))
    handles.append(lm_head.register_forward_hook(hook("lm_head"), with_kwargs=True))
    vocab = int(lm_head.weight.shape[0])
    n = 6
    ids = (torch.arange(n) * 7 + 3) % max(vocab - 1, 1) + 1
    ids = ids[None].to(lm_head.weight.device)
    pos = torch.arange(n, device=ids.device)[None]
    cache = DynamicCache(config=model.config)
    params = inspect.signature(model.forward).parameters
    kw: dict[str, Any] = {"input_ids": ids, "use_cache": True}
    if "position_ids" in params:
        kw["position_ids"] = pos
    kw["cache" if "cache" in params else "past_key_values"] = cache
    try:
        with torch.inference_mode():
            model(**kw)
    finally:
        for h in handles:
            h.remove()
    return calls, ids, pos, cache


def _bind(layer: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments by parameter name (``**kwargs`` flattened)."""
    sig = inspect.signature(layer.forward)
    bound = sig.bind(*args, **kwargs)
    out: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif sig.parameters[name].kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise ConfigError("model", f"{type(layer).__name__} takes positional *args")
        else:
            out[name] = value
    return out


def _placeholders(x: Any, hidden: Any, pos: torch.Tensor) -> Any:
    if x is hidden:
        return Slot(HIDDEN)
    lead = pos_lead(x, pos)
    if lead is not None:
        return Slot(POS, lead)
    return x


def _scale(ref: torch.Tensor, got: torch.Tensor) -> float | None:
    """1.0-free factor c with c·got ≈ ref (None when they are already equal); raises
    ValueError when no single factor explains the difference."""
    ref, got = ref.detach().float(), got.detach().float()
    tol = 1e-4 * max(1.0, float(ref.abs().max()))
    if ref.shape == got.shape and float((ref - got).abs().max()) <= tol:
        return None
    if ref.shape != got.shape:
        raise ValueError("shape")
    denom = float((got * got).sum())
    if denom == 0.0:
        raise ValueError("zero")
    c = float((ref * got).sum()) / denom
    if float((ref - c * got).abs().max()) > tol * max(1.0, abs(c)):
        raise ValueError("not a constant factor")
    return c


def observe(model: nn.Module) -> Structure:
    """The structure of ``model`` (see the module docstring); ConfigError if it cannot be
    reproduced layer by layer, naming the architecture and the reason."""
    arch = model_type_of(model)
    decoder, layers = find_layers(model)
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if lm_head is None or not isinstance(getattr(lm_head, "weight", None), torch.Tensor):
        raise ConfigError("model", f"{arch}: no output embedding (LM head) found")
    token_embedding = model.get_input_embeddings()
    calls, _ids, pos, cache = _record(model, decoder, layers, lm_head)
    layer_calls = {c.name: c for c in calls if c.name.startswith("layers.")}
    if len(layer_calls) != len(layers):
        raise ConfigError(
            "model",
            f"{arch}: its forward ran {len(layer_calls)} of {len(layers)} layers "
            "(layers skipped or shared: not driven layer by layer)",
        )
    first = next(i for i, c in enumerate(calls) if c.name.startswith("layers."))
    last = max(i for i, c in enumerate(calls) if c.name.startswith("layers."))
    prologue, epilogue = calls[:first], [c for c in calls[last + 1 :] if c.name != "lm_head"]
    head_call = next((c for c in calls if c.name == "lm_head"), None)
    if head_call is None:
        raise ConfigError("model", f"{arch}: its forward never called the LM head")

    # --- position encodings the layers receive (rotary per layer type, ...) -------------------
    ropes: list[RopeCall] = []
    rope_of: dict[int, int] = {}  # id(output tensor) -> index into ropes
    hidden0 = _bind(layers[0], layer_calls["layers.0"].args, layer_calls["layers.0"].kwargs)
    first_param = next(iter(inspect.signature(layers[0].forward).parameters))
    x0 = hidden0[first_param]
    received = {  # tensors some layer receives as they are (a rotary output, not the hidden)
        id(t)
        for lc in layer_calls.values()
        for v in _bind(lc.module, lc.args, lc.kwargs).values()
        if v is not x0
        for t in _tensors(v)
    }
    for c in prologue:
        outs = _tensors(c.output)
        pair = isinstance(c.output, tuple) and len(outs) >= 2  # (cos, sin)
        takes_pos = any(pos_lead(a, pos) is not None for a in (*c.args, *c.kwargs.values()))
        fed = bool(outs) and all(id(t) in received for t in outs)  # e.g. complex frequencies
        if c.module is not token_embedding and (pair or (fed and takes_pos)):
            args = tuple(_placeholders(a, x0, pos) for a in c.args)
            kwargs = {k: _placeholders(v, x0, pos) for k, v in c.kwargs.items()}
            # the rotary module's own input may be the hidden state or any tensor of its dtype
            args = tuple(
                Slot(HIDDEN) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                for a in args
            )
            ropes.append(RopeCall(c.module, args, kwargs))
            for t in outs:
                rope_of[id(t)] = len(ropes) - 1

    # --- how each layer is called -------------------------------------------------------------
    templates: list[dict[str, tuple]] = []
    for i, layer in enumerate(layers):
        c = layer_calls[f"layers.{i}"]
        bound = _bind(layer, c.args, c.kwargs)
        hidden_name = next(iter(inspect.signature(layer.forward).parameters))
        tpl: dict[str, tuple] = {}
        for name, value in bound.items():
            if name == hidden_name:
                tpl[name] = (HIDDEN, None)
            elif value is cache:
                tpl[name] = (CACHE, None)
            elif name == "attention_mask":
                tpl[name] = (MASK, None)
            elif pos_lead(value, pos) is not None:
                tpl[name] = (POS, pos_lead(value, pos))
            elif _tensors(value) and all(id(t) in rope_of for t in _tensors(value)):
                idx = {rope_of[id(t)] for t in _tensors(value)}
                if len(idx) != 1:
                    raise ConfigError("model", f"{arch}: layer {i} mixes position encodings")
                tpl[name] = (ROPE, idx.pop())
            elif value is None or isinstance(value, bool | int | float | str):
                tpl[name] = (CONST, value)
            else:
                raise ConfigError(
                    "model",
                    f"{arch}: layer {i} receives {name!r} ({type(value).__name__}) computed in "
                    "the model's forward, which the runner does not reproduce",
                )
        templates.append(tpl)

    # --- prologue: token embedding, hidden-path modules, absolute positions ----------------------
    tok = next((c for c in prologue if c.module is token_embedding), None)
    if tok is None:
        raise ConfigError("model", f"{arch}: its forward did not call the input embedding")
    notes: list[str] = []
    pre: list[nn.Module] = []
    table, offset = None, 0
    h = tok.output
    for c in prologue:
        if c is tok or c.module in (r.module for r in ropes) or isinstance(c.module, nn.Dropout):
            continue
        if any(_same_obj_or_equal(a, pos) for a in (*c.args, *c.kwargs.values())) and isinstance(
            c.output, torch.Tensor
        ):
            weight = getattr(c.module, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
                raise ConfigError("model", f"{arch}: position module {c.name!r} is not a table")
            offset = _table_offset(weight, c.output[0], pos[0])
            if offset is None:
                raise ConfigError(
                    "model", f"{arch}: position module {c.name!r} is not a lookup by position"
                )
            table = weight
            continue
        first_in = c.args[0] if c.args else next(iter(c.kwargs.values()), None)
        if first_in is h and isinstance(c.output, torch.Tensor):
            pre.append(c.module)
            h = c.output
            continue
        if isinstance(c.output, torch.Tensor) and c.output.shape == x0.shape:
            raise ConfigError(
                "model",
                f"{arch}: {c.name!r} transforms the embeddings after positions are added "
                "(not supported)",
            )
    composed = h if table is None else h + table[pos[0] + offset][None].to(h.dtype)
    try:
        embed_scale = _scale(x0, composed)
    except ValueError:
        raise ConfigError(
            "model",
            f"{arch}: the first layer's input is not the embeddings the runner composes "
            "(an unsupported prologue)",
        ) from None
    if embed_scale is not None:
        notes.append(f"embeddings × {embed_scale:g}")

    # --- epilogue: final norm, output projection, factor before the head ------------------------
    out_last = layer_calls[f"layers.{len(layers) - 1}"].output
    hl = out_last[0] if isinstance(out_last, tuple) else out_last
    post: list[nn.Module] = []
    for c in epilogue:
        first_in = c.args[0] if c.args else next(iter(c.kwargs.values()), None)
        if first_in is hl and isinstance(c.output, torch.Tensor):
            post.append(c.module)
            hl = c.output
    feat = head_call.args[0] if head_call.args else next(iter(head_call.kwargs.values()))
    try:
        feature_scale = _scale(feat, hl[:, -feat.shape[1] :] if feat.ndim == 3 else hl)
    except ValueError:
        raise ConfigError(
            "model",
            f"{arch}: the LM head's input is not the final norm of the last layer "
            "(an unsupported epilogue)",
        ) from None
    if feature_scale is not None:
        notes.append(f"features × {feature_scale:g} before the head")
    return Structure(
        arch,
        decoder,
        list(layers),
        token_embedding,
        pre,
        table,
        offset,
        embed_scale,
        ropes,
        templates,
        post,
        feature_scale,
        lm_head,
        notes,
    )


def _same_obj_or_equal(a: Any, pos: torch.Tensor) -> bool:
    return a is pos or pos_lead(a, pos) is not None


def _table_offset(weight: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor) -> int | None:
    """The index offset o with rows == weight[pos + o] (OPT-style tables start at 2)."""
    for o in range(0, 8):
        idx = pos + o
        if int(idx.max()) >= weight.shape[0]:
            break
        if torch.allclose(weight[idx].float(), rows.float(), atol=1e-6):
            return o
    return None
