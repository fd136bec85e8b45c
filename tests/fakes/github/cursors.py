"""Keyset pagination as GitHub does it: a cursor names a row's sort key, and ``after``/``before``
mean "rows beyond / before that key" in the connection's order, not an offset. A row whose key
changes between two pages therefore jumps over the cursor (missed by a DESC scan, seen twice by an
ASC one), exactly like GitHub.

Cursors look like GitHub's (``Y3Vyc29yOnYyOp…``: base64 of ``cursor:v2:`` and a packed key), the
key packed as binary so that nothing tempts a client to parse it.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Key = tuple[int, ...]

_PREFIX = b"cursor:v2:"


class CursorError(ValueError):
    """A cursor this fake did not make (GitHub: ``INVALID_CURSOR_ARGUMENTS``)."""

    def __init__(self, cursor: str) -> None:
        super().__init__(f"`{cursor}` does not appear to be a valid cursor.")


def encode(key: Key) -> str:
    return base64.b64encode(_PREFIX + struct.pack(f">{len(key)}q", *key)).decode()


def decode(cursor: str, width: int | None) -> Key:
    """The key a cursor names; ``width`` (the key's length) is ``None`` for an empty
    connection, where any cursor this fake made is fine."""
    try:
        raw = base64.b64decode(cursor.encode(), validate=True)
    except (ValueError, binascii.Error):
        raise CursorError(cursor) from None
    packed = raw[len(_PREFIX) :]
    width = len(packed) // 8 if width is None else width
    if not raw.startswith(_PREFIX) or not packed or len(packed) != 8 * width:
        raise CursorError(cursor)
    return struct.unpack(f">{width}q", packed)


def paginate(
    items: Sequence[T],
    key: Callable[[T], Key],
    *,
    desc: bool = False,
    first: int | None = None,
    last: int | None = None,
    after: str | None = None,
    before: str | None = None,
    cap: int | None = None,
) -> Connection[T]:
    """One page of ``items`` in ``key`` order (descending with ``desc``) as a
    :class:`Connection`. ``cap`` is the server's own page-size ceiling (a page may hold fewer
    rows than asked for)."""
    width = len(key(items[0])) if items else None
    lo = decode(after, width) if after else None
    hi = decode(before, width) if before else None
    keyed = sorted(((key(item), item) for item in items), key=lambda p: p[0], reverse=desc)

    def beyond(k: Key, mark: Key) -> bool:
        return k < mark if desc else k > mark

    window = [
        (k, item)
        for k, item in keyed
        if (lo is None or beyond(k, lo)) and (hi is None or beyond(hi, k))
    ]
    start, end = 0, len(window)
    if first is not None:
        end = min(end, start + min(first, cap or first))
    if last is not None:
        start = max(start, end - min(last, cap or last))
    if first is None and last is None and cap is not None:
        end = min(end, cap)
    page = window[start:end]
    more_after = end < len(window) or (hi is not None and any(not beyond(hi, k) for k, _ in keyed))
    more_before = start > 0 or (lo is not None and any(not beyond(k, lo) for k, _ in keyed))
    return Connection(len(items), page, more_after, more_before)


@dataclass
class Connection(Generic[T]):
    """One page of a connection; the resolvers read its fields by their snake_case names."""

    total_count: int
    keyed: list[tuple[Key, T]]
    has_next_page: bool
    has_previous_page: bool

    @property
    def nodes(self) -> list[T]:
        return [item for _, item in self.keyed]

    @property
    def edges(self) -> list[dict[str, Any]]:
        return [{"cursor": encode(k), "node": item} for k, item in self.keyed]

    @property
    def page_info(self) -> dict[str, Any]:
        return {
            "hasNextPage": self.has_next_page,
            "hasPreviousPage": self.has_previous_page,
            "startCursor": encode(self.keyed[0][0]) if self.keyed else None,
            "endCursor": encode(self.keyed[-1][0]) if self.keyed else None,
        }
