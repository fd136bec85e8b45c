"""pgoutput messages as PostgreSQL 15 wrote them (bytes captured from a real slot), and sizes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from highmark.config.cdc import default_log_name, parse_size
from highmark.sources import pgoutput

RELATION = (
    b"R\x00\x01\x08Dpublic\x00t\x00d\x00\x04\x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff\x00v\x00"
    b"\x00\x00\x00\x19\xff\xff\xff\xff\x00ts\x00\x00\x00\x04\xa0\xff\xff\xff\xff\x00n\x00\x00\x00"
    b"\x06\xa4\x00\x0a\x00\x06"
)


def test_messages() -> None:
    begin = pgoutput.decode(b"B\x00\x00\x00\x01\x02\xf8\x84`\x00\x03\x04\xa4\x0e\x10pT\x00\x00p:")
    assert isinstance(begin, pgoutput.Begin)
    assert begin.final_lsn == 0x102F88460 and begin.xid == 28730
    assert begin.commit_time.tzinfo is UTC and begin.commit_time > datetime(2026, 1, 1, tzinfo=UTC)
    relation = pgoutput.decode(RELATION)
    assert isinstance(relation, pgoutput.Relation)
    assert [c.name for c in relation.columns] == ["id", "v", "ts", "n"]
    assert [c.in_key for c in relation.columns] == [True, False, False, False]
    assert relation.columns[2].type_oid == 1184 and relation.replica_identity == "d"
    insert = pgoutput.decode(b"I\x00\x01\x08DN\x00\x04t\x00\x00\x00\x011t\x00\x00\x00\x01anu")
    assert isinstance(insert, pgoutput.Insert)
    assert insert.new[:3] == (b"1", b"a", None) and insert.new[3] is pgoutput.UNCHANGED
    delete = pgoutput.decode(b"D\x00\x01\x08DK\x00\x04t\x00\x00\x00\x011nnn")
    assert isinstance(delete, pgoutput.Delete) and delete.old_is_key
    assert delete.old == (b"1", None, None, None)
    commit = pgoutput.decode(
        b"C\x00\x00\x00\x00\x01\x02\xf8\x84`\x00\x00\x00\x01\x02\xf8\x84\x90\x00\x03\x04\xa4\x0e\x10pT"
    )
    assert isinstance(commit, pgoutput.Commit) and commit.end_lsn == 0x102F88490
    truncate = pgoutput.decode(b"T\x00\x00\x00\x01\x00\x00\x01\x08D")
    assert isinstance(truncate, pgoutput.Truncate) and truncate.relation_oids == (0x10844,)
    with pytest.raises(pgoutput.DecodeError):
        pgoutput.decode(b"Z")


def test_lsn_text() -> None:
    assert pgoutput.format_lsn(0x102F88490) == "1/2F88490"
    assert pgoutput.parse_lsn("16/B374D848") == 0x16B374D848


def test_sizes_and_names() -> None:
    assert parse_size("1GB") == 10**9 and parse_size("2GiB") == 2 * 2**30
    assert parse_size(512) == 512 and parse_size("500 MB") == 500 * 10**6
    with pytest.raises(ValueError, match="size"):
        parse_size("lots")
    assert default_log_name("Orders.Sync-1") == "highmark_orders_sync_1"
