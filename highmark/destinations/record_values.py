"""Field values at the record writer's edges: incoming API values, stored values, driver values.

Every value has one canonical form, so that an incoming row and the stored row compare with
``==`` in Python:

=========  =========================================================================
type       canonical form
=========  =========================================================================
TEXT       ``str`` (an ``int`` id is accepted and becomes its decimal text)
INTEGER    ``int``          BOOLEAN  ``bool``          FLOAT  ``float``
TIMESTAMP  aware ``datetime`` (ISO strings with ``Z`` or an offset accepted; aware values
           compare as instants), cut to the column's fractional digits when it keeps
           fewer than six
JSON       the JSON text with sorted keys and no spaces (:func:`canonical_json`): two
           objects that differ only in key order have the same text
=========  =========================================================================

Timestamps are written and read with the SQL path's converters (:mod:`highmark.sqltypes`):
``timestamptz`` on PostgreSQL, UTC wall time in ``DATETIME(6)`` on MySQL, ISO text on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from highmark.destinations.entities import FieldType
from highmark.sqltypes import ColumnInfo, Family, TimestampKind, read_converter, write_converter

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Any) -> str:
    """The JSON text of ``value`` with sorted keys and no spaces: equal JSON, equal text."""
    return _ENCODER.encode(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected a boolean, got {type(value).__name__}")


def _float(value: Any) -> float:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def parse_timestamp(value: Any) -> datetime:
    """An aware datetime, or an ISO 8601 string with ``Z`` or an offset, as an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime or an ISO 8601 string, got {type(value).__name__}")
    if value.utcoffset() is None:
        raise ValueError("timestamp without a time zone (give UTC, Z or an offset)")
    return value  # aware datetimes compare as instants: no need to convert


def _json(value: Any) -> str:
    try:
        return canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"not JSON: {exc}") from None


_CANONICAL: dict[FieldType, Callable[[Any], Any]] = {
    FieldType.TEXT: _text,
    FieldType.INTEGER: _integer,
    FieldType.BOOLEAN: _boolean,
    FieldType.FLOAT: _float,
    FieldType.TIMESTAMP: parse_timestamp,
    FieldType.JSON: _json,
}


@dataclass(frozen=True)
class ColumnCodec:
    """How one column's values are made canonical, written and read back.

    ``canonical`` takes an incoming value (never None), ``to_db`` a canonical one for the
    driver, ``from_db`` a driver value (never None) to its canonical form: for JSON kept as text,
    the stored text as is, which is canonical when highmark wrote it; ``exact`` then parses and
    re-encodes it, for the rare row whose texts differ.
    """

    name: str
    type: FieldType
    canonical: Callable[[Any], Any]
    to_db: Callable[[Any], Any] | None
    from_db: Callable[[Any], Any] | None
    exact: Callable[[Any], Any] | None
    json_as_text: bool = False  # select a jsonb column as text (PostgreSQL)


def codec(
    name: str, ftype: FieldType, info: ColumnInfo, dialect: str, zone: ZoneInfo
) -> ColumnCodec:
    """The codec of field ``name`` of type ``ftype`` stored in the reflected column ``info``."""
    canonical = _CANONICAL[ftype]
    to_db: Callable[[Any], Any] | None = None
    from_db: Callable[[Any], Any] | None = None
    exact: Callable[[Any], Any] | None = None
    as_text = False
    if ftype is FieldType.TIMESTAMP:
        to_db = write_converter(info, dialect, zone)
        from_db = _timestamp_reader(info, zone)
        precision = info.precision
        if precision is not None and precision < 6:
            step = 10 ** (6 - precision)

            def cut(value: Any, parse: Callable[[Any], datetime] = parse_timestamp) -> datetime:
                parsed = parse(value)
                return parsed.replace(microsecond=parsed.microsecond // step * step)

            canonical = cut
    elif ftype is FieldType.JSON:
        if dialect == "postgresql" and info.family is Family.JSON:
            from_db, as_text = _reencoded_strictly, True
        else:
            from_db = _stored_json_text
            exact = _reencoded
    elif ftype is FieldType.BOOLEAN:
        from_db = bool
    elif ftype is FieldType.FLOAT:
        from_db = float
    return ColumnCodec(name, ftype, canonical, to_db, from_db, exact, as_text)


def _timestamp_reader(info: ColumnInfo, zone: ZoneInfo) -> Callable[[Any], Any]:
    """Driver value -> aware datetime; the usual shapes without the general converter."""
    general = read_converter(info, zone)
    assert general is not None
    naive_is_utc = info.timestamp_kind is TimestampKind.UTC_NAIVE or zone.key == "UTC"

    def read(value: Any) -> Any:
        if value.__class__ is str:
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return general(value)
        if value.__class__ is datetime:
            if value.tzinfo is not None:
                return value
            if naive_is_utc:
                return value.replace(tzinfo=UTC)
        return general(value)

    return read


def _stored_json_text(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def _reencoded_strictly(value: Any) -> str:
    return canonical_json(json.loads(value) if isinstance(value, str) else value)


def _reencoded(value: Any) -> Any:
    try:
        return canonical_json(json.loads(value))
    except (TypeError, ValueError):
        return value
