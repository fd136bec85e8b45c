"""JQL syntax: a tokenizer and a recursive-descent parser for the subset of JQL a connector uses.

This module knows only the grammar; what a field or a literal *means* (and whether it exists) is
decided in :mod:`.criteria`. Grammar (keywords case-insensitive)::

    query    := [or_expr] [ORDER BY sort ("," sort)*] EOF
    or_expr  := and_expr (OR and_expr)*
    and_expr := not_expr (AND not_expr)*
    not_expr := NOT not_expr | "(" or_expr ")" | clause
    clause   := FIELD op value
              | FIELD [NOT] IN "(" value ("," value)* ")"
              | FIELD IS [NOT] (EMPTY | NULL)
    value    := "quoted" | 'quoted' | bare-word | function "(" [value ("," value)*] ")"
    sort     := FIELD [ASC | DESC]

Errors are :class:`JqlError` with Jira's wording ("Error in the JQL Query: …
(line 1, character N)"), which the server turns into a 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

KEYWORDS = frozenset(
    {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}
)
OPERATORS = ("!=", ">=", "<=", "!~", "=", ">", "<", "~")
_SPECIAL = set("()\",'=!<>~ \t\r\n")
MAX_ORDER_BY = 7


class JqlError(Exception):
    """The JQL cannot be used; ``str(exc)`` is the message Jira puts in ``errorMessages``."""


@dataclass(frozen=True)
class Token:
    kind: str  # "string", "word", "op", "(", ")", ",", "eof"
    text: str
    position: int  # 1-based character

    def is_keyword(self, word: str) -> bool:
        return self.kind == "word" and self.text.lower() == word


@dataclass(frozen=True)
class Value:
    """A literal as written: ``quoted`` tells ``"2025-03-01"`` from ``2025-03-01``."""

    text: str
    quoted: bool
    position: int
    args: tuple[Value, ...] | None = None  # set for a function call such as currentUser()

    @property
    def is_function(self) -> bool:
        return self.args is not None


@dataclass(frozen=True)
class Clause:
    """``field op value(s)``; ``op`` is lower-cased (``in``, ``not in``, ``is``, ``is not``)."""

    field: str
    op: str
    values: tuple[Value, ...]
    position: int


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Clause | And | Or | Not


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool
    position: int


@dataclass(frozen=True)
class Query:
    """A parsed JQL query: its restriction (``None`` when unbounded) and its ORDER BY."""

    text: str
    where: Node | None
    order_by: tuple[SortKey, ...]

    def clauses(self, field: str | None = None) -> list[Clause]:
        """Every clause (of ``field``, case-insensitive), in the order written."""
        found: list[Clause] = []

        def walk(node: Node) -> None:
            if isinstance(node, Clause):
                if field is None or node.field.lower() == field.lower():
                    found.append(node)
            elif isinstance(node, Not):
                walk(node.item)
            else:
                for item in node.items:
                    walk(item)

        if self.where is not None:
            walk(self.where)
        return found


def tokenize(text: str) -> Iterator[Token]:
    """Split JQL into tokens; an unfinished quote is an error, as in Jira."""
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "\"'":
            start, i, chars = i, i + 1, []
            while i < n and text[i] != char:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise _error(f"The quoted string '{''.join(chars)}' has not been completed.", start)
            yield Token("string", "".join(chars), start + 1)
            i += 1
        elif char in "(),":
            yield Token(char, char, i + 1)
            i += 1
        elif op := next((op for op in OPERATORS if text.startswith(op, i)), None):
            yield Token("op", op, i + 1)
            i += len(op)
        elif char == "!":
            raise _error("Expecting operator but got '!'.", i)
        else:
            start = i
            while i < n and text[i] not in _SPECIAL:
                i += 1
            yield Token("word", text[start:i], start + 1)
    yield Token("eof", "", n + 1)


def parse(text: str) -> Query:
    """Parse ``text`` into a :class:`Query`, or raise :class:`JqlError`."""
    return _Parser(text).query()


def _error(message: str, index: int) -> JqlError:
    return JqlError(f"Error in the JQL Query: {message} (line 1, character {index + 1})")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(tokenize(text))
        self.i = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, expected: str) -> JqlError:
        token = self.token
        got = "end of the query" if token.kind == "eof" else f"'{token.text}'"
        return _error(f"Expecting {expected} but got {got}.", token.position - 1)

    def query(self) -> Query:
        where: Node | None = None
        if self.token.kind != "eof" and not self.token.is_keyword("order"):
            where = self.or_expr()
        order_by: tuple[SortKey, ...] = ()
        if self.token.is_keyword("order"):
            order_by = self.order_by()
        if self.token.kind != "eof":
            raise self.fail("either 'OR' or 'AND'" if not order_by else "',' or the end")
        return Query(self.text, where, order_by)

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.token.is_keyword("or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.token.is_keyword("and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(items))

    def not_expr(self) -> Node:
        if self.token.is_keyword("not"):
            self.advance()
            return Not(self.not_expr())
        if self.token.kind == "(":
            self.advance()
            node = self.or_expr()
            if self.token.kind != ")":
                raise self.fail("')'")
            self.advance()
            return node
        return self.clause()

    def clause(self) -> Clause:
        token = self.token
        if token.kind not in ("word", "string") or (
            token.kind == "word" and token.text.lower() in KEYWORDS
        ):
            raise self.fail("a field name")
        self.advance()
        field = token.text
        op_token = self.token
        if op_token.kind == "op":
            self.advance()
            return Clause(field, op_token.text, (self.value(),), token.position)
        if op_token.is_keyword("in") or op_token.is_keyword("not"):
            self.advance()
            op = "in"
            if op_token.is_keyword("not"):
                if not self.token.is_keyword("in"):
                    raise self.fail("'IN'")
                self.advance()
                op = "not in"
            return Clause(field, op, self.value_list(), token.position)
        if op_token.is_keyword("is"):
            self.advance()
            op = "is"
            if self.token.is_keyword("not"):
                self.advance()
                op = "is not"
            if not (self.token.is_keyword("empty") or self.token.is_keyword("null")):
                raise self.fail("'EMPTY' or 'NULL'")
            empty = self.advance()
            return Clause(field, op, (Value("EMPTY", False, empty.position),), token.position)
        raise self.fail(
            "operator: one of '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', "
            "'IS' or 'IS NOT'"
        )

    def value_list(self) -> tuple[Value, ...]:
        if self.token.kind != "(":
            raise self.fail("'('")
        self.advance()
        values = [self.value()]
        while self.token.kind == ",":
            self.advance()
            values.append(self.value())
        if self.token.kind != ")":
            raise self.fail("',' or ')'")
        self.advance()
        return tuple(values)

    def value(self) -> Value:
        token = self.token
        if token.kind == "string":
            self.advance()
            return Value(token.text, True, token.position)
        if token.kind != "word" or token.text.lower() in KEYWORDS - {"empty", "null"}:
            raise self.fail("either a value, list or function")
        self.advance()
        if self.token.kind != "(":
            return Value(token.text, False, token.position)
        self.advance()
        args: list[Value] = []
        if self.token.kind != ")":
            args.append(self.value())
            while self.token.kind == ",":
                self.advance()
                args.append(self.value())
        if self.token.kind != ")":
            raise self.fail("')'")
        self.advance()
        return Value(token.text, False, token.position, tuple(args))

    def order_by(self) -> tuple[SortKey, ...]:
        self.advance()
        if not self.token.is_keyword("by"):
            raise self.fail("'by'")
        self.advance()
        keys = [self.sort_key()]
        while self.token.kind == ",":
            self.advance()
            keys.append(self.sort_key())
        if len(keys) > MAX_ORDER_BY:
            raise JqlError(
                f"The ORDER BY clause can have at most {MAX_ORDER_BY} fields; it has {len(keys)}."
            )
        return tuple(keys)

    def sort_key(self) -> SortKey:
        token = self.token
        if token.kind not in ("word", "string") or token.text.lower() in KEYWORDS:
            raise self.fail("a field name")
        self.advance()
        descending = False
        if self.token.is_keyword("asc") or self.token.is_keyword("desc"):
            descending = self.advance().text.lower() == "desc"
        return SortKey(token.text, descending, token.position)
