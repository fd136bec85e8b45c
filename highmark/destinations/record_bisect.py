"""An API page the target refuses for a data reason, split down to the records at fault.

:meth:`RecordWriter.write <highmark.destinations.records.RecordWriter.write>` writes a page (the
changes of one or more entities) in one transaction. When the target refuses it for the values
of a record (PostgreSQL: a NUL character in text or jsonb; a CHECK constraint added by hand), the
page's upserts are bisected by :func:`~highmark.destinations.bisect.write_bisecting`, each piece in
its own transaction, until the records at fault stand alone; the page's child-set replacements and
deletions then go in one last transaction, in which the refused records still count as present
(a refused child keeps its stored version, as a refused SQL row does). The stored rows of refused
records of an entity with a stamp take the page's stamp, as if written: a child set or a full
round replaced by stamp on a later page keeps them too. Any other failure (a lost
connection, a lock) is raised as it is: the run's, retryable, never bisected.

The refused records come back as :class:`~highmark.models.RejectedRow`: ``source_table`` the
entity's name, ``source_record_id`` its key, ``source_data`` the record as written (every field
and ``raw``), which :func:`rewrite_rejected` writes again for ``highmark rejected retry``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from highmark.bad_rows import BadRows, record_id, rejected_row
from highmark.config.tables import OnBadRows
from highmark.destinations.bisect import write_bisecting
from highmark.destinations.entities import RAW_COLUMN, Entity, EntityChanges
from highmark.destinations.records import RecordWriter
from highmark.models import Counts, RefusedRow, RejectedRow
from highmark.movers.base import RunContext
from highmark.sources.base import Batch

# A bisected row: the entity's name and the record (never a field name: fields are identifiers).
_ENTITY, _RECORD = "entity name", "record"


@dataclass(frozen=True)
class RecordsWritten:
    """What a bisecting write of a page did: the counts of what went in, the records refused."""

    counts: Counts
    refused: list[RejectedRow] = field(default_factory=list)


def write_records(
    writer: RecordWriter,
    changes: Sequence[EntityChanges],
    *,
    check: Callable[[], None] = lambda: None,
) -> RecordsWritten:
    """Write ``changes`` as :meth:`RecordWriter.write` does; on a data error, bisect the upserts
    (see the module docstring). ``rows_read`` of the counts stays 0, as the writer's."""
    rows = [{_ENTITY: c.entity, _RECORD: obj} for c in changes for obj in c.upserts]
    tries = 0

    def write(batch: Batch) -> Counts:
        nonlocal tries
        tries += 1
        if tries == 1:  # the page as it is, in one transaction
            return writer.write(changes)
        return writer.write(_upserts(batch.rows))

    written = write_bisecting(write, Batch(rows=rows), check=check)
    if tries == 1:
        return RecordsWritten(written.counts.with_read(0))
    for entity, objs in _by_entity([r.row for r in written.refused]).items():
        writer.restamp(entity, objs)
    rest = [
        EntityChanges(c.entity, [], c.replace_children_of, c.deletes, c.stamp)
        for c in changes
        if c.replace_children_of or c.deletes
    ]
    counts = written.counts.with_read(0)
    if rest:
        kept: dict[str, list[dict[str, Any]]] = {}
        for c in changes:
            kept.setdefault(c.entity, []).extend(c.upserts)
        counts += writer.write(rest, kept=kept)
    return RecordsWritten(counts, [_rejected(writer, r) for r in written.refused])


def handle_refused(
    ctx: RunContext, policy: OnBadRows, writer: RecordWriter, refused: list[RejectedRow]
) -> None:
    """Quarantine the records of a page the target refused, or fail the run naming them (the
    first entity's, when a page refused records of several)."""
    by_entity: dict[str, list[RejectedRow]] = {}
    for row in refused:
        by_entity.setdefault(row.source_table, []).append(row)
    for entity, rows in by_entity.items():
        BadRows(
            ctx,
            policy=policy,
            source_table=entity,
            target_table=writer.table_name(entity),
            primary_key=list(writer.entities[entity].key),
        ).handle_rejected(rows)


def rewrite_rejected(
    writer: RecordWriter, records: Sequence[tuple[str, dict[str, Any]]]
) -> RecordsWritten:
    """Write quarantined records ``(entity, source_data)`` again, bisected: the ones refused
    again come back. A stored row with a newer version is never overwritten by them."""
    rows = [{_ENTITY: e, _RECORD: _fields(writer.entities[e], data)} for e, data in records]
    written = write_bisecting(lambda b: writer.write(_upserts(b.rows)), Batch(rows=rows),
                              give_up_after=None)  # fmt: skip
    return RecordsWritten(written.counts, [_rejected(writer, r) for r in written.refused])


def record_key(writer: RecordWriter, entity: str, data: dict[str, Any]) -> Any:
    """A record's key as ``source_record_id`` holds it."""
    return record_id(data, list(writer.entities[entity].key))


def _fields(entity: Entity, data: dict[str, Any]) -> dict[str, Any]:
    """A quarantined record with the entity's fields as they are now (a field added to the
    entity since it was refused is None; one removed is left out)."""
    return {name: data.get(name) for name in [*(f.name for f in entity.fields), RAW_COLUMN]}


def _upserts(rows: list[dict[str, Any]]) -> list[EntityChanges]:
    return [EntityChanges(entity, objs) for entity, objs in _by_entity(rows).items()]


def _by_entity(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_entity: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_entity.setdefault(row[_ENTITY], []).append(row[_RECORD])
    return by_entity


def _rejected(writer: RecordWriter, refused: RefusedRow) -> RejectedRow:
    entity = refused.row[_ENTITY]
    record = RefusedRow(refused.row[_RECORD], refused.refusal)
    return rejected_row(record, entity, list(writer.entities[entity].key))
