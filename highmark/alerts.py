"""Alerts: decide which events a finished run (or a stale job) raises, and deliver them.

(Being implemented: see the issue "Operations". The interface the rest of highmark calls:)
"""

from __future__ import annotations

import logging

from highmark.config import ProjectConfig
from highmark.models import RunRecord
from highmark.store.store import ControlStore

log = logging.getLogger(__name__)


def after_run(store: ControlStore, config: ProjectConfig, record: RunRecord) -> None:
    """Raise and deliver the alerts a finished run calls for. Never raises: a failing sink or
    alert store must never fail a run."""
    return None
