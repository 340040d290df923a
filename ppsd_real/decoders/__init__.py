"""One decoder per scheme: AR, EESD (draft then verify) and PPSD (verify while drafting)."""

from ppsd_real.decoders.ar import ARDecoder
from ppsd_real.decoders.eesd import EESDDecoder
from ppsd_real.decoders.result import DecodeResult

__all__ = ["ARDecoder", "DecodeResult", "EESDDecoder"]
