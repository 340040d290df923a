"""ppsd_real: run AR, EESD and PPSD on real transformers layers and measure them.

Imports only the record schema (``ppsd_sim.records``) and ``ppsd_sim.errors`` from the simulator.
"""
