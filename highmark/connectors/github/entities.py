"""The GitHub tables: ``<prefix>pull_requests``, ``commits``, ``reviews``, ``comments``."""

from __future__ import annotations

from collections.abc import Sequence

from highmark.destinations.entities import Entity, Field, FieldType

TEXT, INT, BOOL, TS = FieldType.TEXT, FieldType.INTEGER, FieldType.BOOLEAN, FieldType.TIMESTAMP

# A child row carries the id of the run that began syncing its pull request: when a pull
# request's children have all been read again, the rows that were not (removed by a force-push,
# deleted) are the ones with another id.
STAMP = "synced_run_id"

PULL_REQUESTS = Entity(
    "pull_requests",
    (
        Field("id", TEXT, nullable=False),
        Field("repository", TEXT),
        Field("number", INT),
        Field("title", TEXT),
        Field("state", TEXT),
        Field("is_draft", BOOL),
        Field("author_login", TEXT),
        Field("url", TEXT),
        Field("created_at", TS),
        Field("updated_at", TS),
        Field("closed_at", TS),
        Field("merged_at", TS),
    ),
    version="updated_at",
)

_CHILD = (
    Field("id", TEXT, nullable=False),
    Field("pull_request_id", TEXT, nullable=False),
    Field("repository", TEXT),
    Field(STAMP, INT),
)

CHILDREN = {
    "commits": Entity(
        "commits",
        (
            *_CHILD,
            Field("oid", TEXT),
            Field("message", TEXT),
            Field("committed_date", TS),
            Field("authored_date", TS),
        ),
        parent="pull_request_id",
        stamp=STAMP,
    ),
    "reviews": Entity(
        "reviews",
        (
            *_CHILD,
            Field("state", TEXT),
            Field("author_login", TEXT),
            Field("submitted_at", TS),
            Field("created_at", TS),
            Field("updated_at", TS),
        ),
        parent="pull_request_id",
        stamp=STAMP,
    ),
    "comments": Entity(
        "comments",
        (
            *_CHILD,
            Field("author_login", TEXT),
            Field("body", TEXT),
            Field("created_at", TS),
            Field("updated_at", TS),
        ),
        parent="pull_request_id",
        stamp=STAMP,
    ),
}


def entities(selected: Sequence[str]) -> list[Entity]:
    chosen = [PULL_REQUESTS] if "pull_requests" in selected else []
    return chosen + [entity for name, entity in CHILDREN.items() if name in selected]
