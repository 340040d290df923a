"""The one exception type every bad input becomes, so the CLI can print one line and exit 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration, profile, trace or flag that cannot be used.

    ``field`` names the offending input (dotted path such as ``scheme.exit_layer``) so the
    user knows what to fix; ``str(err)`` is a complete one-line message.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def within(self, prefix: str) -> ConfigError:
        """Re-root the field path under ``prefix`` (used when a record nests another)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return ConfigError(field, self.message)
