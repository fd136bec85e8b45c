"""Secret registry and scrubbing.

Every secret highmark learns (a password in a connection URL, a token substituted from the
environment) is registered here the moment the project file is parsed. Everything that leaves the
process — log lines, error messages, run rows, alerts — goes through :func:`scrub` first, so a
driver that quotes a connection string in its error message cannot leak it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
_MIN_SECRET_LENGTH = 3

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember ``value`` (and its URL-encoded forms) as a secret to mask everywhere."""
    if not value or len(value) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets.update({value, quote(value, safe=""), quote_plus(value)})


def scrub(text: str) -> str:
    """Replace every registered secret in ``text`` with ``***``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub_json(value: Any) -> Any:
    """:func:`scrub` every string inside a JSON-like value (tuples become lists)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrub_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_json(v) for v in value]
    return value


class ScrubbingFilter(logging.Filter):
    """A logging filter that scrubs secrets from the rendered message of every record, and from
    its traceback and stack."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # Handlers format the traceback only after their filters ran: render it here, where
            # it can be scrubbed (chained driver errors carry their messages unscrubbed).
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True
