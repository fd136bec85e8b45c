"""Bisection's promises, on a writer that refuses some rows the way a target does (the whole
piece rolls back): every good row written exactly once, every bad row found, within the bound on
transactions; a failure that is not about the data is raised, not bisected."""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from typing import Any

import pytest

from highmark.destinations.bisect import write_bisecting
from highmark.models import Counts
from highmark.sources.base import Batch


class RefusingTarget:
    """Commits a piece only if none of its rows is bad (one transaction per call)."""

    def __init__(self, bad: set[int], error: Exception | None = None) -> None:
        self.bad = bad
        self.error = error
        self.committed: Counter[int] = Counter()
        self.transactions = 0

    def write(self, batch: Batch) -> Counts:
        self.transactions += 1
        ids = [r["id"] for r in batch.rows]
        if any(i in self.bad for i in ids):
            raise self.error or sqlite3.IntegrityError("CHECK constraint failed: amount_ok")
        self.committed.update(ids)
        return Counts(rows_read=len(ids), rows_written=len(ids))


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "amount": i} for i in range(n)]


@pytest.mark.parametrize(("n", "bad"), [(10_000, {4242}), (1000, {0, 1, 2, 500, 999}), (1, {0})])
def test_good_rows_once_bad_rows_found_within_the_bound(n: int, bad: set[int]) -> None:
    target = RefusingTarget(bad)

    written = write_bisecting(target.write, Batch(rows=_rows(n)))

    assert sorted(r.row["id"] for r in written.refused) == sorted(bad)
    assert set(target.committed) == set(range(n)) - bad
    assert set(target.committed.values()) <= {1}  # exactly once
    assert written.counts.rows_read == n
    assert written.counts.rows_written == n - len(bad)
    bound = 2 * len(bad) * max(1, math.ceil(math.log2(n))) + 1
    assert target.transactions <= bound


def test_a_lock_timeout_is_raised_not_bisected() -> None:
    locked = sqlite3.OperationalError("database is locked")
    target = RefusingTarget({3}, error=locked)

    with pytest.raises(sqlite3.OperationalError):
        write_bisecting(target.write, Batch(rows=_rows(100)))

    assert target.transactions == 1 and not target.committed


def test_a_target_that_refuses_every_row_fails_with_its_first_error() -> None:
    target = RefusingTarget(set(range(1000)))

    with pytest.raises(sqlite3.IntegrityError):
        write_bisecting(target.write, Batch(rows=_rows(1000)))
    assert not target.committed


class CopyRefusal(Exception):
    """Shaped as psycopg raises a COPY's check violation: a SQLSTATE and the failing line."""

    sqlstate = "23514"

    def __init__(self, line: int) -> None:
        super().__init__("new row violates check constraint")
        self.diag = type("Diag", (), {"context": f'COPY t, line {line}: "…"'})()


class HintingTarget(RefusingTarget):
    """Names the line of the first bad row of a piece (or, lying, always line 1)."""

    def __init__(self, bad: set[int], *, lying: bool = False) -> None:
        super().__init__(bad)
        self.lying = lying

    def write(self, batch: Batch) -> Counts:
        ids = [r["id"] for r in batch.rows]
        at = next((n for n, i in enumerate(ids) if i in self.bad), None)
        if at is not None:
            self.transactions += 1
            raise CopyRefusal(1 if self.lying else at + 1)
        return super().write(batch)


@pytest.mark.parametrize("lying", [False, True])
def test_a_named_line_cuts_the_piece_there_and_a_wrong_one_does_no_harm(lying: bool) -> None:
    bad = {17, 4242, 9000}
    target = HintingTarget(bad, lying=lying)

    written = write_bisecting(target.write, Batch(rows=_rows(10_000)))

    assert sorted(r.row["id"] for r in written.refused) == sorted(bad)
    assert set(target.committed) == set(range(10_000)) - bad
    assert set(target.committed.values()) <= {1}
    halving = 2 * len(bad) * math.ceil(math.log2(10_000)) + 1
    assert target.transactions <= (halving if lying else 4 * len(bad) + 3)
