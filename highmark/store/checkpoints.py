"""Checkpoint tools on ``etl_jobs.checkpoint_data``: partial updates and queries by field.

Partial updates happen inside the database — ``jsonb_set`` on PostgreSQL, ``JSON_SET`` on
MySQL/MariaDB, ``json_set`` on SQLite — so that two writers updating different keys of one
checkpoint never lose each other's update. Paths are lists of keys (``a.b`` -> ``["a", "b"]``);
missing parent objects are created. The result is read back in the same transaction and handed to
a validator before it is committed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, text, update

from highmark.errors import ConfigError, JobNotFoundError
from highmark.store.store import ControlStore
from highmark.store.tables import etl_job_slots, etl_jobs

Validator = Callable[[str, dict[str, Any]], None]
_QUERY = re.compile(
    r"^\s*([A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*)\s*(>=|<=|!=|=|>|<|\?)\s*(.+?)\s*$"
)


def parse_path(key: str) -> list[str]:
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{key!r} is not a checkpoint key (use name or a.b.c)")
    return parts


def parse_value(value: str) -> Any:
    """A command-line value as JSON (``5``, ``true``, ``"x"``, ``[1,2]``), else as a string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@dataclass(frozen=True)
class Query:
    """``recovery_mode=true``, ``batch_number>5``, ``repositories_processed?repo1``."""

    path: list[str]
    op: str
    value: Any

    @classmethod
    def parse(cls, expression: str) -> Query:
        match = _QUERY.match(expression)
        if not match:
            raise ConfigError(
                f"{expression!r} is not a checkpoint query (KEY=VALUE, KEY!=VALUE, KEY>N, KEY>=N, "
                "KEY<N, KEY<=N or KEY?ELEMENT)"
            )
        key, op, raw = match.groups()
        value = raw if op == "?" else parse_value(raw)
        if op in (">", ">=", "<", "<=") and (
            not isinstance(value, int | float) or isinstance(value, bool)
        ):
            raise ConfigError(f"{expression!r}: {op} compares with a number, not {raw!r}")
        return cls(parse_path(key), op, value)


