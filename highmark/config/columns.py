"""Which source columns a SQL-table job loads, and which it masks (``columns``,
``exclude_columns``, ``mask_columns``, ``mask_key``), and how it meets schema changes
(``schema_changes``: highmark/schema/). CDC jobs take the same choice: their snapshot and their
change stream carry the chosen columns only, masked as they are read."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from highmark.config.common import KeyedError, Strict
from highmark.redact import register_secret

SchemaPolicy = Literal["evolve", "freeze"]
DEFAULT_SCHEMA_POLICY: SchemaPolicy = "evolve"


class ColumnChoice(Strict):
    """The columns a job reads from its source table (by default all) and those it masks."""

    columns: list[str] | None = None
    exclude_columns: list[str] = Field(default_factory=list)
    # Loaded as a keyed hash (HMAC-SHA256, hex) of the value instead of the value itself.
    mask_columns: list[str] = Field(default_factory=list)
    # A secret: never dumped (etl_jobs.definition, the API), never shown.
    mask_key: str | None = Field(default=None, exclude=True, repr=False)

    @field_validator("columns", "exclude_columns", "mask_columns", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("mask_key")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        register_secret(value)
        return value

    def keeps(self, name: str) -> bool:
        """Is the source column ``name`` read (names compare case-insensitively)?"""
        lowered = name.lower()
        if any(c.lower() == lowered for c in self.exclude_columns):
            return False
        return self.columns is None or any(c.lower() == lowered for c in self.columns)

    def masks(self, name: str) -> bool:
        return any(c.lower() == name.lower() for c in self.mask_columns)

    @property
    def chooses_columns(self) -> bool:
        return self.columns is not None or bool(self.exclude_columns) or bool(self.mask_columns)

    def check_choice(self, needed: dict[str, str]) -> None:
        """Refuse a choice that leaves out (or masks) a column the job needs to work:
        ``needed`` maps each such column to what it is ("the primary key", …)."""
        if self.columns is not None and self.exclude_columns:
            raise KeyedError(("exclude_columns",), "use columns or exclude_columns, not both")
        lists = {
            "columns": self.columns or [],
            "exclude_columns": self.exclude_columns,
            "mask_columns": self.mask_columns,
        }
        for key, names in lists.items():
            seen = [n.lower() for n in names]
            twice = next((n for n in names if seen.count(n.lower()) > 1), None)
            if twice is not None:
                raise KeyedError((key,), f"lists column {twice} twice")
        for name, role in needed.items():
            if not self.keeps(name):
                key = "columns" if self.columns is not None else "exclude_columns"
                raise KeyedError((key,), f"column {name} cannot be left out: it is {role}")
            if self.masks(name):
                raise KeyedError(("mask_columns",), f"column {name} cannot be masked: it is {role}")
        for name in self.mask_columns:
            if not self.keeps(name):
                raise KeyedError(("mask_columns",), f"column {name} is masked but not loaded")
        if self.mask_columns and not self.mask_key:
            raise KeyedError(
                ("mask_key",),
                "mask_columns needs a mask_key (a secret: mask_key: ${HIGHMARK_MASK_KEY})",
            )
