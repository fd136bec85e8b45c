"""A MySQL/MariaDB table's changes, read from the binary log (in progress)."""

from __future__ import annotations

from typing import Any

from highmark.config import ResolvedConnection, TableJobSpec
from highmark.errors import SourceError


class MysqlChanges:
    def __init__(self, connection: ResolvedConnection, job: TableJobSpec) -> None:
        raise SourceError("change capture on MySQL/MariaDB is not built yet", retryable=False)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)