class CheckpointStore:
    """Checkpoint operations of the control store (all their SQL lives here)."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store
        self.dialect = store.engine.dialect.name

    # ------------------------------------------------------------------ updates

    def set(self, job_id: str, path: list[str], value: Any, validate: Validator) -> dict[str, Any]:
        return self._apply(job_id, path, "set", value, validate)

    def append(
        self, job_id: str, path: list[str], value: Any, validate: Validator
    ) -> dict[str, Any]:
        return self._apply(job_id, path, "append", value, validate)

    def incr(
        self, job_id: str, path: list[str], amount: int | float, validate: Validator
    ) -> dict[str, Any]:
        return self._apply(job_id, path, "incr", amount, validate)

    def reset(self, job_id: str) -> None:
        """Clear the checkpoint and the job's error state (retries waiting on a failure)."""
        self.store.get_job(job_id)
        with self.store._begin("cannot reset the checkpoint") as connection:
            connection.execute(
                update(etl_jobs).where(etl_jobs.c.job_id == job_id).values(checkpoint_data=None)
            )
            connection.execute(
                update(etl_job_slots)
                .where(etl_job_slots.c.job_id == job_id, etl_job_slots.c.status == "retry_wait")
                .values(status="cancelled", updated_at=self.store._now(connection))
            )

    def _apply(
        self, job_id: str, path: list[str], op: str, value: Any, validate: Validator
    ) -> dict[str, Any]:
        self.store.get_job(job_id)
        params: dict[str, Any] = {"job_id": job_id}
        expression = self._expression(path, op, value, params)
        with self.store._begin("cannot update the checkpoint") as connection:
            result = connection.execute(
                text(f"UPDATE etl_jobs SET checkpoint_data = {expression} WHERE job_id = :job_id"),
                params,
            )
            if result.rowcount != 1:
                raise JobNotFoundError(f"unknown job {job_id!r}")
            document = self._read(connection, job_id) or {}
            validate(job_id, document)  # raising here rolls the update back
        return document

    def _read(self, connection: Connection, job_id: str) -> dict[str, Any] | None:
        value = connection.execute(
            select(etl_jobs.c.checkpoint_data).where(etl_jobs.c.job_id == job_id)
        ).scalar()
        if isinstance(value, str):  # MariaDB keeps JSON as text
            value = json.loads(value)
        return value if isinstance(value, dict) else None

    def _expression(self, path: list[str], op: str, value: Any, params: dict[str, Any]) -> str:
        params["v"] = json.dumps(value)
        params["n"] = value
        if self.dialect == "postgresql":
            return self._postgres(path, op, params)
        if self.dialect == "mysql":
            return self._mysql(path, op, params)
        return self._sqlite(path, op, params)

    @staticmethod
    def _postgres(path: list[str], op: str, params: dict[str, Any]) -> str:
        doc = "COALESCE(checkpoint_data, '{}'::jsonb)"
        for i in range(1, len(path)):  # jsonb_set does not create missing parents
            params[f"p{i}"] = path[:i]
            p = f"CAST(:p{i} AS text[])"
            doc = f"jsonb_set({doc}, {p}, COALESCE(({doc}) #> {p}, '{{}}'::jsonb), true)"
        params["path"] = path
        p = "CAST(:path AS text[])"
        if op == "set":
            return f"jsonb_set({doc}, {p}, CAST(:v AS jsonb), true)"
        if op == "append":
            return (
                f"jsonb_set({doc}, {p}, COALESCE(({doc}) #> {p}, '[]'::jsonb) "
                f"|| jsonb_build_array(CAST(:v AS jsonb)), true)"
            )
        return (
            f"jsonb_set({doc}, {p}, to_jsonb(COALESCE((({doc}) #>> {p})::numeric, 0) + :n), true)"
        )

    @staticmethod
    def _mysql(path: list[str], op: str, params: dict[str, Any]) -> str:
        doc = "COALESCE(checkpoint_data, JSON_OBJECT())"
        for i in range(1, len(path)):  # JSON_SET does not create missing parents
            params[f"p{i}"] = _json_path(path[:i])
            doc = f"JSON_SET({doc}, :p{i}, COALESCE(JSON_EXTRACT({doc}, :p{i}), JSON_OBJECT()))"
        params["path"] = _json_path(path)
        if op == "set":
            return f"JSON_SET({doc}, :path, JSON_EXTRACT(:v, '$'))"
        if op == "append":
            return (
                f"JSON_SET({doc}, :path, JSON_MERGE_PRESERVE(COALESCE(JSON_EXTRACT({doc}, :path), "
                "JSON_ARRAY()), JSON_ARRAY(JSON_EXTRACT(:v, '$'))))"
            )
        return f"JSON_SET({doc}, :path, COALESCE(JSON_EXTRACT({doc}, :path), 0) + :n)"

    @staticmethod
    def _sqlite(path: list[str], op: str, params: dict[str, Any]) -> str:
        doc = "COALESCE(checkpoint_data, '{}')"  # json_set creates missing parents itself
        params["path"] = _json_path(path)
        if op == "set":
            return f"json_set({doc}, :path, json(:v))"
        if op == "append":
            return (
                f"json_set({doc}, :path, json_insert(COALESCE(json_extract({doc}, :path), '[]'), "
                "'$[#]', json(:v)))"
            )
        return f"json_set({doc}, :path, COALESCE(json_extract({doc}, :path), 0) + :n)"

    # ------------------------------------------------------------------ queries

    def find(self, query: Query) -> list[tuple[str, dict[str, Any]]]:
        """Jobs whose checkpoint matches ``query`` (the reference's query-by-field)."""
        params: dict[str, Any] = {}
        condition = self._condition(query, params)
        with self.store._begin("cannot query checkpoints") as connection:
            rows = connection.execute(
                text(
                    "SELECT job_id FROM etl_jobs WHERE checkpoint_data IS NOT NULL AND "
                    f"({condition}) ORDER BY job_id"
                ),
                params,
            ).all()
            return [(row.job_id, self._read(connection, row.job_id) or {}) for row in rows]

    def _condition(self, query: Query, params: dict[str, Any]) -> str:
        op, value = query.op, query.value
        params["v"] = json.dumps(value)
        params["s"] = value if isinstance(value, str) else json.dumps(value)
        params["n"] = value
        if self.dialect == "postgresql":
            params["path"] = query.path
            at = "checkpoint_data #> CAST(:path AS text[])"
            if op == "=":
                return f"{at} = CAST(:v AS jsonb)"
            if op == "!=":
                return f"{at} IS DISTINCT FROM CAST(:v AS jsonb)"
            if op == "?":
                return (
                    f"jsonb_typeof({at}) = 'array' AND {at} @> jsonb_build_array(CAST(:s AS text))"
                )
            return f"jsonb_typeof({at}) = 'number' AND ({at})::text::numeric {op} :n"
        params["path"] = _json_path(query.path)
        if self.dialect == "mysql":
            at = "JSON_EXTRACT(checkpoint_data, :path)"
            if op in ("=", "!="):
                # MariaDB compares extracted JSON strings unquoted on one side only: compare
                # the type and the unquoted text instead.
                params["jt"] = _mysql_type(value)
                params["text"] = value if isinstance(value, str) else json.dumps(value)
                same = f"(JSON_TYPE({at}) = :jt AND JSON_UNQUOTE({at}) = :text)"
                return same if op == "=" else f"NOT COALESCE({same}, FALSE)"
            if op == "?":
                return f"JSON_TYPE({at}) = 'ARRAY' AND JSON_CONTAINS({at}, JSON_QUOTE(:s))"
            return (
                f"JSON_TYPE({at}) IN ('INTEGER', 'DOUBLE', 'DECIMAL') "
                f"AND CAST({at} AS DECIMAL(38, 10)) {op} :n"
            )
        at = "json_extract(checkpoint_data, :path)"
        kind = "json_type(checkpoint_data, :path)"
        if op in ("=", "!="):
            params["t"] = _sqlite_type(value)
            same = f"({kind} = :t AND {at} IS :x)"
            params["x"] = int(value) if isinstance(value, bool) else (
                json.dumps(value) if isinstance(value, dict | list) else value
            )  # fmt: skip
            return same if op == "=" else f"NOT COALESCE({same}, 0)"
        if op == "?":
            return (
                f"{kind} = 'array' AND EXISTS (SELECT 1 FROM json_each(checkpoint_data, :path) "
                "WHERE json_each.value = :s AND json_each.type = 'text')"
            )
        return f"{kind} IN ('integer', 'real') AND {at} {op} :n"


def _json_path(keys: list[str]) -> str:
    return "$" + "".join("." + json.dumps(k) for k in keys)


def _mysql_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "DOUBLE"
    if isinstance(value, str):
        return "STRING"
    return "ARRAY" if isinstance(value, list) else "OBJECT"


def _sqlite_type(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "real"
    if isinstance(value, str):
        return "text"
    return "array" if isinstance(value, list) else "object"
