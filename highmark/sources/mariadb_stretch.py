"""A MySQL/MariaDB key range read as one stretch of the clustered index, not a scan per range.

A range is bounded by its watermark keys, which the server reads through a secondary index and
a primary-key lookup per row. For a range of a first load (about ``batch_size`` rows) it prefers
a full scan of the table instead, so every range of a first load read the whole table: ten
scans for ten ranges, each waiting to reach its own rows before sending the first (measured on
1,000,000 rows: ~125 ms a range before the first row, and the server's scans competing with
highmark for the second core). So each range first reads the least and the greatest primary key
among its rows, from the secondary index alone (InnoDB's secondary indexes hold the primary
key), and the statement also bounds the primary key: rows whose keys rise with their watermark
— the usual table — are then read as one stretch of the clustered index, as a single scan of
the whole table would read them. The bound is redundant: it selects no row the range would not
(a row cannot enter a range of the window once the run has pinned its upper bound).
"""

from __future__ import annotations

from typing import Any

from highmark.sources.postgres_copy import PostgresCopyRange


def key_bounded(
    cursor: Any, key: str, origin: str, source_range: PostgresCopyRange, dialect: Any
) -> tuple[str, Any] | None:
    """The range's condition, also bounded by the least and the greatest ``key`` (the first
    column of the primary key, quoted) among the rows of ``origin`` it selects, and its
    parameters; None when the range has no row. The least and greatest are read under the
    range's bounds on its keys alone (``source_range.keys``, when it also filters rows out), so
    that the index answers them by itself: a wider stretch, never a narrower one."""
    where, params = source_range.driver_sql(dialect)
    keys, keys_params = (
        (where, params)
        if source_range.keys is None
        else source_range.driver_sql(dialect, keys=True)
    )
    cursor.execute(f"SELECT MIN({key}), MAX({key}) FROM {origin} WHERE {keys}", keys_params)
    low, high = cursor.fetchone()
    if low is None:
        return None
    bounds: Any
    if isinstance(params, list):
        marks, bounds = ("%s", "%s"), [low, high, *params]
    else:
        marks = ("%(hm_key_low)s", "%(hm_key_high)s")
        bounds = {**params, "hm_key_low": low, "hm_key_high": high}
    return f"{key} >= {marks[0]} AND {key} <= {marks[1]} AND ({where})", bounds
