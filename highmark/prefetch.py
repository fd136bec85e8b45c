"""Read ahead on a thread of its own while this one writes: the two ends of a load at once.

Where the source's work is done outside this process (PostgreSQL formats the values, psycopg
parses them in C, neither holding the GIL long) and the target's is too (sqlite3 releases the GIL
while SQLite inserts), a reader thread lets both run at once on two cores instead of taking
turns. Measured on PostgreSQL → SQLite (bench/RESULTS.md): a bare fetch-and-insert loop over
1,000,000 rows in 2.8 s instead of 4.4 s, highmark's first load in 3.8 s instead of 5.2 s.
Where either end parses or formats rows in Python (PyMySQL; COPY rows from sqlite3's tuples) the
two threads only take turns at the GIL, so those paths do not use it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

DEPTH = 2  # chunks read ahead: the reader stays busy, memory stays a few chunks
_POLL_SECONDS = 0.1  # how often a reader blocked on a full queue looks whether to stop


class _End:
    """What the reader puts last: the iterable's end, or the exception that ended it."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


@contextmanager
def prefetched(chunks: Iterable[T], depth: int = DEPTH) -> Iterator[Iterator[T]]:
    """``chunks`` iterated on a reader thread, up to ``depth`` ahead of the consumer.

    The reader's exception is raised in the consumer, as it was raised (a source's error keeps
    its type, so the consumer's ``except`` clauses see what they saw without the thread). On
    leaving the block, however it is left, the reader stops after the chunk it is reading and
    is joined: nothing touches ``chunks`` (a cursor, a connection) once the block is left.
    """
    handoff: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: T | _End) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put(_End(exc))
            return
        put(_End())

    def consume() -> Iterator[T]:
        while True:
            item = handoff.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item

    reader = threading.Thread(target=read, name="highmark-prefetch", daemon=True)
    reader.start()
    try:
        yield consume()
    finally:
        stop.set()
        reader.join()
