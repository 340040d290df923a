"""The versioned records every part of ppsd exchanges (see ARCHITECTURE.md)."""

from ppsd_sim.records.acceptance_spec import AcceptanceSpec
from ppsd_sim.records.io import (
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    check_writable_dir,
    load_document,
    read_record,
    write_all,
    write_record,
)
from ppsd_sim.records.profile import HardwareProfile, Provenance
from ppsd_sim.records.run_record import AcceptanceObserved, RunRecord
from ppsd_sim.records.sampling import SamplingSpec
from ppsd_sim.records.schema import SCHEMA_VERSION
from ppsd_sim.records.scheme import SchemeConfig, StageSpec
from ppsd_sim.records.span import Span
from ppsd_sim.records.timing import Timing

__all__ = [
    "SCHEMA_VERSION",
    "AcceptanceObserved",
    "AcceptanceSpec",
    "HardwareProfile",
    "Provenance",
    "RunRecord",
    "SamplingSpec",
    "SchemeConfig",
    "Span",
    "StageSpec",
    "Timing",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "check_writable_dir",
    "load_document",
    "read_record",
    "write_all",
    "write_record",
]
