"""Reading SQLite CREATE TABLE statements for a full load's stage (highmark/destinations/
sqlite_ddl.py): what is kept, what is left out, and that the result is DDL SQLite runs."""

from __future__ import annotations

import sqlite3

import pytest

from highmark.destinations.sqlite_ddl import UnreadableDdl, parse_table, stage_sql, tokenize


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _stage(ddl: str, mapped: list[str]) -> str:
    return stage_sql(ddl, '"stage"', mapped, _quote)


def test_tokens_follow_sqlites_quoting_and_comments() -> None:
    tokens = tokenize("""a "b "" c" `d` [e f] 'g '' h' X'0A' -- note (
    /* ( */ 1.5e3 (""")
    kinds = [(t.kind, t.name) for t in tokens]
    assert kinds == [
        ("word", "a"),
        ("ident", 'b " c'),
        ("ident", "d"),
        ("ident", "e f"),
        ("string", "'g '' h'"),
        ("string", "X'0A'"),
        ("number", "1.5e3"),
        ("punct", "("),
    ]


def test_the_stage_keeps_types_not_null_defaults_and_checks_and_drops_keys() -> None:
    ddl = """CREATE TABLE "orders" ( -- comment, with a (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      amount NUMERIC(12, 2) NOT NULL DEFAULT -1 CHECK (amount >= 0),
      [note] TEXT COLLATE NOCASE DEFAULT 'a,b''c)' CONSTRAINT note_given NOT NULL,
      ref INT REFERENCES other(id) ON DELETE SET NULL NOT DEFERRABLE INITIALLY DEFERRED NOT NULL,
      twice INT GENERATED ALWAYS AS (id * 2) STORED,
      raw BLOB DEFAULT X'00' UNIQUE,
      CONSTRAINT small CHECK (amount < 100 AND length(note) > 0),
      UNIQUE (note), FOREIGN KEY (ref) REFERENCES other(id)
    )"""

    sql = _stage(ddl, ["id", "amount", "note", "ref", "twice", "raw"])

    assert sql == (
        'CREATE TABLE "stage" ("id" INTEGER, '
        '"amount" NUMERIC(12, 2) NOT NULL DEFAULT -1 CHECK (amount >= 0), '
        "\"note\" TEXT DEFAULT 'a,b''c)' CONSTRAINT note_given NOT NULL, "
        '"ref" INT NOT NULL, "twice" INT, "raw" BLOB DEFAULT X\'00\', '
        "CONSTRAINT small CHECK (amount < 100 AND length(note) > 0))"
    )
    with sqlite3.connect(":memory:") as db:
        db.execute(sql)
        db.execute("INSERT INTO stage (id, amount, note, ref) VALUES (1, 5, 'x', 1)")
        for bad in ("(2, -1, 'x', 1)", "(3, 5, NULL, 1)", "(4, 500, 'x', 1)", "(5, 5, 'x', NULL)"):
            with pytest.raises(sqlite3.IntegrityError):
                db.execute(f"INSERT INTO stage (id, amount, note, ref) VALUES {bad}")


def test_checks_that_name_a_column_the_stage_lacks_are_left_out() -> None:
    ddl = """CREATE TABLE t (
      id INTEGER NOT NULL, Amount REAL CHECK (amount > "Gone"), "Gone" INT NOT NULL,
      CHECK ("gone" > 0), CHECK (abs(amount) < 10), CONSTRAINT named CHECK (gone IS NULL)
    ) STRICT, WITHOUT ROWID"""

    sql = _stage(ddl, ["id", "amount"])

    assert sql == (
        'CREATE TABLE "stage" ("id" INTEGER NOT NULL, "amount" REAL, CHECK (abs(amount) < 10))'
        " STRICT"
    )


def test_a_column_without_a_type_and_names_that_look_like_keywords() -> None:
    ddl = 'CREATE TABLE t ("check" NOT NULL, [primary] DEFAULT (1 + 2), `unique` NULL)'

    assert _stage(ddl, ["check", "primary", "unique"]) == (
        'CREATE TABLE "stage" ("check" NOT NULL, "primary" DEFAULT (1 + 2), "unique")'
    )


def test_columns_are_found_whatever_their_case() -> None:
    table = parse_table('CREATE TABLE t (Id INT, "Name" TEXT)')
    assert table.find("ID") is not None and table.find("name") is not None
    assert table.find("other") is None


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE TABLE t AS SELECT 1 AS x",
        "CREATE TABLE t (a INT CHECK (a > 0)",
        "CREATE TABLE t (a INT, )",
        "CREATE TABLE t (a INT DEFAULT)",
        "CREATE TABLE t (a INT CONSTRAINT)",
    ],
)
def test_ddl_it_does_not_follow_is_said_so(ddl: str) -> None:
    with pytest.raises(UnreadableDdl):
        _stage(ddl, ["a"])


def test_a_mapped_column_missing_from_the_ddl_is_said_so() -> None:
    with pytest.raises(UnreadableDdl):
        _stage("CREATE TABLE t (a INT)", ["a", "b"])
