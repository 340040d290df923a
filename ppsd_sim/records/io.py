"""Reading and writing records: JSON or YAML in, JSON out, always atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ppsd_sim.errors import ConfigError


def load_document(path: str | os.PathLike[str], field: str = "file") -> Any:
    """Parse a JSON or YAML file (by extension; JSON otherwise), refusing it with a clear
    message naming the file and the position of the syntax error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(field, f"file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(field, f"cannot read {p}: {err}") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(field, f"malformed YAML in {p}: {str(err).splitlines()[0]}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            field, f"malformed JSON in {p}: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write via a temporary file in the same folder and rename, so a crash never leaves a
    half-written file and an existing file is replaced whole or not at all."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; records are meant to be shared
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def dumps(obj: Any) -> str:
    """Canonical JSON text of a record (``to_dict``) or plain data; NaN/inf are refused."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def write_record(path: str | os.PathLike[str], record: Any) -> Path:
    """Serialise first (so a bad record raises before touching disk), then write atomically."""
    return atomic_write_text(path, dumps(record))


def read_record(path: str | os.PathLike[str], cls: Any, field: str = "file") -> Any:
    """Load and validate one record of type ``cls`` from a JSON/YAML file."""
    return cls.from_dict(load_document(path, field))
