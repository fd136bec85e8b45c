"""The columns a SQL-table job reads (``columns``/``exclude_columns``) and masks (``mask_columns``).
A CDC job's change sources decode the log through the same choice (SqlSource.converter).

Left-out columns are never read: the source's described table lacks them, so every query selects
only the rest. A masked column is read, and its value replaced at once (before any batch leaves
the source) by a keyed hash, HMAC-SHA256 in hex, keyed by the job's ``mask_key``: the same value
gives the same hash in every table loaded with the same key (joins still work), and without the key
it cannot be guessed from a list of likely values. The target column is text (64 characters).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import types as sqltypes

from highmark.config import TableJobSpec
from highmark.errors import SourceError
from highmark.sources.conversion import CONVERSION_ERRORS
from highmark.sqlschema import TableSchema
from highmark.sqltypes import ColumnInfo, Converter, Family, read_converter

MASK_LENGTH = 64  # hex digits of a SHA-256


def choose(
    schema: TableSchema, job: TableJobSpec, zone: ZoneInfo
) -> tuple[TableSchema, dict[str, Converter]]:
    """``schema`` limited to the job's columns, masked ones as text; and the converter of each
    masked column (its driver value to its hash)."""
    if not job.chooses_columns:
        return schema, {}
    for key, names in (("columns", job.columns or []), ("mask_columns", job.mask_columns)):
        for name in names:
            if schema.find(name) is None:
                raise SourceError(
                    f"job {job.job_id}: {key}: column {name!r} does not exist in source table "
                    f"{job.source.table}",
                    retryable=False,
                )
    columns: list[ColumnInfo] = []
    maskers: dict[str, Converter] = {}
    for col in schema.columns:
        if not job.keeps(col.name):
            continue
        if job.masks(col.name):
            assert job.mask_key is not None  # the configuration says so
            maskers[col.name] = masker(col, zone, job.mask_key)
            columns.append(
                replace(
                    col,
                    type=sqltypes.String(MASK_LENGTH),
                    family=Family.STRING,
                    timestamp_kind=None,
                )
            )
        else:
            columns.append(col)
    return replace(schema, columns=tuple(columns)), maskers


def masker(column: ColumnInfo, zone: ZoneInfo, key: str) -> Converter:
    """A driver value of ``column`` -> the hex HMAC-SHA256 of its canonical text (NULL stays
    NULL, so that "no value" is still visible)."""
    read = read_converter(column, zone)
    secret = key.encode()

    def mask(value: object) -> str | None:
        if value is None:
            return None
        try:
            canonical = read(value) if read is not None else value
        except CONVERSION_ERRORS:
            # Never a bad row: its source_data and error would carry the value it must hide.
            canonical = value
        return hmac.new(secret, _text(canonical).encode(), hashlib.sha256).hexdigest()

    return mask


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
