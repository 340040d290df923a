"""ppsd_sim: predict AR / EESD / PPSD decoding speed from latencies and acceptance.

Pure Python + numpy/scipy/simpy; never imports torch.
"""

from ppsd_sim.errors import ConfigError
from ppsd_sim.records import (
    AcceptanceObserved,
    AcceptanceSpec,
    HardwareProfile,
    Provenance,
    RunRecord,
    SchemeConfig,
    Timing,
)

__all__ = [
    "AcceptanceObserved",
    "AcceptanceSpec",
    "ConfigError",
    "HardwareProfile",
    "Provenance",
    "RunRecord",
    "SchemeConfig",
    "Timing",
]
__version__ = "0.1.0"
