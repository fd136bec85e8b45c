"""Types across databases: a source on one backend, the target on another.

A missing target is created with mapped types; values round-trip exactly; naive timestamps are read
in the connection's time zone; schema-qualified and case-mixed names work; SQLite timestamps kept as
text in different shapes load without loss or duplicates.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from psycopg.types.json import Json, Jsonb
from sqlalchemy import Connection, inspect, text
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Engine

from highmark import Project, RunRecord, RunStatus
from highmark.sqltypes import local_to_utc
from tests.helpers import BASE_TIME, create_orders, insert_orders, order, snapshot, update_order

PAIRS = [
    ("sqlite", "postgresql"),
    ("postgresql", "mysql"),
    ("mysql", "sqlite"),
    ("postgresql", "sqlite"),
    ("sqlite", "mysql"),
    ("mysql", "postgresql"),
]
PAIR_IDS = [f"{s}-to-{t}" for s, t in PAIRS]


def _url(backend: str, request: pytest.FixtureRequest, tmp_path: Path, label: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / (label + '.db')}"
    return str(request.getfixturevalue("pg_url" if backend == "postgresql" else "mysql_url"))


@contextmanager
def _begin(engine: Engine) -> Iterator[Connection]:
    """A transaction whose session reads and writes MySQL TIMESTAMPs in UTC."""
    with engine.begin() as conn:
        if engine.dialect.name == "mysql":
            conn.execute(text("SET time_zone = '+00:00'"))
        yield conn


def _counts(run: RunRecord) -> tuple[int, int, int, int]:
    return (run.rows_read, run.rows_written, run.rows_updated, run.rows_deleted)


# ---------------------------------------------------------------------------- many types

_DDL = {
    "postgresql": """
        CREATE TABLE kinds (
            id bigint PRIMARY KEY, c_big bigint, c_int integer, c_small smallint,
            c_dec numeric(18, 6), c_dbl double precision, c_bool boolean, c_name varchar(50),
            c_text text, c_date date, c_time time, c_ts timestamptz NOT NULL,
            c_wall timestamp without time zone, c_json json, c_jsonb jsonb, c_bin bytea,
            c_uuid uuid
        )""",
    "mysql": """
        CREATE TABLE kinds (
            id BIGINT PRIMARY KEY, c_big BIGINT, c_int INT, c_small SMALLINT,
            c_dec DECIMAL(18, 6), c_dbl DOUBLE, c_bool BOOLEAN, c_name VARCHAR(50),
            c_text TEXT, c_date DATE, c_time TIME(6), c_ts TIMESTAMP(6) NULL DEFAULT NULL,
            c_wall DATETIME(6), c_json JSON, c_bin BLOB
        )""",
    "sqlite": """
        CREATE TABLE kinds (
            id BIGINT PRIMARY KEY, c_big BIGINT, c_int INTEGER, c_small SMALLINT,
            c_dec NUMERIC(18, 6), c_dbl DOUBLE, c_bool BOOLEAN, c_name VARCHAR(50),
            c_text TEXT, c_date DATE, c_time TIME, c_ts DATETIME NOT NULL,
            c_wall TIMESTAMP, c_json JSON, c_bin BLOB
        )""",
}

# How each column is compared once read back: the canonical form of its values.
KINDS = {
    "id": "int",
    "c_big": "int",
    "c_int": "int",
    "c_small": "int",
    "c_dec": "decimal",
    "c_dbl": "float",
    "c_bool": "bool",
    "c_name": "str",
    "c_text": "str",
    "c_date": "date",
    "c_time": "time",
    "c_ts": "timestamp",
    "c_wall": "timestamp",
    "c_json": "json",
    "c_jsonb": "json",
    "c_bin": "bytes",
    "c_uuid": "uuid",
}
POSTGRES_ONLY = {"c_jsonb", "c_uuid"}
DOCUMENT = {"a": [1, 2.5, {"b": None}], "ü": "x", "t": True}

ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "c_big": 9_007_199_254_740_993,  # 2**53 + 1: no float on the way
        "c_int": -2_147_483_648,
        "c_small": -32_768,
        "c_dec": Decimal("123456789.123456"),
        "c_dbl": 0.1,
        "c_bool": True,
        "c_name": "Zoë Ünïcode ✓",
        "c_text": "line 1\nline 2 — 🚀",
        "c_date": date(2024, 2, 29),
        "c_time": time(13, 45, 30, 123456),
        "c_ts": datetime(2024, 3, 10, 7, 30, 0, 654321, tzinfo=UTC),
        "c_wall": datetime(2024, 1, 15, 12, 0, 0, 500000),
        "c_json": DOCUMENT,
        "c_jsonb": DOCUMENT,
        "c_bin": bytes(range(256)),
        "c_uuid": uuid.UUID("6f1c1b9e-2b7a-4c55-9d1e-0a2b3c4d5e6f"),
    },
    {"id": 2, "c_ts": datetime(2024, 3, 10, 7, 30, 1, tzinfo=UTC)},
    {
        "id": 3,
        "c_big": -9_223_372_036_854_775_808,
        "c_int": 2_147_483_647,
        "c_small": 32_767,
        "c_dec": Decimal("-0.000001"),
        "c_dbl": -2.5e-300,
        "c_bool": False,
        "c_name": "",
        "c_text": "  trailing spaces  ",
        "c_date": date(1970, 1, 1),
        "c_time": time(0, 0),
        "c_ts": datetime(2024, 3, 10, 7, 30, 1, tzinfo=UTC),  # ties with row 2
        "c_wall": datetime(2024, 12, 31, 23, 59, 59, 999999),
        "c_json": [],
        "c_jsonb": {},
        "c_bin": b"",
        "c_uuid": uuid.UUID("00000000-0000-0000-0000-000000000000"),
    },
]


def _columns(backend: str) -> list[str]:
    return [c for c in KINDS if backend == "postgresql" or c not in POSTGRES_ONLY]


def _bind(backend: str, column: str, value: Any) -> Any:
    """A value as the test's own driver takes it for ``column`` on ``backend``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if backend == "postgresql" and value.tzinfo is not None:
            return value
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return naive.isoformat(sep=" ") if backend == "sqlite" else naive
    if backend == "postgresql":
        if column == "c_json":
            return Json(value)
        if column == "c_jsonb":
            return Jsonb(value)
        return value
    if isinstance(value, dict | list):
        return json.dumps(value)
    if backend == "sqlite":
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, date | time):
            return value.isoformat()
        if isinstance(value, bool):
            return int(value)
    return value


