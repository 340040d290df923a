"""Schema tagging shared by every record: a name and an integer version in each JSON object."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ppsd_sim.errors import ConfigError

SCHEMA_VERSION = 1


def tag(name: str) -> dict[str, Any]:
    return {"record": name, "schema_version": SCHEMA_VERSION}


def check_tag(data: Any, name: str, where: str = "") -> None:
    """Refuse an object of another record type or another schema version (with the field).

    A whole document (``where`` empty: a record file) must carry its tag: a file without one
    is refused, never guessed. An object nested inside a record or a config (``where`` set)
    may leave it out; if present it must match."""
    if not isinstance(data, dict):
        raise ConfigError(where, f"must be a JSON object ({name}), got {type(data).__name__}")
    if not where and "record" not in data:
        raise ConfigError(
            "record",
            f'missing: a {name} file carries "record": "{name}" and "schema_version"',
        )
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


def open_record(
    data: Any,
    name: str,
    where: str,
    allowed: Iterable[str],
    required: Iterable[str] = (),
    derived: Iterable[str] = (),
) -> dict[str, Any]:
    """The fields of a record's JSON object: its tag checked, unknown keys refused, the tag and
    any ``derived`` (recomputed, informational) keys dropped."""
    from ppsd_sim.records import validate

    check_tag(data, name, where)
    derived = tuple(derived)
    d = validate.mapping(where, data, (*TAG_KEYS, *derived, *allowed), required)
    return {k: v for k, v in d.items() if k not in TAG_KEYS and k not in derived}


def rerooted(err: ConfigError, own: str, where: str) -> ConfigError:
    """An error raised under a record's own prefix (``own``), moved under ``where``."""
    if where == own or not err.field.startswith(own):
        return err
    return ConfigError(where + err.field[len(own) :], err.message)
