"""The bookkeeping of parallel loads: the done prefix, the ranges done past it, the gaps."""

from __future__ import annotations

from highmark.models import Watermark, WatermarkType
from highmark.parallel import RangeLedger, gaps


def key(i: int) -> Watermark:
    return Watermark(WatermarkType.INTEGER, id=i)


def test_the_prefix_moves_only_over_ranges_done_in_a_row() -> None:
    ledger = RangeLedger(None)
    first, second, third = (
        ledger.add(None, key(10)),
        ledger.add(key(10), key(20)),
        ledger.add(key(20), key(30)),
    )
    ledger.finish(second)
    assert ledger.position is None
    assert ledger.done_ranges() == [{"after_integer": 10, "upto_integer": 20}]
    ledger.finish(first)
    assert ledger.position == key(20)
    assert ledger.done_ranges() == []
    ledger.finish(third)
    assert ledger.position == key(30)


def test_a_range_done_before_is_folded_in_when_the_prefix_reaches_it() -> None:
    ledger = RangeLedger(key(5))
    gap = ledger.add(key(5), key(10))
    ledger.add(key(10), key(20), done=True)
    assert ledger.position == key(5)
    ledger.finish(gap)
    assert ledger.position == key(20)


def test_gaps_lie_between_the_prefix_and_the_done_ranges() -> None:
    assert gaps(None, []) == [(None, None)]
    assert gaps(key(5), [(key(10), key(20)), (key(30), key(40))]) == [
        (key(5), key(10)),
        (key(20), key(30)),
        (key(40), None),
    ]
