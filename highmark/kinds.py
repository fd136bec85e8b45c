"""Kinds of job, found by the type of their source connection.

Every job has the same life (highmark/run.py); what differs is how it moves data. A kind is a
connection model, a job model (whose ``mover_path`` names the mover) and nothing else shared:
adding a connector adds its package under ``highmark/connectors/`` and one line to
:data:`CONNECTORS`. A connector's package defines ``CONNECTION`` and ``JOB``, two pydantic models,
and imports nothing heavy at module level (the project file is read on every command).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from highmark.config.connections import ConnectionSpec
    from highmark.config.jobs import JobSpec

SQL = "sql"

# connection type -> the package that defines its CONNECTION and JOB models
CONNECTORS: dict[str, str] = {
    "github": "highmark.connectors.github",
    "jira": "highmark.connectors.jira",
    "msgraph": "highmark.connectors.msgraph",
    "fabric": "highmark.connectors.fabric",
}


def known_types() -> list[str]:
    return [SQL, *sorted(CONNECTORS)]


def is_known(type_name: str) -> bool:
    return type_name == SQL or type_name in CONNECTORS


def connection_model(type_name: str) -> type[ConnectionSpec]:
    if type_name == SQL:
        from highmark.config.connections import SqlConnectionSpec

        return SqlConnectionSpec
    model: type[ConnectionSpec] = importlib.import_module(CONNECTORS[type_name]).CONNECTION
    return model


def job_model(type_name: str) -> type[JobSpec]:
    if type_name == SQL:
        from highmark.config.tables import TableJobSpec

        return TableJobSpec
    model: type[JobSpec] = importlib.import_module(CONNECTORS[type_name]).JOB
    return model
