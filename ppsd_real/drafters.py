"""Drafters: what token the early-exit path proposes.

Both run the same real compute (layers[0:E] + an EE head); they differ only in the token they
propose. ``early-exit`` proposes the EE head's argmax. ``oracle(alpha)`` replays the AR reference
output and proposes a deliberately wrong token with probability 1 - alpha, so real compute runs
at a controlled acceptance rate. Either way the decoders stay lossless: every draft is verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppsd_sim.errors import ConfigError

DRAFTERS = ("early-exit", "oracle")


@dataclass(frozen=True)
class DrafterSpec:
    """``kind`` is 'early-exit' or 'oracle'; ``alpha`` and ``seed`` drive the oracle;
    ``head_path`` optionally names a trained EE head (a safetensors or torch file with a
    ``weight`` tensor of shape (vocab, hidden), applied after the final norm) used instead of
    the model's own LM head."""

    kind: str = "early-exit"
    alpha: float | None = None
    seed: int = 0
    head_path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in DRAFTERS:
            raise ConfigError("drafter", f"must be one of {', '.join(DRAFTERS)}, got {self.kind!r}")
        if self.kind == "oracle":
            a = self.alpha
            if isinstance(a, bool) or not isinstance(a, int | float) or not 0.0 <= a <= 1.0:
                raise ConfigError("drafter.alpha", f"must be a number in [0, 1], got {a!r}")
        elif self.alpha is not None:
            raise ConfigError("drafter.alpha", "is only used by the oracle drafter")
        if self.head_path is not None and not Path(self.head_path).is_file():
            raise ConfigError("drafter.head_path", f"EE head file not found: {self.head_path}")

    @property
    def needs_reference(self) -> bool:
        return self.kind == "oracle"

    def label(self) -> str:
        if self.kind == "oracle":
            return f"oracle(α={self.alpha:g}, seed={self.seed})"
        return "early-exit" + (f"(head={self.head_path})" if self.head_path else "")


def refuse_oracle(spec: DrafterSpec, sampling) -> None:
    """The oracle replays AR's greedy output at a set rate: a token, not a distribution, so
    there is no q to judge at temperature > 0. Sampling drafts with the early-exit head."""
    if spec.kind == "oracle" and not sampling.greedy:
        raise ConfigError(
            "--drafter",
            "the oracle drafter is greedy only (it replays AR's argmax at a set rate); "
            "at --temperature > 0 draft with --drafter early-exit",
        )


class Drafter:
    """Chooses the draft for output position ``i`` (0-based, first generated token = 0)."""

    def __init__(self, spec: DrafterSpec, vocab: int, reference: list[int] | None = None) -> None:
        self.spec = spec
        if spec.needs_reference:
            if reference is None:
                raise ConfigError("drafter", "the oracle drafter needs the AR reference output")
            rng = np.random.default_rng(spec.seed)
            n = len(reference)
            # One draw per output position, fixed up front: a position's fate does not depend on
            # how often it is drafted (a flushed wrong-branch draft may come back).
            self._right = rng.random(n) < float(spec.alpha or 0.0)
            shift = rng.integers(1, max(vocab, 2), size=n)
            ref = np.asarray(reference, dtype=np.int64)
            self._tokens = np.where(self._right, ref, (ref + shift) % vocab).tolist()

    def draft(self, i: int, ee_token: int) -> int:
        if self.spec.kind == "early-exit":
            return ee_token
        return self._tokens[i] if 0 <= i < len(self._tokens) else ee_token


def load_ee_head(spec: DrafterSpec, lm_head: torch.nn.Module) -> torch.nn.Module | None:
    """The EE head module: None means 'the model's own LM head' (LayerSkip style)."""
    if spec.head_path is None:
        return None
    try:
        if str(spec.head_path).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(spec.head_path)
        else:
            state = torch.load(spec.head_path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(
            "drafter.head_path", f"cannot read EE head {spec.head_path}: {err}"
        ) from None
    weight = state.get("weight") if isinstance(state, dict) else None
    ref = lm_head.weight
    if not isinstance(weight, torch.Tensor) or weight.shape != ref.shape:
        raise ConfigError(
            "drafter.head_path",
            f"needs a 'weight' tensor of shape {tuple(ref.shape)} (vocab, hidden)",
        )
    bias = state.get("bias")
    head = torch.nn.Linear(ref.shape[1], ref.shape[0], bias=isinstance(bias, torch.Tensor))
    head.weight.data = weight.to(device=ref.device, dtype=ref.dtype)
    if isinstance(bias, torch.Tensor):
        head.bias.data = bias.to(device=ref.device, dtype=ref.dtype)
    return head.eval()


def heads_dir_head(
    heads_dir: str, exit_layer: int, fingerprint: str, field: str = "--heads"
) -> str:
    """The head file for ``exit_layer`` in a heads folder (``ppsd heads train``), for
    ``DrafterSpec.head_path``, after checking the folder's manifest: trained for this model
    (``model_loading.model_fingerprint``) and holding that exit."""
    from ppsd_real.lm.heads import HeadsManifest, head_file

    man = HeadsManifest.read(heads_dir, field)
    man.check_base(fingerprint, field)
    if exit_layer not in man.exits:
        raise ConfigError(field, f"holds heads for exits {list(man.exits)}, not {exit_layer}")
    return str(head_file(Path(heads_dir), exit_layer))


def head_for_exit(
    exit_layer: int,
    *,
    model_dir: str | None,
    heads_dir: str | None = None,
    fingerprint: str | None = None,
    shared_head: bool = False,
    field: str = "--heads",
) -> str | None:
    """The early-exit head file that drafts at ``exit_layer`` (None: the model's shared LM
    head): a ``--heads`` folder's (checked against the model's ``fingerprint``), else the
    trained head shipped beside a model folder (``ee_head_exit<E>.safetensors``), unless
    ``shared_head`` asks for the LM head."""
    if heads_dir is not None:
        if fingerprint is None:
            raise ValueError("a heads folder is checked against the model's fingerprint")
        return heads_dir_head(heads_dir, exit_layer, fingerprint, field)
    if model_dir is None or shared_head:
        return None
    from ppsd_real.lm.heads import head_file

    trained = head_file(Path(model_dir), exit_layer)
    return str(trained) if trained.is_file() else None


def head_from_flags(
    args: Any, kind: str, exit_layer: int, model_dir: str | None, spec: Any
) -> str | None:
    """The head ``--heads``/``--shared-head`` (and a model folder's shipped heads) name for a
    drafter of ``kind`` at ``exit_layer`` of the model ``spec`` (``ppsd run``, batched or not)."""
    if kind == "oracle":
        return None
    from ppsd_real.model_loading import model_fingerprint

    return head_for_exit(
        exit_layer,
        model_dir=model_dir,
        heads_dir=args.heads,
        fingerprint=None if args.heads is None else model_fingerprint(spec),
        shared_head=args.shared_head,
    )
