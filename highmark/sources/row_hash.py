"""Row hashes computed inside the database, that agree across PostgreSQL, MySQL/MariaDB and SQLite.

Each row becomes one canonical text — every compared column, in order, as ``~`` when NULL or else
``<length>:<text>`` (so no two rows share a text by accident of concatenation) — and the text's
MD5 becomes two 32-bit integers. A key range is summed up as (row count, sum of the first integers,
sum of the second): order does not matter, and one changed row changes the sums.

Each column's text is the same on every database for the same value where that is cheap to
arrange: integers and booleans as decimal digits, decimals without trailing zeros, timestamps as
``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, dates ``YYYY-MM-DD``, bytes as lower-case hex, strings
as they are. Where it is not (JSON text, floats written in exponent form, times, a SQLite wall
time in a named zone, which is named with its zone, or one MariaDB cannot convert without time
zone tables), the two sides' sums differ although the rows are equal: the range is then compared
row by row in Python, which decides. A hash is only ever a shortcut to "equal": no text is NULL
(NULLs would sum to nothing) and equal texts are equal values; every reported difference is
checked.

Between two PostgreSQL tables whose compared columns have the same types, the row's own text form
(``ROW(…)::text``, sessions in UTC) hashed by ``hashtextextended`` does the same job three times
faster: both sides print equal values alike, and that is all a hash must agree on.

SQLite has no MD5: highmark registers ``hm_md5(text)`` and ``hm_part(hex, part)`` on its
connections.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Engine, event

from highmark import infinity
from highmark.sqltypes import ColumnInfo, Family, TimestampKind


def md5_hex(text: str | None) -> str | None:
    if text is None:
        return None
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def hex_part(digest: str | None, part: int) -> int | None:
    """The ``part``-th (0 or 1) 32-bit integer of a hex MD5."""
    return None if digest is None else int(digest[part * 8 : part * 8 + 8], 16)


def enable_sqlite(engine: Engine) -> None:
    """Register the hash function on every new connection of a SQLite engine (once)."""
    if engine.dialect.name != "sqlite" or getattr(engine, "_highmark_hash", False):
        return

    @event.listens_for(engine, "connect")
    def _register(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("hm_md5", 1, md5_hex, deterministic=True)
        dbapi_connection.create_function("hm_part", 2, hex_part, deterministic=True)

    engine._highmark_hash = True  # type: ignore[attr-defined]


class RowText:
    """SQL for one side's canonical row text and its hash sums."""

    def __init__(self, dialect: str, quote: Any, zone: str) -> None:
        self.dialect = dialect
        self.quote = quote
        self.zone = zone

    def column(self, info: ColumnInfo) -> str:
        """The canonical text of a non-NULL value of ``info``."""
        c = self.quote(info.name)
        family, d = info.family, self.dialect
        if family is Family.BOOLEAN:
            return f"CASE WHEN {c} THEN '1' ELSE '0' END"
        if family is Family.INTEGER:
            if d == "postgresql":
                return f"{c}::text"
            return f"CAST({c} + 0 AS CHAR)" if d == "mysql" else f"CAST({c} AS TEXT)"
        if family is Family.DECIMAL:
            if d == "postgresql":
                return f"trim_scale({c})::text"
            raw = f"CAST({c} AS CHAR)" if d == "mysql" else f"CAST({c} AS TEXT)"
            if d == "mysql":
                trimmed = f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {raw}))"
                return f"CASE WHEN LOCATE('.', {raw}) > 0 THEN {trimmed} ELSE {raw} END"
            return (
                f"CASE WHEN instr({raw}, '.') > 0 THEN rtrim(rtrim({raw}, '0'), '.') ELSE {raw} END"
            )
        if family is Family.TIMESTAMP:
            return self._timestamp(c, info)
        if family is Family.DATE:
            if d == "postgresql":  # to_char of an infinite date is NULL
                return infinity.sql_case(c, f"to_char({c}, 'YYYY-MM-DD')", day=True)
            return f"DATE_FORMAT({c}, '%Y-%m-%d')" if d == "mysql" else f"substr({c}, 1, 10)"
        if family is Family.BINARY:
            if d == "postgresql":
                return f"encode({c}, 'hex')"
            return f"LOWER(HEX({c}))" if d == "mysql" else f"lower(hex({c}))"
        if d == "postgresql":
            return f"{c}::text"
        return f"CAST({c} AS CHAR)" if d == "mysql" else f"CAST({c} AS TEXT)"

    def _timestamp(self, c: str, info: ColumnInfo) -> str:
        kind, d, zone = info.timestamp_kind, self.dialect, self.zone.replace("'", "")
        if d == "postgresql":
            utc = f"{c} AT TIME ZONE 'UTC'"
            if kind is TimestampKind.LOCAL_NAIVE:
                utc = f"({c} AT TIME ZONE '{zone}') AT TIME ZONE 'UTC'"
            text = f"to_char({utc}, 'YYYY-MM-DD HH24:MI:SS.US')"
            return infinity.sql_case(c, text, day=False)  # to_char of infinity is NULL
        if d == "mysql":
            utc = f"DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')"
            if kind is not TimestampKind.LOCAL_NAIVE or zone == "UTC":
                return utc
            # CONVERT_TZ is NULL where the server has no time zone tables (mysql_tzinfo_to_sql
            # never ran): then the wall time, named with its zone, so that the text is never
            # NULL (NULL texts hash to nothing, and rows that differ would sum alike) and is
            # equal only to the same wall time in the same zone.
            converted = utc.replace(c, f"CONVERT_TZ({c}, '{zone}', '+00:00')", 1)
            return f"COALESCE({converted}, CONCAT('{zone} ', {utc}))"
        # SQLite's text as it is: a naive one is a wall time in the connection's zone, so it is
        # named with it unless that is UTC (the same text in two zones is two instants).
        return c if zone == "UTC" else f"'{zone} ' || {c}"

    def text(self, columns: list[ColumnInfo]) -> str:
        """The whole row's canonical text."""
        parts = []
        for info in columns:
            value = self.column(info)
            quoted = self.quote(info.name)
            if self.dialect == "mysql":
                piece = f"CONCAT(CHAR_LENGTH({value}), ':', {value})"
            elif self.dialect == "postgresql":
                piece = f"length({value})::text || ':' || {value}"
            else:
                piece = f"length({value}) || ':' || {value}"
            parts.append(f"CASE WHEN {quoted} IS NULL THEN '~' ELSE {piece} END")
        if not parts:
            return "''"
        if self.dialect == "mysql":
            return f"CONCAT({', '.join(parts)})"
        return " || ".join(f"({p})" for p in parts)

    def native_sums(self, columns: list[ColumnInfo]) -> tuple[str, str]:
        """PostgreSQL on both sides, same column types: one 64-bit hash of the row's text."""
        row = ", ".join(self.quote(c.name) for c in columns)
        return f"sum(hashtextextended(ROW({row})::text, 0))", "0"

    def digest(self, row_text: str) -> str:
        """The hex MD5 of a row's text."""
        if self.dialect == "sqlite":
            return f"hm_md5({row_text})"
        return f"md5({row_text})" if self.dialect == "postgresql" else f"MD5({row_text})"

    def sums(self, digest: str) -> tuple[str, str]:
        """The two sums over rows whose hex MD5 is the column ``digest``."""
        if self.dialect == "postgresql":
            return (
                f"sum(('x' || substr({digest}, 1, 8))::bit(32)::bigint)",
                f"sum(('x' || substr({digest}, 9, 8))::bit(32)::bigint)",
            )
        if self.dialect == "mysql":
            return (
                f"SUM(CAST(CONV(SUBSTR({digest}, 1, 8), 16, 10) AS UNSIGNED))",
                f"SUM(CAST(CONV(SUBSTR({digest}, 9, 8), 16, 10) AS UNSIGNED))",
            )
        return f"sum(hm_part({digest}, 0))", f"sum(hm_part({digest}, 1))"

    def key(self, info: ColumnInfo) -> str:
        """A key column as ordered and compared the same way on every database (bytes)."""
        c: str = self.quote(info.name)
        if info.family is not Family.STRING:
            return c
        if self.dialect == "postgresql":
            return f'{c} COLLATE "C"'
        return f"BINARY {c}" if self.dialect == "mysql" else c
