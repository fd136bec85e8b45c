"""A ChangeSet is each key's net change (highmark/sources/changes.py), a refusal included: a
change the source could not convert is the key's net effect until a later change replaces it."""

from __future__ import annotations

from datetime import UTC, datetime

from highmark.models import Refusal, RefusedRow
from highmark.sources.changes import ChangeSet, Op

AT = datetime(2024, 1, 1, tzinfo=UTC)


def _refused(key: int) -> RefusedRow:
    return RefusedRow({"id": key, "on_day": "0044-03-15 BC"}, Refusal("no such day", "on_day"))


def test_a_refusal_is_the_keys_net_change_until_a_later_change_replaces_it() -> None:
    changes = ChangeSet()
    changes.upsert((1,), {"id": 1}, AT, frozenset())
    changes.refuse((1,), _refused(1))  # the earlier upsert is not applied either
    changes.refuse((2,), _refused(2))
    changes.upsert((2,), {"id": 2}, AT, frozenset())  # replaces the refusal
    changes.refuse((3,), _refused(3))
    changes.delete((3,), AT)

    assert list(changes.refused) == [(1,)]
    assert (1,) not in changes.rows
    assert changes.rows[(2,)].op is Op.UPSERT and changes.rows[(3,)].op is Op.DELETE
    assert (changes.changes, len(changes)) == (6, 3)
    assert not changes.empty


def test_a_truncate_clears_the_refusals_before_it() -> None:
    changes = ChangeSet()
    changes.refuse((1,), _refused(1))
    changes.truncate(AT)
    changes.refuse((2,), _refused(2))

    assert list(changes.refused) == [(2,)]
    assert changes.truncated_at == AT and not changes.rows
