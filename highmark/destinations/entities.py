"""What an API connector declares about the objects it writes: entities, their fields, changes.

An :class:`Entity` becomes one target table ``<prefix><name>`` whose columns are its fields, plus
``raw`` (the whole API object, as JSON) and, when deletions are marked, ``deleted_at``. A page of
changes for one entity is an :class:`EntityChanges`; :class:`~highmark.destinations.records.
RecordWriter` writes the changes of several entities in one target transaction.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

RAW_COLUMN = "raw"
DELETED_AT_COLUMN = "deleted_at"
RESERVED_COLUMNS = (RAW_COLUMN, DELETED_AT_COLUMN)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# PostgreSQL truncates longer names (MySQL's limit is 64).
MAX_IDENTIFIER_LENGTH = 63


class FieldType(enum.StrEnum):
    """The value types a field can hold (canonical Python value in brackets)."""

    TEXT = "text"  # str
    INTEGER = "integer"  # int, 64-bit
    BOOLEAN = "boolean"  # bool
    TIMESTAMP = "timestamp"  # aware datetime, UTC
    JSON = "json"  # dict, list, str, number, bool
    FLOAT = "float"  # float


KEY_TYPES = (FieldType.TEXT, FieldType.INTEGER)
VERSION_TYPES = (FieldType.TIMESTAMP, FieldType.INTEGER, FieldType.FLOAT)


@dataclass(frozen=True)
class Field:
    """One column of an entity's table. Key columns are NOT NULL whatever ``nullable`` says."""

    name: str
    type: FieldType
    nullable: bool = True


@dataclass(frozen=True)
class Entity:
    """An API object kind and its table.

    ``key`` is the table's primary key (the API's stable id). ``parent`` names a field holding
    the id of the object this one belongs to (a pull request's commits): child sets can then be
    replaced per parent, and the column is indexed. ``version`` names a field (``updated``) that
    only grows: a stored row with a newer version is never overwritten by an older re-read.
    ``stamp`` names an INTEGER field that says which sync last saw a child row (a run id): a
    parent whose children are read over several pages has its child set replaced by stamp, not
    by the keys of one page (see :class:`EntityChanges`). A stamp alone changing is not a change.
    """

    name: str
    fields: tuple[Field, ...]
    key: tuple[str, ...] = ("id",)
    parent: str | None = None
    version: str | None = None
    stamp: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not IDENTIFIER.match(self.name):
            problems.append(f"name {self.name!r} is not an identifier ([A-Za-z_][A-Za-z0-9_]*)")
        names = [f.name for f in self.fields]
        for name in names:
            if not IDENTIFIER.match(name) or len(name) > MAX_IDENTIFIER_LENGTH:
                problems.append(f"field {name!r} is not an identifier of at most 63 characters")
            elif name.lower() in RESERVED_COLUMNS:
                problems.append(f"field {name!r} is reserved (raw and deleted_at are added)")
        if len({n.lower() for n in names}) != len(names):
            problems.append("two fields share a name")
        types = {f.name: f.type for f in self.fields}
        if not self.key:
            problems.append("the key is empty")
        for name in self.key:
            if types.get(name) not in KEY_TYPES:
                problems.append(f"key column {name!r} must be a TEXT or INTEGER field")
        if self.parent is not None and types.get(self.parent) not in KEY_TYPES:
            problems.append(f"parent {self.parent!r} must be a TEXT or INTEGER field")
        if self.version is not None and types.get(self.version) not in VERSION_TYPES:
            problems.append(f"version {self.version!r} must be a TIMESTAMP, INTEGER or FLOAT field")
        if self.stamp is not None and (
            types.get(self.stamp) is not FieldType.INTEGER or self.parent is None
        ):
            problems.append(f"stamp {self.stamp!r} must be an INTEGER field of a child entity")
        if problems:
            raise ValueError(f"entity {self.name}: {'; '.join(problems)}")

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def is_nullable(self, name: str) -> bool:
        return name not in self.key and self.field(name).nullable


@dataclass
class EntityChanges:
    """One page of changes to one entity, applied in this order:

    1. ``upserts``: each a dict of every field by name plus ``"raw"`` (the whole API object).
       A key given twice keeps the later object (the newer one, when the entity has a version).
    2. ``replace_children_of``: parent ids whose child set is exactly the upserted rows with that
       parent; their other stored rows are deleted (or marked). With ``stamp`` (for an entity
       that has one), the child set is instead every row of the parent stamped ``stamp``: the
       children of a parent read over several pages, each page upserted with that stamp, the last
       one replacing.
    3. ``deletes``: keys (tuples in ``key`` order) removed at the source. A key both upserted and
       deleted in one page ends deleted.
    """

    entity: str
    upserts: list[dict[str, Any]] = field(default_factory=list)
    replace_children_of: list[Any] = field(default_factory=list)
    deletes: list[tuple[Any, ...]] = field(default_factory=list)
    stamp: int | None = None
