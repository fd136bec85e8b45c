"""Reading a SQLite ``CREATE TABLE`` (as ``sqlite_master`` keeps it) for the full load's stage.

SQLite has no ``CREATE TABLE … LIKE``: the staging table of a full load (highmark/destinations/
stage.py) is written from the target's own DDL, keeping what makes the target refuse a row by its
own values — each column's declared type (its affinity), NOT NULL, DEFAULT and CHECK, and the
table's CHECK constraints and STRICT — and leaving out keys, foreign keys, collations and
generated expressions (the stage gets its unique index on the job's key separately).

The tokenizer follows SQLite's rules where they matter to structure: strings in single quotes
(``''`` inside), identifiers in double quotes, backquotes or brackets, comments, parentheses.
Every clause kept is copied verbatim from the DDL. DDL this reader does not follow raises
:class:`UnreadableDdl` (the caller falls back to a stage without constraints).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|--[^\n]*|/\*.*?(?:\*/|\Z))
    |(?P<string>[xX]'[^']*'|'(?:[^']|'')*')
    |(?P<ident>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
    |(?P<word>[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)
    |(?P<number>0[xX][0-9A-Fa-f]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<punct>.)
    """,
    re.S | re.X,
)

# Words that begin a column constraint: the column's type ends at the first of them.
_COLUMN_CONSTRAINTS = frozenset(
    {
        *("CONSTRAINT", "PRIMARY", "NOT", "NULL", "UNIQUE", "CHECK", "DEFAULT", "COLLATE"),
        *("REFERENCES", "GENERATED", "AS"),
    }
)


class UnreadableDdl(ValueError):
    """A ``CREATE TABLE`` this reader does not follow."""


@dataclass(frozen=True)
class Token:
    kind: str  # string, ident, word, number or punct
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        """A bare word in capitals (keywords); anything else as it is."""
        return self.text.upper() if self.kind == "word" else self.text

    @property
    def name(self) -> str:
        """The identifier the token names, unquoted."""
        if self.kind != "ident":
            return self.text
        if self.text[0] == "[":
            return self.text[1:-1]
        quote = self.text[0]
        return self.text[1:-1].replace(quote * 2, quote)


@dataclass(frozen=True)
class Check:
    """A CHECK clause (with its ``CONSTRAINT name``), verbatim, and the names it mentions."""

    sql: str
    names: frozenset[str]  # every identifier or word of the expression, lower-cased

    def names_only(self, kept: set[str], every: set[str]) -> bool:
        """Does the expression name none of the table's columns (``every``, lower-cased) but
        those ``kept``? (``names`` also holds function names and keywords: no columns.)"""
        return not (self.names - kept) & every


@dataclass
class Column:
    name: str
    type: str  # the declared type, verbatim ("" when none)
    kept: list[str] = field(default_factory=list)  # NOT NULL and DEFAULT clauses, verbatim
    checks: list[Check] = field(default_factory=list)


@dataclass
class Table:
    columns: list[Column]
    checks: list[Check]
    strict: bool

    def find(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)


def tokenize(sql: str) -> list[Token]:
    """The tokens of ``sql``, without spaces and comments."""
    tokens = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(Token(kind, match.group(), match.start(), match.end()))
    return tokens


def parse_table(sql: str) -> Table:
    """The columns, CHECK constraints and STRICT option of a ``CREATE TABLE`` statement."""
    tokens = tokenize(sql)
    opening = next((i for i, t in enumerate(tokens) if t.text == "("), None)
    if opening is None:
        raise UnreadableDdl("no column list (CREATE TABLE … AS SELECT?)")
    closing = _group_end(tokens, opening) - 1
    columns: list[Column] = []
    checks: list[Check] = []
    for part in _split(tokens, opening + 1, closing):
        if _starts_table_constraint(part):
            if part[0].upper == "CONSTRAINT":
                kind = part[2].upper if len(part) > 2 else ""
            else:
                kind = part[0].upper
            if kind == "CHECK":
                checks.append(_check(sql, part, 0, len(part)))
        else:
            columns.append(_column(sql, part))
    options = {t.upper for t in tokens[closing + 1 :] if t.kind == "word"}
    return Table(columns, checks, strict="STRICT" in options)


def stage_sql(create_sql: str, stage: str, mapped: list[str], quote: Callable[[str], str]) -> str:
    """``CREATE TABLE stage`` with the ``mapped`` columns of the table ``create_sql`` creates:
    their declared types, NOT NULL, DEFAULT and CHECK clauses, and the table's CHECK constraints
    that name no other column (one naming a column the stage lacks could not be created)."""
    table = parse_table(create_sql)
    keep = {name.lower() for name in mapped}
    every = {c.name.lower() for c in table.columns}
    definitions = []
    for name in mapped:
        column = table.find(name)
        if column is None:
            raise UnreadableDdl(f"no column {name}")
        clauses = [quote(name), column.type, *column.kept]
        clauses += [c.sql for c in column.checks if c.names_only(keep, every)]
        definitions.append(" ".join(c for c in clauses if c))
    definitions += [c.sql for c in table.checks if c.names_only(keep, every)]
    strict = " STRICT" if table.strict else ""
    return f"CREATE TABLE {stage} ({', '.join(definitions)}){strict}"


