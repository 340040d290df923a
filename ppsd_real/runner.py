"""Build and run one scheme on one model: the glue the CLI and the benchmark share."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppsd_real.backends.distributed import DistributedBackend, PipelineSpec
from ppsd_real.backends.sequential import run_sequential
from ppsd_real.decoders import ARDecoder, DecodeResult, EESDDecoder
from ppsd_real.drafters import Drafter, DrafterSpec, load_ee_head
from ppsd_real.layers import LayerDriver, ModelParts
from ppsd_real.model_loading import ModelSpec, load_model
from ppsd_sim.errors import ConfigError
from ppsd_sim.records import SchemeConfig


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
) -> DecodeResult:
    """AR, EESD, or PPSD on the sequential backend, in this process."""
    check_scheme(scheme, m.n_layers)
    if scheme.kind == "ar":
        return ARDecoder(m.driver).decode(prompt, n)
    dr = Drafter(drafter, m.vocab, reference)
    head = load_ee_head(drafter, m.driver.parts.lm_head)
    if scheme.kind == "eesd":
        return EESDDecoder(
            m.driver, scheme.exit_layer or 1, scheme.gamma or 1, dr, scheme.cache_reuse, head
        ).decode(prompt, n)
    return run_sequential(m.driver, scheme.stage_boundaries, scheme.exit_stage, dr, prompt, n, head)


def open_distributed(
    spec: ModelSpec,
    scheme: SchemeConfig,
    n_layers: int,
    drafter: DrafterSpec,
    timeout_s: float = 120.0,
    transport: str = "pipe",
) -> DistributedBackend:
    """Stage processes for ``scheme`` talking over ``transport`` (pipe or gloo)."""
    if scheme.kind != "ppsd":
        raise ConfigError("backend", f"the distributed backend runs PPSD only, not {scheme.kind!r}")
    check_scheme(scheme, n_layers)
    return DistributedBackend(
        PipelineSpec(
            spec,
            scheme.stage_boundaries,
            scheme.exit_stage,
            transport=transport,
            head_path=drafter.head_path,
        ),
        timeout_s=timeout_s,
    )
