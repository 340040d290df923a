"""Where PPSD stages run: ``sequential`` (one process) or ``distributed`` (a process each)."""

BACKENDS = ("sequential", "distributed")
TRANSPORTS = ("pipe", "gloo")
