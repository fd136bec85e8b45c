"""Decoding PostgreSQL's ``pgoutput`` logical replication messages (protocol version 1).

``pg_logical_slot_peek_binary_changes(slot, …, 'proto_version', '1', 'publication_names', …)``
returns one row per message; this module turns each message's bytes into a record. Column values
stay as PostgreSQL's text output (``bytes``), ``None`` for NULL, or :data:`UNCHANGED` for a
TOASTed value the update did not touch (the log does not carry it).

Layouts: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# pgoutput timestamps count microseconds from 2000-01-01 00:00 UTC.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Any = _Unchanged()
TupleData = tuple[Any, ...]  # bytes | None | UNCHANGED per column


@dataclass(frozen=True)
class RelationColumn:
    name: str
    type_oid: int
    typmod: int
    in_key: bool


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # d default, n nothing, f full, i index
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True)
class Begin:
    final_lsn: int  # where the transaction's commit record starts
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int  # just past the commit record: the position to confirm after applying it
    commit_time: datetime


@dataclass(frozen=True)
class Insert:
    relation_oid: int
    new: TupleData


@dataclass(frozen=True)
class Update:
    relation_oid: int
    new: TupleData
    old: TupleData | None  # the old key ('K') or whole old row ('O'), when the log has it
    old_is_key: bool


@dataclass(frozen=True)
class Delete:
    relation_oid: int
    old: TupleData
    old_is_key: bool


@dataclass(frozen=True)
class Truncate:
    relation_oids: tuple[int, ...]


@dataclass(frozen=True)
class Other:
    """A message highmark does not act on (type, origin, logical message)."""

    kind: str


Message = Begin | Commit | Relation | Insert | Update | Delete | Truncate | Other


class DecodeError(ValueError):
    """The bytes are not a pgoutput message this decoder knows."""


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> str:
        value = self.data[self.pos : self.pos + 1].decode("ascii")
        self.pos += 1
        return value

    def int8(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def int16(self) -> int:
        (value,) = struct.unpack_from("!h", self.data, self.pos)
        self.pos += 2
        return int(value)

    def int32(self) -> int:
        (value,) = struct.unpack_from("!i", self.data, self.pos)
        self.pos += 4
        return int(value)

    def uint32(self) -> int:
        (value,) = struct.unpack_from("!I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def int64(self) -> int:
        (value,) = struct.unpack_from("!q", self.data, self.pos)
        self.pos += 8
        return int(value)

    def string(self) -> str:
        end = self.data.index(b"\x00", self.pos)
        value = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return value

    def timestamp(self) -> datetime:
        return _PG_EPOCH + timedelta(microseconds=self.int64())

    def tuple_data(self) -> TupleData:
        count = self.int16()
        values: list[Any] = []
        data = self.data
        for _ in range(count):
            kind = data[self.pos : self.pos + 1]
            self.pos += 1
            if kind in (b"t", b"b"):
                length = self.int32()
                values.append(data[self.pos : self.pos + length])
                self.pos += length
            elif kind == b"n":
                values.append(None)
            elif kind == b"u":
                values.append(UNCHANGED)
            else:
                raise DecodeError(f"unknown tuple column kind {kind!r}")
        return tuple(values)


def decode(data: bytes | memoryview) -> Message:
    """One pgoutput message."""
    reader = _Reader(bytes(data))
    kind = reader.byte()
    if kind == "B":
        final_lsn = reader.int64()
        return Begin(final_lsn=final_lsn, commit_time=reader.timestamp(), xid=reader.uint32())
    if kind == "C":
        reader.int8()  # flags, unused
        commit_lsn = reader.int64()
        end_lsn = reader.int64()
        return Commit(commit_lsn=commit_lsn, end_lsn=end_lsn, commit_time=reader.timestamp())
    if kind == "R":
        oid = reader.uint32()
        namespace = reader.string()
        name = reader.string()
        identity = chr(reader.int8())
        columns = []
        for _ in range(reader.int16()):
            flags = reader.int8()
            column_name = reader.string()
            type_oid = reader.uint32()
            columns.append(RelationColumn(column_name, type_oid, reader.int32(), bool(flags & 1)))
        return Relation(oid, namespace or "pg_catalog", name, identity, tuple(columns))
    if kind == "I":
        oid = reader.uint32()
        if reader.byte() != "N":
            raise DecodeError("an insert without its new tuple")
        return Insert(oid, reader.tuple_data())
    if kind == "U":
        oid = reader.uint32()
        marker = reader.byte()
        old: TupleData | None = None
        old_is_key = False
        if marker in ("K", "O"):
            old, old_is_key = reader.tuple_data(), marker == "K"
            marker = reader.byte()
        if marker != "N":
            raise DecodeError("an update without its new tuple")
        return Update(oid, reader.tuple_data(), old, old_is_key)
    if kind == "D":
        oid = reader.uint32()
        marker = reader.byte()
        if marker not in ("K", "O"):
            raise DecodeError("a delete without its old tuple")
        return Delete(oid, reader.tuple_data(), marker == "K")
    if kind == "T":
        count = reader.int32()
        reader.int8()  # options (CASCADE, RESTART IDENTITY): the effect on the table is the same
        return Truncate(tuple(reader.uint32() for _ in range(count)))
    if kind in ("Y", "O", "M"):
        return Other(kind)
    raise DecodeError(f"unknown pgoutput message {kind!r}")


def format_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
