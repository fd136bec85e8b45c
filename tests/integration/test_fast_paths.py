"""The fast paths of highmark/destinations/ranges.py write exactly what the row path writes.

Each test loads one source twice — through the fast path, and through the row path (the fast
path turned off) — into two targets, first load and then a delta (updates, inserts, soft
deletes), and compares the targets value for value: SQLite → SQLite inside the engine (ATTACH,
two files, time zones that differ), SQLite → PostgreSQL through COPY and → MariaDB through
LOAD DATA LOCAL, PostgreSQL → PostgreSQL through COPY, PostgreSQL → MariaDB
through LOAD DATA LOCAL and PostgreSQL → SQLite through a server cursor (every kind of text,
NULLs, time zones, decimals, booleans, JSON), MariaDB → MariaDB inside the server, MariaDB →
PostgreSQL and SQLite through an unbuffered cursor. Naive wall times that a daylight-saving
change skips or repeats are among the values: every path reads them as the same instant. A value the
target refuses on the fast path sends its batch down the row path, which names it; a target
server can never ask highmark for a local file; parallel first loads use the fast paths.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from highmark import Project, infinity
from highmark import db as highmark_db
from highmark.config.common import normalize_url
from highmark.destinations import (
    from_mariadb,
    mariadb_from_sqlite,
    mariadb_load,
    mariadb_server,
    postgres_copy,
    postgres_from_sqlite,
    ranges,
    sqlite_attach,
    sqlite_from_postgres,
)
from highmark.destinations.rows import RowLoader
from highmark.models import RunStatus
from tests.helpers import create_orders, seed_orders, snapshot

BATCH = 7


def _job(source: str, target: str, table: str, **options: Any) -> dict[str, Any]:
    return {
        "load_type": "incremental",
        "source": {"connection": source, "table": "things"},
        "target": {"connection": target, "table": table},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        "soft_delete": {"column": "deleted_at", "mode": "mark"},
        "batch_size": BATCH,
        **options,
    }


class Spy:
    """Counts the batches a fast path loaded (calls of ``owner.name``: a fast path's ``load``,
    or PostgreSQL → PostgreSQL's ``copy_range``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str = "load") -> None:
        self.loaded = 0
        original = getattr(owner, name)

        def load(*args: Any, **kwargs: Any) -> int:
            self.loaded += 1
            return int(original(*args, **kwargs))

        monkeypatch.setattr(owner, name, load)


def _run_both(project: Project, spy: Spy, fast_job: str, row_job: str) -> None:
    before = spy.loaded
    fast = project.run(fast_job)
    assert fast.run_status is RunStatus.SUCCESS, fast.error_message
    assert spy.loaded > before, (
        f"the fast path was not used ({fast.rows_read} rows read; notes: {fast.notes})"
    )
    original, copies = ranges.range_loader, RowLoader.takes_copy_from
    ranges.range_loader = lambda *args: None  # type: ignore[assignment]
    RowLoader.takes_copy_from = lambda self, dialect: False  # type: ignore[method-assign]
    try:
        rows = project.run(row_job)
    finally:
        ranges.range_loader, RowLoader.takes_copy_from = original, copies  # type: ignore[method-assign]
    assert rows.run_status is RunStatus.SUCCESS, rows.error_message
    assert (fast.rows_read, fast.rows_written, fast.rows_updated, fast.rows_deleted) == (
        rows.rows_read,
        rows.rows_written,
        rows.rows_updated,
        rows.rows_deleted,
    )


# ---------------------------------------------------------------------------- SQLite → SQLite

SQLITE_THINGS = (
    "CREATE TABLE things (id INTEGER PRIMARY KEY, n BIGINT, price NUMERIC(12,2), ratio REAL, "
    "label TEXT, flag BOOLEAN, born DATE, payload JSON, data BLOB, seen_at TIMESTAMP, "
    "updated_at TIMESTAMP, deleted_at TIMESTAMP)"
)
# Timestamps as applications write them in SQLite: the row path's form and others.
SEEN = [
    "2024-03-01 10:00:00.000000",
    "2024-03-01T10:00:00Z",
    "2024-03-01 10:00:00",
    "2024-03-01 12:00:00.5+02:00",
    None,
    1709287200,
    "2024-03-01 10:00:00.123",
    "2024-03-01 10:00:00.654321",  # the row path's form, read as it is
    "2024-03-01 10:00:00.12345Z",  # its length and separators, but a zone: converted
    "2024-03-01T10:00:00.123456",  # its length, another separator: converted
    "2024-10-27 02:30:00",  # repeated by Paris's fall-back: the later instant on every path
    "2024-03-31 02:30:00.000000",  # skipped by Paris's spring-forward
]
LABELS = ["plain", "quote ' and \" comma, tab\tnewline\nend", "", "NULL", "ünïcødé ✓", None, 42]


def _sqlite_row(i: int, updated: str, *, blob: bool = True) -> tuple[Any, ...]:
    row = (
        i,
        None if i % 5 == 0 else i * 1000,
        None if i % 6 == 0 else f"{i}.{i % 100:02d}",
        i / 7,
        LABELS[i % len(LABELS)],
        i % 2 if i % 9 else None,
        f"2024-02-{1 + i % 28:02d}" if i % 4 else None,
        json.dumps({"k": i, "list": [1, 2]}) if i % 3 else None,
        bytes([i % 256, 0, 255]) if i % 8 else None,
        SEEN[i % len(SEEN)],
        updated,
        None,
    )
    return row if blob else row[:8] + row[9:]


def _seed_sqlite(path: Path, rows: int, *, blob: bool = True) -> None:
    conn = sqlite3.connect(path)
    conn.execute(SQLITE_THINGS if blob else SQLITE_THINGS.replace(", data BLOB", ""))
    conn.executemany(
        f"INSERT INTO things VALUES ({', '.join('?' * (12 if blob else 11))})",
        [
            _sqlite_row(i, f"2024-01-01 00:00:{i // 3:02d}.000000", blob=blob)
            for i in range(1, rows + 1)
        ],
    )
    conn.commit()
    conn.close()


def _sqlite_delta(path: Path, rows: int, *, blob: bool = True) -> None:
    conn = sqlite3.connect(path)
    later = "2024-01-02 00:00:00.000000"
    conn.execute(
        "UPDATE things SET label = 'changed', price = 1.5, updated_at = ? WHERE id % 4 = 1",
        (later,),
    )
    conn.execute(
        "UPDATE things SET deleted_at = ?, updated_at = ? WHERE id % 10 = 2", (later, later)
    )
    conn.executemany(
        f"INSERT INTO things VALUES ({', '.join('?' * (12 if blob else 11))})",
        [_sqlite_row(i, later, blob=blob) for i in range(rows + 1, rows + 9)],
    )
    conn.commit()
    conn.close()


def _sqlite_content(path: Path, table: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        typed = ", ".join(f"{c}, typeof({c})" for c in columns)
        return conn.execute(f"SELECT {typed} FROM {table} ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("source_zone", ["UTC", "Europe/Paris"])
def test_sqlite_to_sqlite_inside_the_engine_writes_what_the_row_path_writes(
    source_zone: str,
    tmp_path: Path,
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    _seed_sqlite(source, 40)
    spy = Spy(monkeypatch, sqlite_attach.SqliteRanges)
    path = write_project(
        connections={
            "src": {"url": f"sqlite:///{source}", "timezone": source_zone},
            "dst": f"sqlite:///{target}",
        },
        jobs={"fast": _job("src", "dst", "fast"), "rows": _job("src", "dst", "by_rows")},
    )
    project = Project.load(path)

    _run_both(project, spy, "fast", "rows")
    assert _sqlite_content(target, "fast") == _sqlite_content(target, "by_rows")
    assert len(_sqlite_content(target, "fast")) == 40

    _sqlite_delta(source, 40)
    _run_both(project, spy, "fast", "rows")
    assert _sqlite_content(target, "fast") == _sqlite_content(target, "by_rows")
    deleted = [r for r in _sqlite_content(target, "fast") if r[-2] is not None]
    assert len(deleted) == 4  # ids 2, 12, 22, 32: marked deleted


@pytest.mark.parametrize("source_zone", ["UTC", "Europe/Paris"])
def test_sqlite_to_postgresql_through_copy_writes_what_the_row_path_writes(
    source_zone: str,
    pg_url: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "source.db"
    _seed_sqlite(source, 40)
    spy = Spy(monkeypatch, postgres_from_sqlite.SqliteIntoPostgres)
    path = write_project(
        connections={"src": {"url": f"sqlite:///{source}", "timezone": source_zone}, "dst": pg_url},
        jobs={"fast": _job("src", "dst", "fast"), "rows": _job("src", "dst", "by_rows")},
    )
    project = Project.load(path)
    target = engine_for(pg_url)

    _run_both(project, spy, "fast", "rows")
    assert len(_server_content(target, "fast")) == 40
    assert _server_content(target, "fast") == _server_content(target, "by_rows")

    _sqlite_delta(source, 40)
    _run_both(project, spy, "fast", "rows")
    assert _server_content(target, "fast") == _server_content(target, "by_rows")


def test_sqlite_to_mariadb_through_load_data_writes_what_the_row_path_writes(
    mysql_url: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "source.db"
    _seed_sqlite(source, 40, blob=False)  # blobs have no CSV form: the row path takes those
    spy = Spy(monkeypatch, mariadb_from_sqlite.SqliteIntoLoadData)
    path = write_project(
        connections={"src": f"sqlite:///{source}", "dst": mysql_url},
        jobs={"fast": _job("src", "dst", "fast"), "rows": _job("src", "dst", "by_rows")},
    )
    project = Project.load(path)
    target = engine_for(mysql_url)

    _run_both(project, spy, "fast", "rows")
    assert len(_content(target, "fast")) == 40
    assert _content(target, "fast") == _content(target, "by_rows")

    _sqlite_delta(source, 40, blob=False)
    _run_both(project, spy, "fast", "rows")
    assert _content(target, "fast") == _content(target, "by_rows")


# Values of every storage class in the columns copied with no test (integers, floats, blobs):
# SQLite keeps whatever the column's affinity cannot convert.
ODD = [7, "abc", 2.5, b"\x01\x00", None, 2**62, 1e20, "1.5", "", -0.0]


def test_the_untested_families_pass_every_sqlite_value_unchanged_through_the_row_path() -> None:
    # Why sqlite_attach copies these columns with no test: the row path's reader and its SQLite
    # writer leave every value sqlite3 can hand them (int, float, str, bytes) as it is.
    from zoneinfo import ZoneInfo

    from sqlalchemy.types import NullType

    from highmark.sqltypes import ColumnInfo, read_converter, write_converter

    utc = ZoneInfo("UTC")
    for family in sqlite_attach._IDENTICAL:
        column = ColumnInfo("c", NullType(), True, family, "sqlite")
        convert = ranges.row_path_converter(
            read_converter(column, utc), write_converter(column, "sqlite", utc)
        )
        for value in ODD:
            assert type(convert(value)) is type(value) and convert(value) == value, (family, value)


def test_sqlite_to_sqlite_copies_odd_values_of_untested_columns_as_the_row_path_does(
    tmp_path: Path, write_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    conn = sqlite3.connect(source)
    conn.execute(
        "CREATE TABLE things (id INTEGER PRIMARY KEY, n BIGINT, ratio REAL, data BLOB, "
        "updated_at TIMESTAMP, deleted_at TIMESTAMP)"
    )

    def rows(first: int, updated: str) -> list[tuple[Any, ...]]:
        return [
            (i, ODD[i % len(ODD)], ODD[(i + 3) % len(ODD)], ODD[(i + 6) % len(ODD)], updated, None)
            for i in range(first, first + 20)
        ]

    conn.executemany("INSERT INTO things VALUES (?, ?, ?, ?, ?, ?)", rows(1, "2024-01-01 00:00:00"))
    conn.commit()
    spy = Spy(monkeypatch, sqlite_attach.SqliteRanges)
    path = write_project(
        connections={"src": f"sqlite:///{source}", "dst": f"sqlite:///{target}"},
        jobs={"fast": _job("src", "dst", "fast"), "rows": _job("src", "dst", "by_rows")},
    )
    project = Project.load(path)

    _run_both(project, spy, "fast", "rows")
    assert len(_sqlite_content(target, "fast")) == 20
    assert _sqlite_content(target, "fast") == _sqlite_content(target, "by_rows")
    kinds = {r[3] for r in _sqlite_content(target, "fast")}  # n's storage classes
    assert kinds == {"integer", "text", "real", "blob", "null"}

    # A delta (staged, then merged) of the same odd values, shifted.
    conn.executemany("INSERT OR REPLACE INTO things VALUES (?, ?, ?, ?, ?, ?)",
                     rows(11, "2024-01-02 00:00:00")[::-1])  # fmt: skip
    conn.commit()
    conn.close()
    _run_both(project, spy, "fast", "rows")
    assert len(_sqlite_content(target, "fast")) == 30
    assert _sqlite_content(target, "fast") == _sqlite_content(target, "by_rows")


def _seed_timestamp_texts(path: Path, texts: list[str], count: int) -> None:
    """A SQLite table ``things`` of ``count`` rows whose ``seen_at`` cycles through ``texts``."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, seen_at TIMESTAMP, "
                 "updated_at TIMESTAMP, deleted_at TIMESTAMP)")  # fmt: skip
    conn.executemany(
        "INSERT INTO things VALUES (?, ?, ?, NULL)",
        [
            (i, texts[i % len(texts)], f"2024-01-01 00:00:{i:02d}.000000")
            for i in range(1, count + 1)
        ],
    )
    conn.commit()
    conn.close()


def _quarantining_project(
    write_project: Callable[..., Path], source: Path, dst_url: str
) -> Project:
    """Jobs ``fast`` and ``rows`` from ``source`` into ``dst_url``, bad rows quarantined, one row
    a range: a range with a value the converter refuses goes through the row path whole, which
    would hide a value the fast path copied in the same range."""
    quarantine = {"on_bad_rows": "quarantine", "batch_size": 1}
    return Project.load(
        write_project(
            connections={"src": f"sqlite:///{source}", "dst": dst_url},
            jobs={
                "fast": _job("src", "dst", "fast", **quarantine),
                "rows": _job("src", "dst", "by_rows", **quarantine),
            },
        )
    )


def _rejected_ids(project: Project, job: str) -> list[Any]:
    return sorted(r.source_record_id for r in project.store.rejected_rows(job))


def test_sqlite_to_sqlite_refuses_the_timestamps_the_row_path_refuses(
    tmp_path: Path, write_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Texts of the canonical length and shape that are no timestamp: the engine's test sends
    # them to the row path's converter, which refuses them; quarantined by both paths alike.
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    odd = [
        "2024-13-01 10:00:00.000000",  # month 13
        "2024-03-01 25:00:00.000000",  # hour 25
        "2024-03-01 10:61:00.000000",  # minute 61
        "2024-03-01 10:00:00.1234 Z",
        "2024-03-01 10:00:00.12345 ",  # read by the row path (a trailing space): converted
        "2024-0x-01 10:00:00.000000",
        "2024-03-01 10:00:00.000000",
        "0000-03-01 10:00:00.000000",  # the year 0
    ]
    _seed_timestamp_texts(source, odd, 21)
    spy = Spy(monkeypatch, sqlite_attach.SqliteRanges)
    project = _quarantining_project(write_project, source, f"sqlite:///{target}")

    _run_both(project, spy, "fast", "rows")

    kept = [i for i in range(1, 22) if i % len(odd) in (4, 6)]
    assert [r[0] for r in _sqlite_content(target, "fast")] == kept
    assert _sqlite_content(target, "fast") == _sqlite_content(target, "by_rows")
    assert _rejected_ids(project, "fast") == _rejected_ids(project, "rows")
    assert len(project.store.rejected_rows("fast")) == 21 - len(kept)


def test_a_wall_time_its_zone_moves_past_the_year_9999_is_a_bad_row_named_on_both_paths(
    tmp_path: Path,
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A common "valid until further notice" value, in a zone west of UTC: in UTC it is in the
    # year 10000, which no SQLite text or Python datetime holds. The converter, called from SQL,
    # raised OverflowError, which sqlite3 reports as "string or blob too big": the range was
    # bisected under that false reason. It now goes down the row path, which names the value.
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    _seed_timestamp_texts(source, ["9999-12-31 23:59:59", "2024-03-01 10:00:00.000000"], 6)
    spy = Spy(monkeypatch, sqlite_attach.SqliteRanges)
    quarantine = {"on_bad_rows": "quarantine", "batch_size": 1}
    project = Project.load(
        write_project(
            connections={
                "src": {"url": f"sqlite:///{source}", "timezone": "America/New_York"},
                "dst": f"sqlite:///{target}",
            },
            jobs={
                "fast": _job("src", "dst", "fast", **quarantine),
                "rows": _job("src", "dst", "by_rows", **quarantine),
            },
        )
    )

    with caplog.at_level(logging.INFO):
        _run_both(project, spy, "fast", "rows")

    assert "too big" not in caplog.text
    assert _sqlite_content(target, "fast") == _sqlite_content(target, "by_rows")
    assert [r[0] for r in _sqlite_content(target, "fast")] == [1, 3, 5]
    assert _rejected_ids(project, "fast") == _rejected_ids(project, "rows") == [2, 4, 6]
    errors = {r.error_message for r in project.store.rejected_rows("fast")}
    assert all("9999-12-31 23:59:59" in e and "out of range" in e for e in errors), errors


# Timestamp texts that PostgreSQL or MariaDB would read but the row path refuses (or reads
# otherwise), and forms both read alike.
ODD_TIMESTAMPS = [
    "now",  # PostgreSQL: the time of the COPY
    "epoch",
    "Jan 8 2024 10:00",
    "01/08/2024",  # by DateStyle
    "2024-03-01 10:00:00 PST",
    "2024-03-01 24:00:00.000000",  # PostgreSQL: the next day
    "2024-03-01 23:59:60.000000",  # PostgreSQL: the next minute
    "2024-03-01 10:00:00.1234+1",  # PostgreSQL: a zone of +01
    "0000-03-01 10:00:00.000000",  # MariaDB stores the year 0
    "2024-02-30 10:00:00.000000",
    "2024-03-01 10:00:00.000000",  # the row path's form
    "2024-03-01 10:00:00",  # SQLite's CURRENT_TIMESTAMP
    "2024-03-01T10:00:00Z",  # read by both, converted first
    "2024-03-01 10",  # the row path reads it, PostgreSQL does not: the range goes as rows
    "2024-03-01 10:00:00.123",  # SQLite's strftime('%Y-%m-%d %H:%M:%f')
    "2024-03-01T10:00:00.5+02:00",
    "2024-03-01 10:00:00.1234567",  # PostgreSQL rounds a seventh digit, Python truncates it
]


@pytest.mark.parametrize("target_kind", ["postgresql", "mysql"])
def test_sqlite_to_servers_refuses_the_timestamps_the_row_path_refuses(
    target_kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "source.db"
    count = 2 * len(ODD_TIMESTAMPS)
    _seed_timestamp_texts(source, ODD_TIMESTAMPS, count)
    dst_url = str(request.getfixturevalue("pg_url" if target_kind == "postgresql" else "mysql_url"))
    loader = (
        postgres_from_sqlite.SqliteIntoPostgres
        if target_kind == "postgresql"
        else mariadb_from_sqlite.SqliteIntoLoadData
    )
    spy = Spy(monkeypatch, loader)
    project = _quarantining_project(write_project, source, dst_url)
    target = engine_for(dst_url)

    _run_both(project, spy, "fast", "rows")

    assert _server_content(target, "fast") == _server_content(target, "by_rows")
    kept = [r[0] for r in _server_content(target, "fast")]
    assert kept == [i for i in range(1, count + 1) if i % len(ODD_TIMESTAMPS) >= 10]
    fast = _rejected_ids(project, "fast")
    assert fast == _rejected_ids(project, "rows")
    assert len(fast) == count - len(kept)


def test_sqlite_in_one_file_moves_rows_inside_the_engine(
    tmp_path: Path, write_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data.db"
    _seed_sqlite(data, 30)
    spy = Spy(monkeypatch, sqlite_attach.SqliteRanges)
    url = f"sqlite:///{data}"
    path = write_project(
        connections={"db": url},
        jobs={"fast": _job("db", "db", "fast"), "rows": _job("db", "db", "by_rows")},
    )
    project = Project.load(path)
    _run_both(project, spy, "fast", "rows")
    assert _sqlite_content(data, "fast") == _sqlite_content(data, "by_rows")


def test_each_range_of_a_sqlite_source_reads_from_where_the_one_before_ended(
    tmp_path: Path, write_project: Callable[..., Path]
) -> None:
    """Past a window's first range, the range before bounds the next from below, as one row
    value, and the window's low mark (implied by it) is left out: fewer terms tested on every
    row, and no second start for SQLite's index scan to choose (with literal values, it chose
    the low mark's and read each range from the window's start)."""
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    _seed_sqlite(source, 40)
    path = write_project(
        connections={"src": f"sqlite:///{source}", "dst": f"sqlite:///{target}"},
        jobs={"fast": _job("src", "dst", "fast")},
    )
    project = Project.load(path)
    assert project.run("fast").run_status is RunStatus.SUCCESS
    low = "2024-01-01 00:00:13.000000"  # the first run's mark: the greatest seeded updated_at
    _sqlite_delta(source, 40)
    statements: list[str] = []

    def traced(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(statements.append)

    event.listen(Engine, "connect", traced)
    try:
        highmark_db.dispose_all()  # connections made from here on are traced
        run = project.run("fast")
    finally:
        event.remove(Engine, "connect", traced)
        highmark_db.dispose_all()  # and no traced connection outlives the test
    assert run.run_status is RunStatus.SUCCESS, run.error_message
    reads = [s for s in statements if s.startswith("INSERT INTO") and "hm_source" in s]
    assert len(reads) >= 3, reads  # 22 changed rows, batches of 7
    assert low in reads[0]
    for later in reads[1:]:
        assert low not in later, later
        assert "(things.updated_at, things.id) > (" in later, later


# ---------------------------------------------------------------------------- PostgreSQL → MariaDB

PG_THINGS = (
    "CREATE TABLE things (id bigint PRIMARY KEY, n bigint, price numeric(12,2), ratio "
    "double precision, label text, flag boolean, born date, at_time time, payload jsonb, "
    "ref uuid, local_ts timestamp, seen_at timestamptz, updated_at timestamptz, "
    "deleted_at timestamptz)"
)
PG_LABELS = [
    "plain",
    "quote \" and ' comma, semicolon; tab\tnewline\nreturn\rend",
    "",
    "NULL",
    "back\\slash \\N \\t",
    "form\ffeed vertical\x0btab",
    "ünïcødé ✓ 𝄞",
    None,
]


# Wall times around the daylight-saving changes of the tests' zones: one a change skips or
# repeats stands for two instants, and every path must take the same one.
LOCAL_TIMES = [
    "2024-03-10 02:30:00.5",  # New York: skipped
    "2024-11-03 01:30:00.5",  # New York: repeated
    "2024-03-31 02:30:00.5",  # Paris: skipped
    "2024-10-27 02:30:00.5",  # Paris: repeated
    "2024-03-10 00:30:00.5",
    "2024-07-01 12:00:00",
    "infinity",  # PostgreSQL's: the end of time on every path (highmark/infinity.py)
    "-infinity",
]
# PostgreSQL's infinite timestamps and dates, every 11th and 13th row.
INFINITE = {0: "infinity", 2: "-infinity"}


def _pg_rows(first: int, last: int, updated: str) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "n": None if i % 5 == 0 else -i * 10**12,
            "price": None if i % 6 == 0 else f"{i}.{i % 100:02d}",
            "ratio": i / 7,
            "label": PG_LABELS[i % len(PG_LABELS)],
            "flag": None if i % 9 == 0 else bool(i % 2),
            "born": None if i % 4 == 0 else INFINITE.get(i % 13, f"2024-02-{1 + i % 28:02d}"),
            "at_time": f"{i % 24:02d}:30:15.25",
            "payload": None if i % 3 == 0 else json.dumps({"k": i, "s": 'a,b"c'}),
            "ref": f"00000000-0000-0000-0000-{i:012d}",
            "local_ts": LOCAL_TIMES[i % len(LOCAL_TIMES)],
            "seen_at": None
            if i % 7 == 0
            else INFINITE.get(i % 11, f"2024-03-31 0{i % 4}:30:00.123456+02"),
            "updated": updated,
        }
        for i in range(first, last + 1)
    ]


PG_INSERT = text(
    "INSERT INTO things VALUES (:id, :n, CAST(:price AS numeric), :ratio, :label, :flag, "
    "CAST(:born AS date), CAST(:at_time AS time), CAST(:payload AS jsonb), CAST(:ref AS uuid), "
    "CAST(:local_ts AS timestamp), CAST(:seen_at AS timestamptz), "
    "CAST(:updated AS timestamptz), NULL)"
)


def _server_content(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]


def _content(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    """Every value of ``table`` as stored (on SQLite, with its storage class)."""
    if engine.dialect.name == "sqlite":
        assert engine.url.database is not None
        return _sqlite_content(Path(engine.url.database), table)
    return _server_content(engine, table)


@pytest.mark.parametrize("target_kind", ["postgresql", "mysql", "sqlite"])
def test_postgresql_fast_paths_write_what_the_row_path_writes(
    target_kind: str,
    pg_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = engine_for(pg_url)
    insert = PG_INSERT
    with source.begin() as conn:
        conn.execute(text(PG_THINGS))
        if target_kind == "sqlite":  # SQLite has no time of day type the fast path writes
            conn.execute(text("ALTER TABLE things DROP COLUMN at_time"))
            insert = text(str(PG_INSERT).replace("CAST(:at_time AS time), ", ""))
        conn.execute(insert, _pg_rows(1, 40, "2024-01-01 00:00:00+00"))
    if target_kind == "postgresql":
        dst_url = pg_url
        spy = Spy(monkeypatch, postgres_copy, "copy_range")
    elif target_kind == "mysql":
        dst_url = str(request.getfixturevalue("mysql_url"))
        spy = Spy(monkeypatch, mariadb_load.CopyIntoLoadData)
    else:
        dst_url = f"sqlite:///{tmp_path / 'target.db'}"
        spy = Spy(monkeypatch, sqlite_from_postgres.PostgresIntoSqlite)
    path = write_project(
        connections={
            "src": {"url": pg_url, "timezone": "America/New_York"},
            "dst": {"url": dst_url, "timezone": "Asia/Kolkata"},
        },
        jobs={"fast": _job("src", "dst", "fast"), "rows": _job("src", "dst", "by_rows")},
    )
    project = Project.load(path)
    target = engine_for(dst_url)

    _run_both(project, spy, "fast", "rows")
    assert len(_content(target, "fast")) == 40
    assert _content(target, "fast") == _content(target, "by_rows")
    # Row 11's seen_at and row 13's born are infinity: kept by PostgreSQL, the last instant and
    # day elsewhere; row 2's are -infinity.
    as_text = "CAST({} AS CHAR)" if target_kind == "mysql" else "CAST({} AS text)"
    ends = ["infinity", "infinity", "-infinity", "-infinity"]
    if target_kind != "postgresql":
        ends = [infinity.LAST_INSTANT_TEXT, "9999-12-31"]
        ends += [infinity.FIRST_INSTANT_TEXT, "0001-01-01"]
    with target.connect() as conn:
        found = [
            conn.execute(text(f"SELECT {as_text.format(c)} FROM fast WHERE id = {i}")).scalar()
            for c, i in (("seen_at", 11), ("born", 13), ("seen_at", 2), ("born", 2))
        ]
    assert found == ends

    with source.begin() as conn:
        later = "2024-01-02 00:00:00+00"
        conn.execute(
            text(
                "UPDATE things SET label = 'a,\"b\"', price = 1.5, updated_at = :t WHERE id % 4 = 1"
            ),
            {"t": later},
        )
        conn.execute(
            text("UPDATE things SET deleted_at = :t, updated_at = :t WHERE id % 10 = 2"),
            {"t": later},
        )
        conn.execute(insert, _pg_rows(41, 48, later))
    _run_both(project, spy, "fast", "rows")
    assert _content(target, "fast") == _content(target, "by_rows")
    assert len(_content(target, "fast")) == 48


# ---------------------------------------------------------------------------- MariaDB → MariaDB

MARIA_THINGS = (
    "CREATE TABLE things (id BIGINT PRIMARY KEY, n BIGINT, price DECIMAL(12,2), ratio DOUBLE, "
    "label TEXT, flag BOOLEAN, born DATE, at_time TIME(6), ref CHAR(36), local_ts DATETIME(6), "
    "seen_at TIMESTAMP(6) NULL, updated_at DATETIME(6), deleted_at DATETIME(6))"
)
MARIA_INSERT = text(
    "INSERT INTO things VALUES (:id, :n, :price, :ratio, :label, :flag, :born, :at_time, :ref, "
    ":local_ts, :seen_at, :updated, NULL)"
)


def _maria_rows(first: int, last: int, updated: str) -> list[dict[str, Any]]:
    rows = _pg_rows(first, last, updated)
    for row in rows:
        row.pop("payload")
        # MariaDB has no infinity: its last instant and day instead (a TIMESTAMP ends in 2038).
        seen = row["seen_at"]
        row["seen_at"] = None if seen is None or "infinity" in seen else seen[:-3]
        row["local_ts"] = {"infinity": "9999-12-31 23:59:59.999999", "-infinity": None}.get(
            row["local_ts"], row["local_ts"]
        )
        row["born"] = {"infinity": "9999-12-31", "-infinity": "0001-01-01"}.get(
            row["born"], row["born"]
        )
    return rows


@pytest.mark.parametrize("soft_mode", ["mark", "delete"])
@pytest.mark.parametrize("keys_rise", [True, False])
def test_mariadb_to_mariadb_inside_the_server_writes_what_the_row_path_writes(
    keys_rise: bool,
    soft_mode: str,
    mysql_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = engine_for(mysql_url)
    rows = _maria_rows(1, 40, "2024-01-01 00:00:00")
    if not keys_rise:
        # The primary key falls as the watermark rises: each range's primary-key bound spans
        # rows of other ranges, which its watermark bounds must still leave out.
        for row in rows:
            row["updated"] = f"2024-01-01 00:00:{59 - row['id']:02d}"
    with engine.begin() as conn:
        conn.execute(text(MARIA_THINGS))
        conn.execute(MARIA_INSERT, rows)
        if soft_mode == "delete":  # rows a first load leaves out
            conn.execute(text("UPDATE things SET deleted_at = updated_at WHERE id % 10 = 3"))
    spy = Spy(monkeypatch, mariadb_server.InsertSelectInServer)
    soft = {"column": "deleted_at", "mode": soft_mode}
    path = write_project(
        connections={"db": mysql_url},
        jobs={
            "fast": _job("db", "db", "fast", soft_delete=soft),
            "rows": _job("db", "db", "by_rows", soft_delete=soft),
        },
    )
    project = Project.load(path)

    _run_both(project, spy, "fast", "rows")
    assert len(_server_content(engine, "fast")) == (36 if soft_mode == "delete" else 40)
    assert _server_content(engine, "fast") == _server_content(engine, "by_rows")

    with engine.begin() as conn:
        later = "2024-01-02 00:00:00"
        conn.execute(
            text("UPDATE things SET label = 'x', price = 1.5, updated_at = :t WHERE id % 4 = 1"),
            {"t": later},
        )
        conn.execute(
            text("UPDATE things SET deleted_at = :t, updated_at = :t WHERE id % 10 = 2"),
            {"t": later},
        )
        conn.execute(MARIA_INSERT, _maria_rows(41, 48, later))
    _run_both(project, spy, "fast", "rows")
    assert _server_content(engine, "fast") == _server_content(engine, "by_rows")


@pytest.mark.parametrize("soft_mode", ["mark", "delete"])
@pytest.mark.parametrize("keys_rise", [True, False])
@pytest.mark.parametrize(
    ("target_kind", "source_zone"), [("postgresql", "Europe/Paris"), ("sqlite", "UTC")]
)
def test_mariadb_to_postgresql_and_sqlite_fast_paths_write_what_the_row_path_writes(
    target_kind: str,
    source_zone: str,
    keys_rise: bool,
    soft_mode: str,
    mysql_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = engine_for(mysql_url)
    insert = MARIA_INSERT
    with source.begin() as conn:
        conn.execute(text(MARIA_THINGS))
        if target_kind == "sqlite":  # the row path writes times of day in a form of its own
            conn.execute(text("ALTER TABLE things DROP COLUMN at_time"))
            insert = text(str(MARIA_INSERT).replace(":at_time, ", ""))
        rows = _maria_rows(1, 40, "2024-01-01 00:00:00")
        if not keys_rise:
            # Each range is also bounded by its least and greatest primary key: here those
            # bounds span rows of other ranges, which its watermark bounds must still leave out.
            for row in rows:
                row["updated"] = f"2024-01-01 00:00:{59 - row['id']:02d}"
        conn.execute(insert, rows)
        if soft_mode == "delete":  # rows a first load leaves out
            conn.execute(text("UPDATE things SET deleted_at = updated_at WHERE id % 10 = 3"))
    if target_kind == "postgresql":
        dst_url = str(request.getfixturevalue("pg_url"))
        spy = Spy(monkeypatch, from_mariadb.MariadbIntoPostgres)
    else:
        dst_url = f"sqlite:///{tmp_path / 'target.db'}"
        spy = Spy(monkeypatch, from_mariadb.MariadbIntoSqlite)
    # mode delete: a first load leaves soft-deleted rows out, and each range's least and
    # greatest primary key are then read under its bounds on its keys alone (the index's).
    soft = {"column": "deleted_at", "mode": soft_mode}
    path = write_project(
        connections={"src": {"url": mysql_url, "timezone": source_zone}, "dst": dst_url},
        jobs={
            "fast": _job("src", "dst", "fast", soft_delete=soft),
            "rows": _job("src", "dst", "by_rows", soft_delete=soft),
        },
    )
    project = Project.load(path)
    target = engine_for(dst_url)

    _run_both(project, spy, "fast", "rows")
    assert len(_content(target, "fast")) == (36 if soft_mode == "delete" else 40)
    assert _content(target, "fast") == _content(target, "by_rows")

    with source.begin() as conn:
        later = "2024-01-02 00:00:00"
        conn.execute(
            text("UPDATE things SET label = 'x', price = 1.5, updated_at = :t WHERE id % 4 = 1"),
            {"t": later},
        )
        conn.execute(
            text("UPDATE things SET deleted_at = :t, updated_at = :t WHERE id % 10 = 2"),
            {"t": later},
        )
        conn.execute(insert, _maria_rows(41, 48, later))
    _run_both(project, spy, "fast", "rows")
    assert _content(target, "fast") == _content(target, "by_rows")


def test_a_value_the_target_refuses_sends_its_batch_down_the_row_path(
    pg_url: str,
    mysql_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    seed_orders(engine_for(pg_url), 20, per_timestamp=1)
    target = engine_for(mysql_url)
    create_orders(target)
    with target.begin() as conn:
        conn.execute(text("ALTER TABLE orders ADD CONSTRAINT no_13 CHECK (id <> 13)"))
    job = {
        **_job("src", "dst", "orders", batch_size=5),
        "source": {"connection": "src", "table": "orders"},
    }
    path = write_project(connections={"src": pg_url, "dst": mysql_url}, jobs={"sync": job})

    # LOAD DATA LOCAL would skip id 13 with a warning: the batch is written again as rows,
    # where the check refuses id 13 alone (bisection), which fails the run and is named.
    failed = Project.load(path).run("sync")

    assert failed.run_status is RunStatus.FAILED
    assert "no_13" in (failed.error_message or "")
    with target.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM orders ORDER BY id"))]
    assert ids == [i for i in range(1, 16) if i != 13]  # its batch's other rows went in


def test_a_target_server_cannot_ask_for_a_local_file(mysql_url: str) -> None:
    engine = highmark_db.get_engine(normalize_url(mysql_url, Path.cwd()), "target")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (line TEXT)"))
        with pytest.raises(OperationalError, match="highmark sends none"):
            conn.execute(text("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE notes"))


@pytest.mark.parametrize(
    "pair", ["postgresql-mysql", "mysql-mysql", "mysql-postgresql", "sqlite-sqlite"]
)
def test_parallel_first_loads_on_the_fast_paths(
    pair: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    urls = {
        "sqlite": lambda label: f"sqlite:///{tmp_path / (label + '.db')}",
        "postgresql": lambda _label: str(request.getfixturevalue("pg_url")),
        "mysql": lambda _label: str(request.getfixturevalue("mysql_url")),
    }
    source_kind, target_kind = pair.split("-")
    src_url, dst_url = urls[source_kind]("src"), urls[target_kind]("dst")
    source, target = engine_for(src_url), engine_for(dst_url)
    seed_orders(source, 300, per_timestamp=3)
    job = {
        **_job("src", "dst", "orders_copy", batch_size=20, parallelism=3),
        "source": {"connection": "src", "table": "orders"},
    }
    path = write_project(connections={"src": src_url, "dst": dst_url}, jobs={"sync": job})

    first = Project.load(path).run("sync")

    assert first.run_status is RunStatus.SUCCESS, first.error_message
    assert (first.rows_read, first.rows_written) == (300, 300)
    assert snapshot(target, "orders_copy") == snapshot(source, "orders")
    serial = [note for note in first.notes or [] if "parallelism 3 not used" in note]
    # A SQLite file has one writer: its ranges load one after another, and the run says so.
    assert bool(serial) == (target_kind == "sqlite")
