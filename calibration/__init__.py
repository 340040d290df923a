"""Calibration: the simulator checked against the hardware it predicts.

profile (ppsd_real) → predict (ppsd_sim, from that profile alone) → measure (ppsd_real, the
same grid) → compare (signed / absolute error per cell, with replay of the measured acceptance
trace) → report. ``gate`` turns a small fixed measurement into a CI regression check.
"""
