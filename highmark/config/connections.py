"""Connections of the project file: databases (the default kind) and, for API connectors, the
services they talk to. A connection's ``type`` picks its model (highmark/kinds.py)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field, field_validator
from sqlalchemy.engine import URL

from highmark.config.common import Strict, check_zone, parse_url, redact_url
from highmark.redact import register_secret

SQL = "sql"


class ConnectionSpec(Strict):
    """A named connection. ``type`` says what it connects to (``sql``: a database)."""

    type: str = SQL

    @property
    def is_database(self) -> bool:
        return False


class SqlConnectionSpec(ConnectionSpec):
    """A database connection. ``timezone`` says how naive timestamps are to be read."""

    url: str = Field(repr=False)  # may hold a password
    timezone: str = "UTC"

    @field_validator("url")
    @classmethod
    def _known_url(cls, value: str) -> str:
        parse_url(value)  # refuse a bad URL before any work, and learn its password now
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_zone(value)

    @property
    def is_database(self) -> bool:
        return True


class ApiConnectionSpec(ConnectionSpec):
    """A web API's connection: its base ``url`` (an ``http://127.0.0.1:…`` test server is fine).
    Subclasses add their credentials, declared with :func:`secret_field` validators."""

    url: str

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value.rstrip("/")


def secret(value: str | None) -> str | None:
    """A credential read from the file: registered for masking the moment it is read."""
    register_secret(value)
    return value


@dataclass(frozen=True)
class ResolvedConnection:
    """A connection ready to open: its URL with the chosen driver, and its time zone."""

    name: str
    url: URL
    timezone: str

    @property
    def display_url(self) -> str:
        return redact_url(self.url)
