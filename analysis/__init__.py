"""analysis: turn ppsd records into answers — capacity plans, synthesised profiles for
hardware we cannot reach, and self-contained HTML/Markdown reports.

Reads records and calls the simulator; never re-measures and never re-implements the models.
"""
