"""Schema tagging shared by every record: a name and an integer version in each JSON object."""

from __future__ import annotations

from typing import Any

from ppsd_sim.errors import ConfigError

SCHEMA_VERSION = 1


def tag(name: str) -> dict[str, Any]:
    return {"record": name, "schema_version": SCHEMA_VERSION}


def check_tag(data: Any, name: str, where: str = "") -> None:
    """Refuse an object of another record type or another schema version (with the field)."""
    if not isinstance(data, dict):
        raise ConfigError(where, f"must be a JSON object ({name}), got {type(data).__name__}")
    rec = data.get("record", name)
    if rec != name:
        raise ConfigError(
            f"{where}.record" if where else "record", f"expected {name!r}, got {rec!r}"
        )
    ver = data.get("schema_version", SCHEMA_VERSION)
    if ver != SCHEMA_VERSION:
        raise ConfigError(
            f"{where}.schema_version" if where else "schema_version",
            f"this ppsd reads version {SCHEMA_VERSION}, got {ver!r}",
        )


TAG_KEYS = ("record", "schema_version")
