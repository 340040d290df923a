"""Build and run one scheme on one model: the glue the CLI and the benchmark share."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppsd_real.backends import BACKENDS
from ppsd_real.backends.base import PipelineBackend
from ppsd_real.backends.distributed import DistributedBackend, PipelineSpec
from ppsd_real.backends.sequential import SequentialBackend
from ppsd_real.decoders import ARDecoder, DecodeResult, EESDDecoder
from ppsd_real.drafters import Drafter, DrafterSpec, load_ee_head
from ppsd_real.layers import LayerDriver, ModelParts
from ppsd_real.model_loading import ModelSpec, load_model
from ppsd_real.sampling import GREEDY, SamplingSpec
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig

LOCAL_SCHEMES = ("ar", "eesd", "ppsd")  # what run_local decodes (PP-AR, TP-AR: simulator only)


@dataclass
class Loaded:
    spec: ModelSpec
    model: torch.nn.Module
    driver: LayerDriver

    @property
    def n_layers(self) -> int:
        return self.driver.n_layers

    @property
    def vocab(self) -> int:
        return int(self.driver.parts.lm_head.weight.shape[0])


def load(spec: ModelSpec) -> Loaded:
    model = load_model(spec)
    return Loaded(spec, model, LayerDriver(ModelParts.of(model)))


def check_scheme(scheme: SchemeConfig, n_layers: int) -> None:
    """Refuse a scheme that does not fit the model or that the real runner does not run
    (ConfigError naming the field): PP-AR and TP-AR are serving-simulator baselines only."""
    if scheme.kind in ("pp_ar", "tp_ar"):
        raise ConfigError(
            "scheme.kind",
            f"the real runner runs AR, EESD and PPSD, not {scheme.kind!r} (PP-AR and TP-AR "
            "are simulated by `ppsd serving` only)",
        )
    scheme.check_layers(n_layers)


def run_local(
    m: Loaded,
    scheme: SchemeConfig,
    drafter: DrafterSpec,
    prompt: list[int],
    n: int,
    reference: list[int] | None,
    sampling: SamplingSpec = GREEDY,
) -> DecodeResult:
    """AR, EESD, or PPSD on the sequential backend, in this process, greedy or sampled."""
    check_scheme(scheme, m.n_layers)
    if scheme.kind not in LOCAL_SCHEMES:
        raise ConfigError(
            "scheme.kind", f"the real runner runs {', '.join(LOCAL_SCHEMES)}, not {scheme.kind!r}"
        )
    if scheme.kind == "ar":
        return ARDecoder(m.driver, sampling).decode(prompt, n)
    if scheme.kind == "ppsd":
        return SequentialBackend(m.driver, scheme, drafter.head_path).run(
            prompt, n, drafter, reference, sampling
        )
    dr = Drafter(drafter, m.vocab, reference)
    head = load_ee_head(drafter, m.driver.parts.lm_head)
    return EESDDecoder(
        m.driver, scheme.exit_layer or 1, scheme.gamma or 1, dr, scheme.cache_reuse, head, sampling
    ).decode(prompt, n)


def open_backend(
    kind: str,
    m: Loaded,
    scheme: SchemeConfig,
    drafter: DrafterSpec,
    transport: str = "pipe",
    timeout_s: float = 120.0,
) -> PipelineBackend:
    """A PPSD backend by name (``backends.BACKENDS``): ``sequential`` steps the stages in this
    process on ``m``; ``distributed`` starts a process per stage talking over ``transport``."""
    if kind == "sequential":
        check_scheme(scheme, m.n_layers)
        return SequentialBackend(m.driver, scheme, drafter.head_path)
    if kind == "distributed":
        return open_distributed(m.spec, scheme, m.n_layers, drafter, timeout_s, transport)
    raise ConfigError("backend", f"must be one of {', '.join(BACKENDS)}, got {kind!r}")


def open_distributed(
    spec: ModelSpec,
    scheme: SchemeConfig,
    n_layers: int,
    drafter: DrafterSpec,
    timeout_s: float = 120.0,
    transport: str = "pipe",
) -> DistributedBackend:
    """Stage processes for ``scheme`` talking over ``transport`` (``transport.TRANSPORTS``)."""
    if scheme.kind != "ppsd":
        raise ConfigError("backend", f"the distributed backend runs PPSD only, not {scheme.kind!r}")
    check_scheme(scheme, n_layers)
    return DistributedBackend(
        PipelineSpec(spec, scheme, transport=transport, head_path=drafter.head_path),
        timeout_s=timeout_s,
    )