def _create_kinds(engine: Engine, backend: str) -> None:
    columns = _columns(backend)
    insert = text(
        f"INSERT INTO kinds ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )
    with _begin(engine) as conn:
        conn.execute(text(_DDL[backend]))
        conn.execute(insert, [{c: _bind(backend, c, row.get(c)) for c in columns} for row in ROWS])


def _normal(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "decimal":
        return Decimal(str(value)).quantize(Decimal("0.000001"))
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    if kind == "date":
        return date.fromisoformat(value) if isinstance(value, str) else value
    if kind == "time":
        if isinstance(value, timedelta):
            return (datetime.min + value).time()
        return time.fromisoformat(value) if isinstance(value, str) else value
    if kind == "timestamp":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if kind == "json":
        return json.loads(value) if isinstance(value, str | bytes) else value
    if kind == "bytes":
        return bytes(value)
    if kind == "uuid":
        return str(value).lower()
    return value


def _rows(engine: Engine, columns: list[str], table: str = "kinds") -> list[dict[str, Any]]:
    with _begin(engine) as conn:
        raw = conn.execute(text(f"SELECT {', '.join(columns)} FROM {table} ORDER BY id")).all()
    return [{c: _normal(KINDS[c], v) for c, v in zip(columns, row, strict=True)} for row in raw]


def _expected(columns: list[str]) -> list[dict[str, Any]]:
    return [{c: _normal(KINDS[c], row.get(c)) for c in columns} for row in ROWS]


def _check_created_types(engine: Engine, source: str) -> None:
    dialect = engine.dialect.name
    types = {c["name"]: c["type"] for c in inspect(engine).get_columns("kinds")}
    assert set(types) == set(_columns(source))
    for name in ("c_ts", "c_wall"):
        assert isinstance(types[name], sqltypes.DateTime), (name, types[name])
        if dialect == "postgresql":
            assert types[name].timezone is True, f"{name} is not timestamptz"
        if dialect == "mysql":
            assert isinstance(types[name], mysql.DATETIME)
            assert types[name].fsp == 6, f"{name} drops fractional seconds"
    dec = types["c_dec"]
    assert isinstance(dec, sqltypes.Numeric) and not isinstance(dec, sqltypes.Float)
    assert (dec.precision, dec.scale) == (18, 6)
    assert isinstance(types["c_big"], sqltypes.BigInteger)
    assert isinstance(types["c_small"], sqltypes.SmallInteger)
    assert isinstance(types["c_int"], sqltypes.Integer)
    assert isinstance(types["c_dbl"], sqltypes.Float)
    assert isinstance(types["c_name"], sqltypes.String) and types["c_name"].length == 50
    assert isinstance(types["c_date"], sqltypes.Date)
    assert isinstance(types["c_time"], sqltypes.Time)
    if dialect == "mysql":
        assert getattr(types["c_time"], "fsp", None) == 6, "c_time drops fractional seconds"
    assert isinstance(types["c_bin"], sqltypes._Binary)
    if dialect == "postgresql" and source != "mysql":
        # MySQL's BOOLEAN is TINYINT(1) and MariaDB's JSON is LONGTEXT: they read as what they are.
        assert isinstance(types["c_bool"], sqltypes.Boolean)
        assert isinstance(types["c_json"], postgresql.JSONB)
    if "c_uuid" in types:
        assert isinstance(types["c_uuid"], sqltypes.String | sqltypes.Uuid)


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=PAIR_IDS)
def test_many_types_cross_backend(
    source: str,
    target: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    source_url = _url(source, request, tmp_path, "source")
    target_url = _url(target, request, tmp_path, "target")
    source_engine, target_engine = engine_for(source_url), engine_for(target_url)
    _create_kinds(source_engine, source)
    path = write_project(
        control=f"sqlite:///{tmp_path / 'control.db'}",
        connections={"src": source_url, "dst": target_url},
        jobs={
            "kinds": {
                "load_type": "incremental",
                "source": {"connection": "src", "table": "kinds"},
                "target": {"connection": "dst", "table": "kinds"},
                "primary_key": ["id"],
                "watermark": {"column": "c_ts", "type": "timestamp", "tiebreaker": "id"},
                "batch_size": 2,
            }
        },
    )
    project = Project.load(path)

    first = project.run("kinds")

    assert first.run_status is RunStatus.SUCCESS, first.error_message
    assert _counts(first) == (3, 3, 0, 0)
    _check_created_types(target_engine, source)
    columns = _columns(source)
    assert _rows(source_engine, columns) == _expected(columns)
    assert _rows(target_engine, columns) == _expected(columns)
    mark = project.watermark("kinds")
    assert mark is not None
    assert (mark.last_value_timestamp, mark.last_value_integer) == (ROWS[2]["c_ts"], 3)

    # Nothing new: nothing read. Read everything again: every value compares equal, so the
    # merge finds nothing to update (a value that did not round-trip would count as updated).
    assert _counts(project.run("kinds")) == (0, 0, 0, 0)
    refresh = project.run("kinds", full_refresh=True)
    assert refresh.run_status is RunStatus.SUCCESS, refresh.error_message
    assert _counts(refresh) == (3, 0, 0, 0)
    assert _rows(target_engine, columns) == _expected(columns)


# ---------------------------------------------------------------------------- time zones

_NAIVE_DDL = {
    "postgresql": "CREATE TABLE events (id bigint PRIMARY KEY, at timestamp without time zone)",
    "mysql": "CREATE TABLE events (id BIGINT PRIMARY KEY, at DATETIME(6))",
    "sqlite": "CREATE TABLE events (id BIGINT PRIMARY KEY, at DATETIME)",
}


@pytest.mark.parametrize("source", ["sqlite", "postgresql", "mysql"])
def test_naive_source_timestamps_are_read_in_the_connection_time_zone(
    source: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    source_url = _url(source, request, tmp_path, "source")
    target_url = str(request.getfixturevalue("pg_url"))
    source_engine, target_engine = engine_for(source_url), engine_for(target_url)
    wall = datetime(2024, 1, 15, 12, 0)
    with _begin(source_engine) as conn:
        conn.execute(text(_NAIVE_DDL[source]))
        conn.execute(
            text("INSERT INTO events (id, at) VALUES (1, :at)"), {"at": _bind(source, "at", wall)}
        )
    path = write_project(
        control=f"sqlite:///{tmp_path / 'control.db'}",
        connections={
            "local": {"url": source_url, "timezone": "America/New_York"},
            "utc": source_url,
            "dw": target_url,
        },
        jobs={
            name: {
                "load_type": "incremental",
                "source": {"connection": connection, "table": "events"},
                "target": {"connection": "dw", "table": table},
                "primary_key": ["id"],
                "watermark": {"column": "at", "type": "timestamp"},
            }
            for name, connection, table in (
                ("events_local", "local", "events_local"),
                ("events_utc", "utc", "events_utc"),
            )
        },
    )
    project = Project.load(path)

    for job in ("events_local", "events_utc"):
        run = project.run(job)
        assert run.run_status is RunStatus.SUCCESS, run.error_message

    with target_engine.connect() as conn:
        local = conn.execute(text("SELECT at FROM events_local")).scalar_one()
        utc = conn.execute(text("SELECT at FROM events_utc")).scalar_one()
    assert local == datetime(2024, 1, 15, 17, 0, tzinfo=UTC)
    assert utc == datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    mark = project.watermark("events_local")
    assert mark is not None and mark.last_value_timestamp == local

    # The window is compared in the source's own terms: 12:30 New York is after 17:00 UTC.
    with _begin(source_engine) as conn:
        conn.execute(
            text("INSERT INTO events (id, at) VALUES (2, :at)"),
            {"at": _bind(source, "at", wall + timedelta(minutes=30))},
        )
    run = project.run("events_local")
    assert _counts(run) == (1, 1, 0, 0)
    with target_engine.connect() as conn:
        second = conn.execute(text("SELECT at FROM events_local WHERE id = 2")).scalar_one()
    assert second == datetime(2024, 1, 15, 17, 30, tzinfo=UTC)


# Days a zone's clocks jumped, some of them odd: half-hour daylight saving (Lord Howe), a
# "negative" one (Dublin's winter time), a fall-back with no daylight saving either side
# (Moscow 2014), a whole day skipped (Apia 2011).
CLOCK_CHANGES = [
    ("America/New_York", "2024-03-10"),
    ("America/New_York", "2024-11-03"),
    ("Europe/Paris", "2024-03-31"),
    ("Europe/Paris", "2024-10-27"),
    ("Europe/Dublin", "2024-03-31"),
    ("Europe/Dublin", "2024-10-27"),
    ("Australia/Lord_Howe", "2024-04-07"),
    ("Australia/Lord_Howe", "2024-10-06"),
    ("Europe/Moscow", "2014-10-26"),
    ("Pacific/Apia", "2011-12-29"),
    ("Pacific/Apia", "2011-12-30"),
]


def test_wall_times_a_clock_change_skips_or_repeats_are_read_as_postgresql_reads_them(
    pg_url: str, engine_for: Callable[[str], Engine]
) -> None:
    """The row path's reading of a naive wall time (sqltypes.local_to_utc) is PostgreSQL's
    ``AT TIME ZONE``, which the fast paths use, for every quarter hour of those days."""
    walls = [
        (zone, datetime.fromisoformat(day) + timedelta(minutes=15 * i))
        for zone, day in CLOCK_CHANGES
        for i in range(4 * 24)
    ]
    with engine_for(pg_url).connect() as conn:
        postgres = conn.execute(
            text(
                "SELECT (w AT TIME ZONE z) AT TIME ZONE 'UTC' "
                "FROM unnest(CAST(:zones AS text[]), CAST(:walls AS timestamp[])) "
                "WITH ORDINALITY AS t(z, w, n) ORDER BY n"
            ),
            {"zones": [z for z, _ in walls], "walls": [w for _, w in walls]},
        ).scalars()
        expected = [v.replace(tzinfo=UTC) for v in postgres]
    ours = [local_to_utc(wall, ZoneInfo(zone)) for zone, wall in walls]
    differ = [(z, w, o, e) for (z, w), o, e in zip(walls, ours, expected, strict=True) if o != e]
    assert not differ, differ[:5]


# ---------------------------------------------------------------------------- names


def test_schema_qualified_names_on_postgresql(
    pg_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    engine = engine_for(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA sales"))
        conn.execute(text("CREATE SCHEMA dw"))
    table = create_orders(engine, schema="sales")
    insert_orders(engine, table, [order(i) for i in range(1, 8)])
    common = {"primary_key": ["id"], "batch_size": 3}
    path = write_project(
        control=pg_url,
        connections={"db": pg_url},
        jobs={
            "orders_sync": {
                **common,
                "load_type": "incremental",
                "source": {"connection": "db", "table": "sales.orders"},
                "target": {"connection": "db", "table": "dw.orders"},
                "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
                "soft_delete": {"column": "deleted_at", "mode": "mark"},
            },
            "orders_full": {
                **common,
                "load_type": "full",
                "source": {"connection": "db", "table": "sales.orders"},
                "target": {"connection": "db", "table": "dw.orders_full"},
            },
        },
    )
    project = Project.load(path)

    for job in ("orders_sync", "orders_full"):
        run = project.run(job)
        assert run.run_status is RunStatus.SUCCESS, run.error_message
        assert _counts(run) == (7, 7, 0, 0)

    later = BASE_TIME + timedelta(hours=1)
    update_order(engine, table, 2, amount="42.00", updated_at=later)
    insert_orders(engine, table, [order(8, at=later)])
    assert _counts(project.run("orders_sync")) == (2, 1, 1, 0)
    assert _counts(project.run("orders_full")) == (8, 1, 1, 0)

    source = snapshot(engine, "orders", schema="sales")
    assert snapshot(engine, "orders", schema="dw") == source
    assert snapshot(engine, "orders_full", schema="dw") == source
    names = inspect(engine)
    assert sorted(names.get_table_names(schema="dw")) == ["orders", "orders_full"]
    assert sorted(names.get_table_names(schema="sales")) == ["orders"]
    assert not [t for t in names.get_table_names() if not t.startswith(("etl_", "highmark_"))]


_MIXED_DDL = {
    "postgresql": """CREATE TABLE "CustomerOrders" ("OrderID" bigint PRIMARY KEY,
        "CustomerName" varchar(100), "Amount" numeric(12, 2),
        "UpdatedAt" timestamptz NOT NULL)""",
    "mysql": """CREATE TABLE CustomerOrders (OrderID BIGINT PRIMARY KEY,
        CustomerName VARCHAR(100), Amount DECIMAL(12, 2), UpdatedAt DATETIME(6) NOT NULL)""",
    "sqlite": """CREATE TABLE "CustomerOrders" ("OrderID" BIGINT PRIMARY KEY,
        "CustomerName" VARCHAR(100), "Amount" NUMERIC(12, 2), "UpdatedAt" DATETIME NOT NULL)""",
}
_MIXED_COLUMNS = ["OrderID", "CustomerName", "Amount", "UpdatedAt"]


def _mixed_rows(engine: Engine) -> list[tuple[Any, ...]]:
    preparer = engine.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(c) for c in _MIXED_COLUMNS)
    table = preparer.quote("CustomerOrders")
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {columns} FROM {table} ORDER BY 1")).all()
    return [
        (
            int(r[0]),
            r[1],
            Decimal(str(r[2])).quantize(Decimal("0.01")),
            _normal("timestamp", r[3]),
        )
        for r in rows
    ]


def _insert_mixed(engine: Engine, backend: str, rows: list[tuple[int, str, str, datetime]]) -> None:
    preparer = engine.dialect.identifier_preparer
    columns = ", ".join(preparer.quote(c) for c in _MIXED_COLUMNS)
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {preparer.quote('CustomerOrders')} ({columns}) "
                "VALUES (:i, :name, :amount, :at)"
            ),
            [
                {
                    "i": i,
                    "name": name,
                    "amount": amount if backend == "sqlite" else Decimal(amount),
                    "at": _bind(backend, "at", at),
                }
                for i, name, amount, at in rows
            ],
        )


@pytest.mark.parametrize(("source", "target"), PAIRS[:4], ids=PAIR_IDS[:4])
def test_case_mixed_names(
    source: str,
    target: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    source_url = _url(source, request, tmp_path, "source")
    target_url = _url(target, request, tmp_path, "target")
    source_engine, target_engine = engine_for(source_url), engine_for(target_url)
    with source_engine.begin() as conn:
        conn.execute(text(_MIXED_DDL[source]))
    _insert_mixed(
        source_engine,
        source,
        [
            (i, f"Customer {i}", f"{i}.50", BASE_TIME + timedelta(seconds=i % 3))
            for i in range(1, 8)
        ],
    )
    path = write_project(
        control=f"sqlite:///{tmp_path / 'control.db'}",
        connections={"src": source_url, "dst": target_url},
        jobs={
            "mixed": {
                "load_type": "incremental",
                "source": {"connection": "src", "table": "CustomerOrders"},
                "target": {"connection": "dst", "table": "CustomerOrders"},
                # Written in another case than the columns: names match case-insensitively.
                "primary_key": ["orderid"],
                "watermark": {"column": "updatedat", "type": "timestamp", "tiebreaker": "OrderID"},
                "batch_size": 3,
            }
        },
    )
    project = Project.load(path)

    first = project.run("mixed")
    assert first.run_status is RunStatus.SUCCESS, first.error_message
    assert _counts(first) == (7, 7, 0, 0)
    assert [c["name"] for c in inspect(target_engine).get_columns("CustomerOrders")] == (
        _MIXED_COLUMNS
    )

    later = BASE_TIME + timedelta(hours=1)
    with source_engine.begin() as conn:
        preparer = source_engine.dialect.identifier_preparer
        conn.execute(
            text(
                f"UPDATE {preparer.quote('CustomerOrders')} SET {preparer.quote('Amount')} = 9,"
                f" {preparer.quote('UpdatedAt')} = :at WHERE {preparer.quote('OrderID')} = 3"
            ),
            {"at": _bind(source, "at", later)},
        )
    _insert_mixed(source_engine, source, [(8, "Customer 8", "8.00", later)])
    second = project.run("mixed")
    assert second.run_status is RunStatus.SUCCESS, second.error_message
    assert _counts(second) == (2, 1, 1, 0)
    assert _mixed_rows(target_engine) == _mixed_rows(source_engine)


# ---------------------------------------------------------------------------- SQLite text shapes

SHAPES = {
    # CURRENT_TIMESTAMP's shape: whole seconds, a space, no zone.
    "current_timestamp": lambda t: t.strftime("%Y-%m-%d %H:%M:%S"),
    "iso_z": lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    # strftime('%Y-%m-%d %H:%M:%f', 'now')'s shape: milliseconds.
    "milliseconds": lambda t: t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}",
}
SHAPE_START = {
    "current_timestamp": datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC),
    "iso_z": datetime(2024, 1, 15, 10, 0, 0, 123456, tzinfo=UTC),
    "milliseconds": datetime(2024, 1, 15, 10, 0, 0, 250000, tzinfo=UTC),
}


@pytest.mark.parametrize(
    ("shape", "declared", "target"),
    [
        ("current_timestamp", "TIMESTAMP DEFAULT CURRENT_TIMESTAMP", "sqlite"),
        ("current_timestamp", "TEXT DEFAULT CURRENT_TIMESTAMP", "sqlite"),
        ("current_timestamp", "DATETIME", "postgresql"),
        ("iso_z", "DATETIME", "sqlite"),
        ("iso_z", "TEXT", "sqlite"),
        ("iso_z", "TEXT", "postgresql"),
        ("milliseconds", "DATETIME", "sqlite"),
        ("milliseconds", "TEXT", "sqlite"),
        ("milliseconds", "DATETIME", "postgresql"),
    ],
)
def test_sqlite_text_timestamps_in_every_shape(
    shape: str,
    declared: str,
    target: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
) -> None:
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    target_url = _url(target, request, tmp_path, "target")
    source_engine, target_engine = engine_for(source_url), engine_for(target_url)
    write = SHAPES[shape]
    start = SHAPE_START[shape]
    step = timedelta(seconds=1) if shape == "current_timestamp" else timedelta(milliseconds=1)

    def insert(rows: list[tuple[int, datetime]]) -> None:
        with source_engine.begin() as conn:
            conn.execute(
                text("INSERT INTO events (id, payload, updated_at) VALUES (:i, :p, :at)"),
                [{"i": i, "p": f"event {i}", "at": write(at)} for i, at in rows],
            )

    with source_engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT, updated_at {declared})"
            )
        )
    # Seven rows tie at the first instant, two at the next: batches of 3 cut both ties.
    insert([(i, start) for i in range(1, 8)] + [(8, start + step), (9, start + step)])
    path = write_project(
        control=f"sqlite:///{tmp_path / 'control.db'}",
        connections={"src": source_url, "dst": target_url},
        jobs={
            "events": {
                "load_type": "incremental",
                "source": {"connection": "src", "table": "events"},
                "target": {"connection": "dst", "table": "events_copy"},
                "primary_key": ["id"],
                "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
                "batch_size": 3,
            }
        },
    )
    project = Project.load(path)

    first = project.run("events")
    assert first.run_status is RunStatus.SUCCESS, first.error_message
    assert _counts(first) == (9, 9, 0, 0)
    mark = project.watermark("events")
    assert mark is not None
    assert (mark.last_value_timestamp, mark.last_value_integer) == (start + step, 9)

    # More rows at the marked instant (higher ids), then later ones, again cut by batches.
    insert([(i, start + step) for i in range(10, 14)] + [(i, start + 2 * step) for i in (14, 15)])
    second = project.run("events")
    assert second.run_status is RunStatus.SUCCESS, second.error_message
    assert _counts(second) == (6, 6, 0, 0)

    third = project.run("events")
    assert _counts(third) == (0, 0, 0, 0)

    def rows(engine: Engine, table: str) -> list[tuple[int, str, datetime]]:
        with engine.connect() as conn:
            raw = conn.execute(
                text(f"SELECT id, payload, updated_at FROM {table} ORDER BY id")
            ).all()
        return [(int(i), p, _normal("timestamp", at)) for i, p, at in raw]

    source_rows = rows(source_engine, "events")
    assert len(source_rows) == 15
    assert rows(target_engine, "events_copy") == source_rows
