"""The audit log, ``etl_audit``: who did what through the REST API and the dashboard, when, and
how it ended (every admin call, and every login)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from highmark.models import _jsonable
from highmark.redact import scrub, scrub_json
from highmark.store.store import ControlStore
from highmark.store.tables import etl_audit

MAX_OUTCOME_LENGTH = 1000


@dataclass(frozen=True)
class AuditRecord:
    """A row of ``etl_audit``."""

    audit_id: int
    occurred_at: datetime
    actor: str
    scope: str | None
    action: str
    target: str | None
    status_code: int | None
    outcome: str | None
    client: str | None
    details: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Any) -> AuditRecord:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    def to_json(self) -> dict[str, Any]:
        return {f: _jsonable(getattr(self, f)) for f in self.__dataclass_fields__}


class AuditLog:
    """Writing and reading ``etl_audit`` (its SQL lives here)."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store

    def record(
        self,
        *,
        actor: str,
        scope: str | None,
        action: str,
        target: str | None,
        status_code: int | None,
        outcome: str | None,
        client: str | None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Add one entry (its texts scrubbed of secrets), stamped by the control database."""
        with self.store._begin("cannot write the audit log") as connection:
            connection.execute(
                insert(etl_audit).values(
                    occurred_at=self.store._now(connection),
                    actor=scrub(actor)[:255],
                    scope=scope,
                    action=action[:255],
                    target=None if target is None else scrub(target)[:255],
                    status_code=status_code,
                    outcome=None if outcome is None else scrub(outcome)[:MAX_OUTCOME_LENGTH],
                    client=None if client is None else client[:255],
                    details=scrub_json(details),
                )
            )

    def list(
        self,
        *,
        limit: int | None = 100,
        since: datetime | None = None,
        actor: str | None = None,
    ) -> list[AuditRecord]:
        """Entries, newest first."""
        a = etl_audit
        query = select(a).order_by(a.c.audit_id.desc())
        if since is not None:
            query = query.where(a.c.occurred_at >= since)
        if actor is not None:
            query = query.where(a.c.actor == actor)
        if limit is not None:
            query = query.limit(limit)
        with self.store._begin("cannot read the audit log") as connection:
            return [AuditRecord.from_row(row) for row in connection.execute(query)]
