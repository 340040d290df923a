"""Check that the runner's layer-by-layer path reproduces the model's own forward.

Before any run, a few tokens go through both: the model's ``forward`` over the whole sequence
(what ``generate`` computes), and the driver's path as the decoders use it — a multi-token
prefill, single-token steps, a multi-token step cropped back into its middle and continued
(the EESD/PPSD rejection path, which exercises sliding-window and recurrent-state crops). The
LM head's input must agree at every position; otherwise the architecture is refused by name
(a structure the observation misread can never silently produce other tokens).
"""

from __future__ import annotations

from typing import Any

import torch

from ppsd_sim.errors import ConfigError

#: max |Δ| / max |reference| of the LM head's input allowed per dtype
TOLERANCE = {torch.float32: 2e-3, torch.float64: 1e-6, torch.bfloat16: 6e-2, torch.float16: 2e-2}


def reference_features(model: Any, parts: Any, ids: torch.Tensor) -> torch.Tensor:
    """The LM head's input at every position of ``ids`` in the model's own forward."""
    got: list[torch.Tensor] = []

    def grab(module: Any, args: tuple, kwargs: dict) -> None:
        got.append((args[0] if args else next(iter(kwargs.values()))).detach())

    handle = parts.lm_head.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.inference_mode():
            model(input_ids=ids, use_cache=False)
    finally:
        handle.remove()
    return got[-1][0]


def driver_features(parts: Any, ids: list[int]) -> dict[int, torch.Tensor]:
    """The same through ``LayerDriver`` the way the decoders drive it, by position."""
    from ppsd_real.layers import LayerDriver

    d = LayerDriver(parts)
    L = d.n_layers
    cache = d.new_cache()
    out: dict[int, torch.Tensor] = {}

    def run(a: int, b: int) -> None:
        h = d.run_layers(d.embed(ids[a:b]), 0, L, cache, a)
        f = d.features(h)[0]
        for j in range(b - a):
            out[a + j] = f[j]

    p = len(ids) - 5
    run(0, p)  # prefill
    run(p, p + 1)  # one token
    run(p + 1, p + 4)  # a 3-token step (a verification) ...
    d.crop(cache, 0, L, p + 2)  # ... cropped into its middle (a rejection)
    run(p + 2, p + 3)  # and continued one token at a time
    run(p + 3, p + 5)
    return out


def verify(parts: Any, model: Any, n: int = 12) -> None:
    """ConfigError naming the architecture if the two paths disagree."""
    vocab = int(parts.lm_head.weight.shape[0])
    ids = [1 + (i * 37 + 11) % max(vocab - 1, 1) for i in range(n)]
    device = parts.lm_head.weight.device
    ref = reference_features(model, parts, torch.tensor([ids], device=device))
    got = driver_features(parts, ids)
    dtype = ref.dtype
    scale = max(float(ref.float().abs().max()), 1e-6)
    worst, where = 0.0, -1
    for p, f in got.items():
        err = float((f.float() - ref[p].float()).abs().max()) / scale
        if err > worst:
            worst, where = err, p
    tol = TOLERANCE.get(dtype, 6e-2)
    if not worst <= tol:
        raise ConfigError(
            "model",
            f"{parts.model_type or 'this architecture'}: the runner's layer-by-layer path "
            f"differs from the model's own forward (relative error {worst:.2g} at position "
            f"{where}, allowed {tol:g}); not supported",
        )
