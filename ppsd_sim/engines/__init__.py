"""Engines that turn (costs, acceptance realisation) into a timed run.

``simpy_*``: the discrete-event reference models. ``fast``: exact closed-form recurrences over
the same acceptance realisation, for long runs and sweeps.
"""