# ---------------------------------------------------------------------- structure


def _group_end(tokens: list[Token], opening: int) -> int:
    """The index after the ``)`` that closes the ``(`` at ``opening``."""
    depth = 0
    for i in range(opening, len(tokens)):
        if tokens[i].text == "(" and tokens[i].kind == "punct":
            depth += 1
        elif tokens[i].text == ")" and tokens[i].kind == "punct":
            depth -= 1
            if depth == 0:
                return i + 1
    raise UnreadableDdl("unbalanced parentheses")


def _skip(tokens: list[Token], i: int) -> int:
    """The index after the token at ``i``, or after the whole group it opens."""
    if tokens[i].kind == "punct" and tokens[i].text == "(":
        return _group_end(tokens, i)
    return i + 1


def _split(tokens: list[Token], start: int, end: int) -> list[list[Token]]:
    """The comma-separated parts of ``tokens[start:end]`` (commas inside parentheses kept)."""
    parts: list[list[Token]] = [[]]
    i = start
    while i < end:
        after = _skip(tokens, i)
        if tokens[i].kind == "punct" and tokens[i].text == ",":
            parts.append([])
        else:
            parts[-1].extend(tokens[i:after])
        i = after
    if not all(parts):
        raise UnreadableDdl("an empty column definition")
    return parts


def _starts_table_constraint(part: list[Token]) -> bool:
    first = part[0].upper
    following = part[1].upper if len(part) > 1 else ""
    return (
        (first == "CONSTRAINT" and len(part) > 2)
        or (first in ("PRIMARY", "FOREIGN") and following == "KEY")
        or (first in ("UNIQUE", "CHECK") and following == "(")
    )


def _check(sql: str, part: list[Token], start: int, end: int) -> Check:
    """The CHECK clause ``part[start:end]`` (``CONSTRAINT name`` included when it begins so)."""
    names = {t.name.lower() for t in part[start:end] if t.kind in ("word", "ident")}
    return Check(sql[part[start].start : part[end - 1].end], frozenset(names))


def _column(sql: str, part: list[Token]) -> Column:
    head = part[0]
    if head.kind not in ("word", "ident"):
        raise UnreadableDdl(f"a column definition begins with {head.text!r}")
    i = 1
    while i < len(part) and part[i].upper not in _COLUMN_CONSTRAINTS:
        i = _skip(part, i)
    declared = sql[part[1].start : part[i - 1].end] if i > 1 else ""
    column = Column(head.name, declared)
    while i < len(part):
        begin = i
        if part[i].upper == "CONSTRAINT":
            i += 2
        if i >= len(part):
            raise UnreadableDdl("CONSTRAINT without a constraint")
        kind = part[i].upper
        end = _constraint_end(part, i)
        if kind == "CHECK":
            column.checks.append(_check(sql, part, begin, end))
        elif kind in ("NOT", "DEFAULT"):
            column.kept.append(sql[part[begin].start : part[end - 1].end])
        i = end
    return column


def _constraint_end(part: list[Token], i: int) -> int:
    """The index after the column constraint that begins at ``part[i]``."""
    kind = part[i].upper
    if kind == "CHECK":
        return _group_end(part, i + 1)
    if kind == "DEFAULT":
        j = i + 1
        if j < len(part) and part[j].text in ("+", "-"):
            j += 1
        if j >= len(part):
            raise UnreadableDdl("DEFAULT without a value")
        return _skip(part, j)
    if kind == "REFERENCES":
        return _references_end(part, i + 2)
    if kind in ("GENERATED", "AS"):
        j = i
        while j < len(part) and part[j].text != "(":
            j += 1
        if j == len(part):
            raise UnreadableDdl("a generated column without its expression")
        j = _group_end(part, j)
        return j + 1 if j < len(part) and part[j].upper in ("STORED", "VIRTUAL") else j
    if kind not in ("PRIMARY", "NOT", "NULL", "UNIQUE", "COLLATE"):
        raise UnreadableDdl(f"an unknown column constraint {part[i].text!r}")
    # PRIMARY KEY, NOT NULL and COLLATE name: their second word is theirs whatever it is; then
    # ASC/DESC, ON CONFLICT …, AUTOINCREMENT up to the next constraint.
    j = i + (1 if kind in ("NULL", "UNIQUE") else 2)
    while j < len(part) and part[j].upper not in _COLUMN_CONSTRAINTS:
        j = _skip(part, j)
    return j


def _references_end(part: list[Token], j: int) -> int:
    """The end of a foreign-key clause, its table's name read (``j`` is after it)."""
    if j < len(part) and part[j].text == "(":
        j = _group_end(part, j)
    while j < len(part):
        word = part[j].upper
        following = part[j + 1].upper if j + 1 < len(part) else ""
        if word == "ON":  # ON DELETE|UPDATE SET NULL|SET DEFAULT|NO ACTION|CASCADE|RESTRICT
            j += 4 if part[j + 2].upper in ("SET", "NO") else 3
        elif word in ("MATCH", "INITIALLY") or (word == "NOT" and following == "DEFERRABLE"):
            j += 2
        elif word == "DEFERRABLE":
            j += 1
        else:
            break
    return j
