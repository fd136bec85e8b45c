"""What every part of the project file shares: strict frozen models, durations, time zones,
database URLs (parsing, drivers, redaction), and errors that know which key they are about."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from highmark.redact import register_secret

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
SECRET_KEY_HINTS = ("password", "passwd", "secret", "token", "apikey", "api_key", "key")
IDENTIFIER = re.compile(r"^[^\s\"'`;]+$")
# URL schemes a user may write, and the SQLAlchemy driver highmark picks for each.
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "sqlite": "sqlite",
}
# Other names of a backend, as SQLAlchemy knows it (``postgres+psycopg://`` -> ``postgresql+…``).
_ALIASES = {"postgres": "postgresql", "mariadb": "mysql"}


class Strict(BaseModel):
    """A section of the project file: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class KeyedError(ValueError):
    """A cross-field error that knows the path of the key it is about, relative to the model that
    raised it (the root model raises it with the key's whole path)."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class NestedErrors(ValueError):
    """A section validated by a model chosen at run time (a job or connection of some kind):
    its pydantic errors, the path of the section and the model, for the one-line message."""

    def __init__(self, path: tuple[str, ...], model: type[BaseModel], errors: Any) -> None:
        super().__init__("invalid section")
        self.path = path
        self.model = model
        self.errors = errors


def parse_duration(value: str | float | int) -> timedelta:
    """``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` or a number of seconds -> timedelta."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 2h or 1d")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


def duration_field(value: Any) -> timedelta:
    return value if isinstance(value, timedelta) else parse_duration(value)


def check_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def parse_url(raw: str) -> URL:
    """Parse a connection URL, register its secrets, refuse a scheme highmark cannot use."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ValueError(
            "is not a connection URL (sqlite:///…, postgresql://…, mysql://…)"
        ) from None
    register_secret(url.password if isinstance(url.password, str) else None)
    for key, value in url.query.items():
        if any(hint in key.lower() for hint in SECRET_KEY_HINTS):
            for item in [value] if isinstance(value, str) else value:
                register_secret(item)
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise ValueError(
            f"has the unsupported scheme {backend!r} (use sqlite, postgresql, mysql or mariadb)"
        )
    return url


def normalize_url(raw: str, base_dir: Path) -> URL:
    """Parse a connection URL, pick its driver, anchor relative SQLite paths at ``base_dir``."""
    url = parse_url(raw)
    backend = url.get_backend_name()
    if "+" not in url.drivername:
        url = url.set(drivername=_DRIVERS[backend])
    elif backend in _ALIASES:
        url = url.set(drivername=f"{_ALIASES[backend]}+{url.get_driver_name()}")
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            if not path.is_absolute():
                path = (base_dir / path).resolve()
            url = url.set(database=str(path))
    return url


def redact_url(url: URL | str) -> str:
    """A URL as it may be shown: the password reads ``***``."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)
