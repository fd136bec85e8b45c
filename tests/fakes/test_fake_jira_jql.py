"""The fake Jira's JQL: syntax (tokenizer, parser) and date literals, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.fakes.jira import JqlError, parse
from tests.fakes.jira.dates import literal_ms, render
from tests.fakes.jira.jql import And, Clause, Not, Or, tokenize
from tests.fakes.jira.model import from_ms, to_ms

NOW = datetime(2026, 1, 15, 12, 0, 30, tzinfo=UTC)


def lit(text: str, *, quoted: bool = True, zone: str = "Europe/Berlin") -> datetime:
    ms = literal_ms(text, quoted=quoted, field="updated", user_zone=zone, now_ms=to_ms(NOW))
    return from_ms(ms)


def test_recommended_incremental_query_parses() -> None:
    query = parse(
        'project in (ABC, DEF) AND updated >= "2025-03-01 10:10" AND '
        'updated <= "2025-03-02 08:55" ORDER BY updated ASC, key ASC'
    )
    assert isinstance(query.where, And)
    first, low, high = query.where.items
    assert isinstance(first, Clause) and isinstance(low, Clause)
    assert first == Clause("project", "in", first.values, 1)
    assert [v.text for v in first.values] == ["ABC", "DEF"]
    assert (low.op, low.values[0].text, low.values[0].quoted) == (">=", "2025-03-01 10:10", True)
    assert isinstance(high, Clause) and high.op == "<="
    assert [(k.field, k.descending) for k in query.order_by] == [("updated", False), ("key", False)]
    assert [c.op for c in query.clauses("UPDATED")] == [">=", "<="]


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    query = parse("project = A OR project = B AND status = Done")
    assert isinstance(query.where, Or)
    assert isinstance(query.where.items[1], And)
    grouped = parse("(project = A OR project = B) AND NOT status = Done")
    assert isinstance(grouped.where, And)
    assert isinstance(grouped.where.items[0], Or)
    assert isinstance(grouped.where.items[1], Not)


def test_operators_and_lists() -> None:
    query = parse(
        "issuetype != Epic and issuetype not in (Bug, 'Sub-task') and assignee is not EMPTY "
        "and assignee = currentUser() order by created desc, id"
    )
    ops = [c.op for c in query.clauses()]
    assert ops == ["!=", "not in", "is not", "="]
    assert query.clauses("assignee")[1].values[0].is_function
    assert [(k.field, k.descending) for k in query.order_by] == [("created", True), ("id", False)]


def test_order_by_alone_is_unbounded_but_valid_syntax() -> None:
    query = parse("ORDER BY key")
    assert query.where is None and query.order_by[0].field == "key"
    assert parse("").where is None


@pytest.mark.parametrize(
    ("jql", "fragment"),
    [
        ('project = "FOO', "has not been completed"),
        ("project FOO", "Expecting operator"),
        ("project =", "Expecting either a value, list or function but got end of the query"),
        ("project = FOO AND", "Expecting a field name"),
        ("project = FOO status = Done", "Expecting either 'OR' or 'AND' but got 'status'"),
        ("project in FOO", "Expecting '('"),
        ("project in (A, B", "Expecting ',' or ')'"),
        ("(project = A", "Expecting ')'"),
        ("project = A ORDER key", "Expecting 'by'"),
        ("project = A ORDER BY key ASC status", "Expecting ',' or the end"),
        ("assignee is Bob", "Expecting 'EMPTY' or 'NULL'"),
        ("project ! A", "Expecting operator"),
    ],
)
def test_syntax_errors_say_where(jql: str, fragment: str) -> None:
    with pytest.raises(JqlError) as caught:
        parse(jql)
    message = str(caught.value)
    assert message.startswith("Error in the JQL Query: ")
    assert fragment in message
    assert "(line 1, character " in message


def test_order_by_takes_at_most_seven_fields() -> None:
    parse("project = A ORDER BY " + ", ".join(["key"] * 7))
    with pytest.raises(JqlError, match="at most 7"):
        parse("project = A ORDER BY " + ", ".join(["key"] * 8))


def test_tokens_keep_quotes_and_escapes() -> None:
    tokens = list(tokenize(r'summary ~ "a \"b\"" AND updated>=-15m'))
    assert [(t.kind, t.text) for t in tokens] == [
        ("word", "summary"),
        ("op", "~"),
        ("string", 'a "b"'),
        ("word", "AND"),
        ("word", "updated"),
        ("op", ">="),
        ("word", "-15m"),
        ("eof", ""),
    ]


def test_absolute_literals_are_wall_time_in_the_user_zone() -> None:
    expected = datetime(2025, 3, 1, 9, 15, tzinfo=UTC)  # 10:15 in Berlin (UTC+1)
    assert lit("2025-03-01 10:15") == expected
    assert lit("2025/03/01 10:15") == expected
    assert lit("2025-03-01") == datetime(2025, 2, 28, 23, 0, tzinfo=UTC)  # midnight, Berlin
    assert lit("2025/3/1") == datetime(2025, 2, 28, 23, 0, tzinfo=UTC)
    la = datetime(2025, 3, 1, 18, 15, tzinfo=UTC)
    assert lit("2025-03-01 10:15", zone="America/Los_Angeles") == la


def test_dst_gap_moves_forward_and_repeated_hour_takes_the_first() -> None:
    # 02:30 does not exist in Berlin on 2025-03-30: it is read as 03:30 CEST (01:30 UTC).
    assert lit("2025-03-30 02:30") == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    # 02:30 happens twice on 2025-10-26: the first (CEST, UTC+2) counts.
    assert lit("2025-10-26 02:30") == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)


def test_relative_literals_count_from_now() -> None:
    assert lit("-15m") == datetime(2026, 1, 15, 11, 45, 30, tzinfo=UTC)
    assert lit("-15") == lit("-15m")  # minutes by default
    assert lit("-2h") == datetime(2026, 1, 15, 10, 0, 30, tzinfo=UTC)
    assert lit("-1d") == datetime(2026, 1, 14, 12, 0, 30, tzinfo=UTC)
    assert lit("-1w") == datetime(2026, 1, 8, 12, 0, 30, tzinfo=UTC)
    assert lit("-4w 2d") == datetime(2025, 12, 16, 12, 0, 30, tzinfo=UTC)
    assert lit("1h") == datetime(2026, 1, 15, 13, 0, 30, tzinfo=UTC)


def test_unquoted_number_is_epoch_millis_and_other_unquoted_dates_are_refused() -> None:
    assert lit("1740820542117", quoted=False) == datetime(2025, 3, 1, 9, 15, 42, 117000, UTC)
    with pytest.raises(JqlError, match="is invalid"):
        lit("2025-03-01", quoted=False)


@pytest.mark.parametrize("text", ["2025-13-01", "2025-03-01 10:15:42", "yesterday", "10:15"])
def test_invalid_dates_are_refused_with_the_valid_formats(text: str) -> None:
    with pytest.raises(JqlError, match="Valid formats include: 'yyyy/MM/dd HH:mm'"):
        lit(text)


def test_timestamps_render_with_millis_and_colonless_offset() -> None:
    ms = to_ms(datetime(2025, 3, 1, 9, 15, 42, 117000, UTC))
    assert render(ms, "America/Los_Angeles") == "2025-03-01T01:15:42.117-0800"
    assert render(ms, "UTC") == "2025-03-01T09:15:42.117+0000"
    assert render(ms, "Asia/Kolkata") == "2025-03-01T14:45:42.117+0530"
    assert render(ms + 890, "Europe/Berlin") == "2025-03-01T10:15:43.007+0100"
