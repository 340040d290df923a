"""Where PPSD stages run: ``sequential`` (one process) or ``distributed`` (a process each).

The interfaces are in ``base``; the stage messages in ``messages``; the transports (and their
registry ``TRANSPORTS``) in ``transport``.
"""

BACKENDS = ("sequential", "distributed")
