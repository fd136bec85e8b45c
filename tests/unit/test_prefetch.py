"""highmark/prefetch.py: a reader thread ahead of the consumer, and nothing left running after."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from highmark.prefetch import DEPTH, prefetched


class Chunks:
    """An iterable that records which thread reads it and whether it is read after ``closed``."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.read = 0
        self.threads: set[str] = set()
        self.closed = False
        self.read_after_close = False

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(self.count):
            self.threads.add(threading.current_thread().name)
            if self.closed:
                self.read_after_close = True
            if i == self.fail_at:
                raise LookupError(f"chunk {i} cannot be read")
            self.read += 1
            yield [i]


def test_every_chunk_arrives_in_order_read_on_another_thread() -> None:
    chunks = Chunks(50)
    with prefetched(chunks) as got:
        assert [c[0] for c in got] == list(range(50))
    assert chunks.threads == {"highmark-prefetch"}


def test_the_readers_error_reaches_the_consumer_with_its_type_after_the_chunks_before() -> None:
    chunks = Chunks(10, fail_at=4)
    seen: list[int] = []
    with pytest.raises(LookupError, match="chunk 4 cannot be read"), prefetched(chunks) as got:
        for c in got:
            seen.append(c[0])
    assert seen == [0, 1, 2, 3]


def test_a_consumer_that_stops_leaves_no_reader_behind_and_nothing_reads_on() -> None:
    chunks = Chunks(10_000)
    with pytest.raises(RuntimeError, match="the target refused"), prefetched(chunks) as got:
        next(got)
        raise RuntimeError("the target refused a row")
    chunks.closed = True  # what the caller does next: close the cursor the chunks come from
    assert not any(t.name == "highmark-prefetch" for t in threading.enumerate())
    # The reader was at most a few chunks ahead when it stopped, and read none after.
    assert chunks.read <= 1 + DEPTH + 1
    assert not chunks.read_after_close


def test_an_empty_source_gives_an_empty_iterator() -> None:
    with prefetched(Chunks(0)) as got:
        assert list(got) == []
