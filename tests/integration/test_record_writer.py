"""The record writer (API entities into tables) on real SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from highmark.config import ResolvedConnection, normalize_url
from highmark.destinations.entities import Entity, EntityChanges, Field, FieldType
from highmark.destinations.records import RecordWriter
from highmark.errors import ConfigError, DestinationError, SchemaConflictError
from highmark.models import Counts

T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)

PULLS = Entity(
    "pull_requests",
    (
        Field("id", FieldType.TEXT),
        Field("number", FieldType.INTEGER, nullable=False),
        Field("title", FieldType.TEXT),
        Field("draft", FieldType.BOOLEAN),
        Field("updated", FieldType.TIMESTAMP),
        Field("labels", FieldType.JSON),
        Field("score", FieldType.FLOAT),
    ),
    version="updated",
)
COMMITS = Entity(
    "commits",
    (
        Field("pull_request_id", FieldType.TEXT),
        Field("sha", FieldType.TEXT),
        Field("message", FieldType.TEXT),
    ),
    key=("pull_request_id", "sha"),
    parent="pull_request_id",
)
REVIEWS = Entity(
    "reviews",
    (
        Field("id", FieldType.INTEGER),
        Field("pull_request_id", FieldType.TEXT, nullable=False),
        Field("state", FieldType.TEXT),
    ),
    parent="pull_request_id",
)
ALL = [PULLS, COMMITS, REVIEWS]


def pull(i: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"PR_kw{i}",
        "number": i,
        "title": f"Pull {i}",
        "draft": False,
        "updated": T0,
        "labels": ["bug", {"name": "ui", "color": "red"}],
        "score": 1.5,
    }
    row.update(changes)
    row.setdefault("raw", {"id": row["id"], "number": i, "title": row["title"], "nested": [1, 2]})
    return row


def commit(pr: str, sha: str, message: str = "fix") -> dict[str, Any]:
    return {"pull_request_id": pr, "sha": sha, "message": message, "raw": {"oid": sha}}


@pytest.fixture
def connection(db_url: str, tmp_path: Path) -> ResolvedConnection:
    return ResolvedConnection(name="dw", url=normalize_url(db_url, tmp_path), timezone="UTC")


@pytest.fixture
def make_writer(connection: ResolvedConnection) -> Iterator[Callable[..., RecordWriter]]:
    writers: list[RecordWriter] = []

    def make(entities: list[Entity] | None = None, **options: Any) -> RecordWriter:
        writer = RecordWriter(connection, options.pop("prefix", "gh_"), entities or ALL, **options)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.close()


@pytest.fixture
def engine(db_url: str, engine_for: Callable[[str], Engine]) -> Engine:
    return engine_for(db_url)


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def page(entity: str, **parts: Any) -> EntityChanges:
    return EntityChanges(entity, **parts)


# ---------------------------------------------------------------------------- tables


def test_creates_tables_with_the_right_types(
    make_writer: Callable[..., RecordWriter], engine: Engine, backend: str
) -> None:
    writer = make_writer(deletes="mark")
    writer.prepare()
    assert writer.prepared == [
        "created table gh_pull_requests",
        "created table gh_commits",
        "created table gh_reviews",
    ]
    inspector = inspect(engine)
    columns = {c["name"]: c for c in inspector.get_columns("gh_pull_requests")}
    assert list(columns) == [*(f.name for f in PULLS.fields), "raw", "deleted_at"]
    assert inspector.get_pk_constraint("gh_pull_requests")["constrained_columns"] == ["id"]
    assert inspector.get_pk_constraint("gh_commits")["constrained_columns"] == [
        "pull_request_id",
        "sha",
    ]
    assert [i["column_names"] for i in inspector.get_indexes("gh_reviews")] == [["pull_request_id"]]
    assert not columns["number"]["nullable"] and not columns["raw"]["nullable"]
    assert columns["title"]["nullable"] and columns["deleted_at"]["nullable"]
    types = {name: str(c["type"]).upper() for name, c in columns.items()}
    if backend == "postgresql":
        assert types["raw"] == "JSONB" and types["labels"] == "JSONB"
        assert types["updated"] == "TIMESTAMP" and columns["updated"]["type"].timezone
        assert (types["number"], types["id"], types["score"]) == (
            "BIGINT",
            "TEXT",
            "DOUBLE PRECISION",
        )
    elif backend == "mysql":
        create = rows(engine, "SHOW CREATE TABLE gh_pull_requests")[0][1].lower()
        for column in [
            "`id` varchar(255) character set utf8mb4 collate utf8mb4_bin not null",
            "`number` bigint(20) not null",
            "`title` longtext",
            "`updated` datetime(6)",
            "check (json_valid(`raw`))",  # MariaDB's JSON (MySQL: `raw` json)
        ]:
            assert column in create
        assert "auto_increment" not in rows(engine, "SHOW CREATE TABLE gh_reviews")[0][1].lower()
    else:
        assert (types["raw"], types["labels"], types["updated"]) == ("TEXT", "TEXT", "DATETIME")
    writer.prepare()  # a second time: nothing to do
    assert writer.prepared == []


def test_refuses_a_conflicting_table_before_anything_is_written(
    make_writer: Callable[..., RecordWriter], engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE gh_pull_requests (id VARCHAR(40), number VARCHAR(10))"))
    writer = make_writer([COMMITS, PULLS])
    with pytest.raises(SchemaConflictError) as caught:
        writer.prepare()
    message = str(caught.value)
    assert "\n" not in message and not caught.value.retryable
    assert (
        "target table gh_pull_requests: column number is VARCHAR(10) but the field is INTEGER"
        in (message)
    )
    assert "change its type to BIGINT" in message
    assert "it has no primary key or unique index on (id): add PRIMARY KEY (id)" in message
    assert message.endswith("nothing was written")
    assert not inspect(engine).has_table("gh_commits")  # checked before anything was created
    with pytest.raises(SchemaConflictError):
        writer.write([page("commits", upserts=[commit("p", "a")])])
    assert not inspect(engine).has_table("gh_commits")


def test_adds_a_missing_nullable_column(
    make_writer: Callable[..., RecordWriter], engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE gh_reviews (id BIGINT PRIMARY KEY, state TEXT)"))
    writer = make_writer([REVIEWS])
    with pytest.raises(SchemaConflictError, match="column pull_request_id is missing"):
        writer.prepare()  # NOT NULL: cannot be added to the existing rows
    fields = (REVIEWS.fields[0], Field("pull_request_id", FieldType.TEXT), REVIEWS.fields[2])
    loose = Entity("reviews", fields, parent="pull_request_id")
    frozen = make_writer([loose], deletes="mark", schema_changes="freeze")
    with pytest.raises(SchemaConflictError) as caught:
        frozen.prepare()
    assert "target table gh_reviews: column pull_request_id is missing (schema_changes is " in (
        str(caught.value)
    )
    writer = make_writer([loose], deletes="mark")
    writer.prepare()
    assert writer.prepared == ["added index gh_reviews_pull_request_id_idx on gh_reviews"]
    assert [(c.target_table, c.column, c.kind.value) for c in writer.schema_changes] == [
        ("gh_reviews", "pull_request_id", "add"),
        ("gh_reviews", "raw", "add"),
        ("gh_reviews", "deleted_at", "add"),
    ]
    assert all(c.source_table == "reviews" and c.new_type for c in writer.schema_changes)
    change = {"id": 7, "pull_request_id": "p", "state": "OK", "raw": {"a": 1}}
    assert writer.write([page("reviews", upserts=[change])]) == Counts(rows_written=1)
    assert list(writer.keys("reviews", {"pull_request_id": "p"})) == [(7,)]
    again = make_writer([loose], deletes="mark")
    again.prepare()
    assert again.prepared == [] and again.schema_changes == []


# ---------------------------------------------------------------------------- upserts


def test_upserts_count_only_real_changes(
    make_writer: Callable[..., RecordWriter], engine: Engine
) -> None:
    writer = make_writer()
    first = [pull(1), pull(2), pull(3)]
    assert writer.write([page("pull_requests", upserts=first)]) == Counts(rows_written=3)
    assert writer.write([page("pull_requests", upserts=first)]) == Counts()

    changed = [pull(1), pull(2, title="Renamed"), pull(3)]
    changed[1]["raw"] = first[1]["raw"]
    assert writer.write([page("pull_requests", upserts=changed)]) == Counts(rows_updated=1)
    assert rows(engine, "SELECT title FROM gh_pull_requests WHERE number = 2") == [("Renamed",)]

    reordered = pull(3)
    reordered["raw"] = dict(reversed(list(reordered["raw"].items())))
    reordered["labels"] = ["bug", {"color": "red", "name": "ui"}]
    assert writer.write([page("pull_requests", upserts=[reordered])]) == Counts()

    reordered["raw"] = {**reordered["raw"], "nested": [2, 1]}
    assert writer.write([page("pull_requests", upserts=[reordered])]) == Counts(rows_updated=1)
    typed = {**reordered, "raw": {**reordered["raw"], "flag": True}}
    assert writer.write([page("pull_requests", upserts=[typed])]) == Counts(rows_updated=1)
    typed["raw"] = {**typed["raw"], "flag": 1}  # true and 1 are different JSON
    assert writer.write([page("pull_requests", upserts=[typed])]) == Counts(rows_updated=1)
    assert writer.write([page("pull_requests", upserts=[typed])]) == Counts()

    for field, value in [("draft", True), ("score", 2.25), ("labels", None), ("title", None)]:
        assert writer.write([page("pull_requests", upserts=[pull(1, **{field: value})])]) == (
            Counts(rows_updated=1)
        ), field
        assert (
            writer.write([page("pull_requests", upserts=[pull(1, **{field: value})])]) == Counts()
        )
    assert sorted(writer.keys("pull_requests")) == [("PR_kw1",), ("PR_kw2",), ("PR_kw3",)]


def test_keys_are_case_sensitive_and_a_key_given_twice_counts_once(
    make_writer: Callable[..., RecordWriter],
) -> None:
    writer = make_writer()
    pages = [
        page("pull_requests", upserts=[pull(1, id="AbC"), pull(2, id="aBc"), pull(2, id="aBc")])
    ]
    assert writer.write(pages) == Counts(rows_written=2)
    assert sorted(writer.keys("pull_requests")) == [("AbC",), ("aBc",)]


def test_awkward_strings_round_trip(
    make_writer: Callable[..., RecordWriter], engine: Engine, backend: str
) -> None:
    awkward = 'It\'s a "test" \\ back\\nslash\n\t% %s ?; ☃ 🎉 \\u0041'
    writer = make_writer()
    change = pull(1, title=awkward, labels={awkward: [awkward]}, raw={"body": awkward})
    assert writer.write([page("pull_requests", upserts=[change])]) == Counts(rows_written=1)
    assert writer.write([page("pull_requests", upserts=[change])]) == Counts()
    assert rows(engine, "SELECT title FROM gh_pull_requests") == [(awkward,)]
    stored = rows(engine, "SELECT raw FROM gh_pull_requests")[0][0]
    assert (stored if backend == "postgresql" else json.loads(stored)) == {"body": awkward}
    writer.close()
    if backend == "mysql":  # the pooled connection has its own sql_mode back
        from highmark.db import get_engine

        with get_engine(writer.connection.url, "target").connect() as conn:
            mode = conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar_one()
        assert "NO_BACKSLASH_ESCAPES" not in mode
    assert writer.write([page("pull_requests", upserts=[change])]) == Counts()


def test_timestamps_round_trip_as_aware_utc(
    make_writer: Callable[..., RecordWriter], engine: Engine, backend: str
) -> None:
    writer = make_writer()
    berlin = timezone(timedelta(hours=2))
    writer.write([page("pull_requests", upserts=[pull(1, updated=T0.astimezone(berlin))])])
    stored = rows(engine, "SELECT updated FROM gh_pull_requests")[0][0]
    if backend == "postgresql":
        assert stored == T0 and stored.utcoffset() == timedelta(0)
    elif backend == "mysql":
        assert stored == T0.replace(tzinfo=None)  # UTC wall time
    else:
        assert stored == "2024-03-01 12:00:00.123456"
    # The same instant as ISO text, with Z or with an offset, is no change.
    for same in ["2024-03-01T12:00:00.123456Z", "2024-03-01T14:00:00.123456+02:00"]:
        assert writer.write([page("pull_requests", upserts=[pull(1, updated=same)])]) == Counts()
    assert writer.write(
        [page("pull_requests", upserts=[pull(1, updated="2024-03-01T12:00:01Z")])]
    ) == Counts(rows_updated=1)
    with pytest.raises(DestinationError, match="updated: timestamp without a time zone"):
        writer.write([page("pull_requests", upserts=[pull(1, updated=datetime(2024, 3, 2))])])


def test_naive_timestamps_are_wall_time_in_the_connection_zone(
    connection: ResolvedConnection, engine: Engine, backend: str
) -> None:
    zoned = ResolvedConnection(connection.name, connection.url, "America/New_York")
    with RecordWriter(zoned, "ny_", [PULLS]) as writer:
        assert writer.write([page("pull_requests", upserts=[pull(1)])]) == Counts(rows_written=1)
        assert writer.write([page("pull_requests", upserts=[pull(1)])]) == Counts()
    stored = rows(engine, "SELECT updated FROM ny_pull_requests")[0][0]
    if backend == "postgresql":
        assert stored == T0  # timestamptz: an instant
    elif backend == "mysql":
        assert stored == datetime(2024, 3, 1, 7, 0, 0, 123456)  # as the SQL path writes it
    else:
        assert stored == "2024-03-01 07:00:00.123456"


def test_version_guard_keeps_the_newer_row(
    make_writer: Callable[..., RecordWriter], engine: Engine
) -> None:
    writer = make_writer()
    later = T0 + timedelta(minutes=5)
    assert writer.write([page("pull_requests", upserts=[pull(1, updated=later, title="new")])]) == (
        Counts(rows_written=1)
    )
    stale = pull(1, updated=T0, title="old")
    assert writer.write([page("pull_requests", upserts=[stale])]) == Counts()
    assert rows(engine, "SELECT title FROM gh_pull_requests") == [("new",)]
    same_version = pull(1, updated=later, title="edited")
    assert writer.write([page("pull_requests", upserts=[same_version])]) == Counts(rows_updated=1)
    # In one page, an older copy given after a newer one loses.
    newest = pull(1, updated=later + timedelta(minutes=1), title="newest")
    assert writer.write([page("pull_requests", upserts=[newest, stale])]) == Counts(rows_updated=1)
    assert rows(engine, "SELECT title FROM gh_pull_requests") == [("newest",)]


# ---------------------------------------------------------------------------- deletions


def test_children_are_replaced_per_parent(
    make_writer: Callable[..., RecordWriter], engine: Engine
) -> None:
    writer = make_writer()
    before = [commit("p1", sha) for sha in "abc"] + [commit("p2", "a"), commit("p2", "z")]
    assert writer.write([page("commits", upserts=before, replace_children_of=["p1", "p2"])]) == (
        Counts(rows_written=5)
    )
    # A force-push to p1 drops b and c and adds d; p2 is not part of the page.
    after = [commit("p1", "a"), commit("p1", "d")]
    force_push = [page("commits", upserts=after, replace_children_of=["p1"])]
    assert writer.write(force_push) == Counts(rows_written=1, rows_deleted=2)
    assert writer.write(force_push) == Counts()
    assert sorted(writer.keys("commits")) == [("p1", "a"), ("p1", "d"), ("p2", "a"), ("p2", "z")]
    assert sorted(writer.keys("commits", {"pull_request_id": "p2"})) == [("p2", "a"), ("p2", "z")]
    assert writer.write([page("commits", deletes=[("p1", "d"), ("p9", "d")])]) == Counts(
        rows_deleted=1
    )
    assert writer.write([page("commits", upserts=[commit("p1", "d")])]) == Counts(rows_written=1)
    # A parent with no children left.
    assert writer.write([page("commits", replace_children_of=["p2"])]) == Counts(rows_deleted=2)
    assert rows(engine, "SELECT COUNT(*) FROM gh_commits") == [(2,)]


STAMPED = Entity(
    "comments",
    (
        Field("id", FieldType.TEXT),
        Field("pull_request_id", FieldType.TEXT, nullable=False),
        Field("body", FieldType.TEXT),
        Field("synced_run_id", FieldType.INTEGER),
    ),
    parent="pull_request_id",
    stamp="synced_run_id",
)


def comment(i: int, run: int, body: str = "ok") -> dict[str, Any]:
    return {"id": f"c{i}", "pull_request_id": "p1", "body": body, "synced_run_id": run, "raw": {}}


def test_children_read_over_several_pages_are_replaced_by_stamp(
    make_writer: Callable[..., RecordWriter], engine: Engine
) -> None:
    writer = make_writer([STAMPED])
    first = [comment(i, 1) for i in range(6)]
    assert writer.write([page("comments", upserts=first[:3])]) == Counts(rows_written=3)
    assert writer.write(
        [page("comments", upserts=first[3:], replace_children_of=["p1"], stamp=1)]
    ) == Counts(rows_written=3)
    # Sync 2 reads the comments again over two pages: c1 and c4 were deleted, c2 edited. The
    # first page re-stamps rows without counting them; the last replaces the child set.
    again = [comment(0, 2), comment(2, 2, "edited"), comment(3, 2)]
    assert writer.write([page("comments", upserts=again)]) == Counts(rows_updated=1)
    assert writer.write(
        [page("comments", upserts=[comment(5, 2)], replace_children_of=["p1"], stamp=2)]
    ) == Counts(rows_deleted=2)
    assert sorted(writer.keys("comments")) == [("c0",), ("c2",), ("c3",), ("c5",)]
    assert rows(engine, "SELECT DISTINCT synced_run_id FROM gh_comments") == [(2,)]
    with pytest.raises(ValueError, match="no stamp"):
        make_writer([COMMITS]).write([page("commits", stamp=3)])


def test_deletes_remove_rows(make_writer: Callable[..., RecordWriter]) -> None:
    writer = make_writer()
    writer.write([page("reviews", upserts=[_review(1), _review(2)])])
    gone = [page("reviews", deletes=[(1,), (1,), (99,)])]
    assert writer.write(gone) == Counts(rows_deleted=1)
    assert writer.write(gone) == Counts()
    assert list(writer.keys("reviews")) == [(2,)]
    assert writer.write([page("reviews", upserts=[_review(1)])]) == Counts(rows_written=1)


def test_mark_mode_marks_and_resurrects(
    make_writer: Callable[..., RecordWriter], engine: Engine, backend: str
) -> None:
    writer = make_writer(deletes="mark")
    writer.write(
        [
            page("reviews", upserts=[_review(1), _review(2), _review(3, pr="p2")]),
            page("commits", upserts=[commit("p1", "a"), commit("p1", "b")]),
        ]
    )
    removal = [
        page("reviews", deletes=[(1,)]),
        page("commits", upserts=[commit("p1", "a")], replace_children_of=["p1"]),
    ]
    assert writer.write(removal) == Counts(rows_deleted=2)
    assert writer.write(removal) == Counts()
    assert rows(engine, "SELECT COUNT(*) FROM gh_reviews WHERE deleted_at IS NOT NULL") == [(1,)]
    assert sorted(writer.keys("reviews")) == [(2,), (3,)]
    assert sorted(writer.keys("reviews", {"pull_request_id": "p1"})) == [(2,)]
    assert list(writer.keys("commits")) == [("p1", "a")]
    # Upserted again, a marked row comes back: an update, deleted_at cleared.
    back = [page("reviews", upserts=[_review(1)]), page("commits", upserts=[commit("p1", "b")])]
    assert writer.write(back) == Counts(rows_updated=2)
    assert writer.write(back) == Counts()
    assert rows(engine, "SELECT COUNT(*) FROM gh_reviews WHERE deleted_at IS NOT NULL") == [(0,)]
    assert sorted(writer.keys("reviews")) == [(1,), (2,), (3,)]


def _review(i: int, pr: str = "p1") -> dict[str, Any]:
    return {"id": i, "pull_request_id": pr, "state": "APPROVED", "raw": {"id": i}}


# ---------------------------------------------------------------------------- failures


def test_a_failed_write_leaves_nothing_written(
    make_writer: Callable[..., RecordWriter], engine: Engine
) -> None:
    make_writer().prepare()  # gh_pull_requests.number is NOT NULL
    loose = Entity(
        "pull_requests",
        tuple(Field(f.name, f.type) for f in PULLS.fields),
        version="updated",
    )
    writer = make_writer([COMMITS, loose])
    pages = [
        page("commits", upserts=[commit("p1", "a"), commit("p1", "b")]),
        page("pull_requests", upserts=[pull(1), pull(2, number=None)]),
    ]
    with pytest.raises(DestinationError) as caught:
        writer.write(pages)
    assert not caught.value.retryable
    assert str(caught.value).startswith("cannot write gh_pull_requests on dw: ")
    assert rows(engine, "SELECT COUNT(*) FROM gh_commits") == [(0,)]
    assert rows(engine, "SELECT COUNT(*) FROM gh_pull_requests") == [(0,)]
    pages[1].upserts[1]["number"] = 2
    assert writer.write(pages) == Counts(rows_written=4)  # the writer is usable again


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"number": "7"}, "number: expected an integer, got str"),
        ({"number": None}, "number: None, but the field cannot be null"),
        ({"draft": 1}, "draft: expected a boolean, got int"),
        ({"updated": "yesterday"}, "updated: Invalid isoformat string"),
        ({"bogus": 1}, "unknown bogus"),
        ({"raw": {"x": float("nan")}}, "raw: not JSON"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(
    make_writer: Callable[..., RecordWriter], engine: Engine, change: dict[str, Any], error: str
) -> None:
    writer = make_writer()
    pages = [
        page("commits", upserts=[commit("p", "a")]),
        page("pull_requests", upserts=[pull(1, **change)]),
    ]
    with pytest.raises(DestinationError, match=error) as caught:
        writer.write(pages)
    assert "upsert #0 of pull_requests" in str(caught.value) and not caught.value.retryable
    assert rows(engine, "SELECT COUNT(*) FROM gh_commits") == [(0,)]
    missing = pull(1)
    del missing["title"]
    with pytest.raises(DestinationError, match="missing title"):
        writer.write([page("pull_requests", upserts=[missing])])


def test_pages_must_fit_their_entity(make_writer: Callable[..., RecordWriter]) -> None:
    writer = make_writer()
    with pytest.raises(ValueError, match="unknown entity 'issues'"):
        writer.write([page("issues", deletes=[("x",)])])
    with pytest.raises(ValueError, match="entity pull_requests has no parent"):
        writer.write([page("pull_requests", replace_children_of=["x"])])
    with pytest.raises(DestinationError, match=r"a key to delete: .* is not a tuple of 2"):
        writer.write([page("commits", deletes=[("p1",)])])
    with pytest.raises(ValueError, match="entity reviews has no field 'bogus'"):
        list(writer.keys("reviews", {"bogus": 1}))


def test_prefix_must_be_an_identifier(connection: ResolvedConnection) -> None:
    for bad in ["gh-", "gh; drop", "a.b.c", '"x"']:
        with pytest.raises(ConfigError, match="is not an identifier prefix"):
            RecordWriter(connection, bad, ALL)
    with pytest.raises(ValueError, match="key column 'id' must be a TEXT or INTEGER field"):
        Entity("x", (Field("id", FieldType.JSON),))


def test_schema_qualified_prefix(
    make_writer: Callable[..., RecordWriter], backend: str, db_url: str
) -> None:
    schema = {"sqlite": "main", "postgresql": "public"}.get(backend) or db_url.rsplit("/", 1)[1]
    writer = make_writer([REVIEWS], prefix=f"{schema}.api_")
    assert writer.write([page("reviews", upserts=[_review(1)])]) == Counts(rows_written=1)
    assert writer.table_name("reviews") == f"{schema}.api_reviews"
    assert list(writer.keys("reviews")) == [(1,)]


def test_connection_errors_name_no_secret(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/missing/dir/x.db"
    elif backend == "postgresql":
        url = "postgresql://postgres:s3cret-pw@127.0.0.1:5432/hm_no_such_database"
    else:
        url = "mysql://root:s3cret-pw@127.0.0.1:3306/hm_no_such_database"
    connection = ResolvedConnection("dw", normalize_url(url, tmp_path), "UTC")
    with RecordWriter(connection, "gh_", ALL) as writer, pytest.raises(DestinationError) as caught:
        writer.prepare()
    assert "s3cret-pw" not in str(caught.value)
    assert str(caught.value).startswith("cannot connect to dw: ")
