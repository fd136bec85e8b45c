"""The parsed project file: connections of every type, jobs of every kind, settings.

A connection's ``type`` (default ``sql``, a database) picks its model, and a job's kind is the type
of its source connection (highmark/kinds.py): both are validated by models chosen here, and their
errors keep the path of the key they are about.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL

from highmark import kinds
from highmark.config.columns import SchemaPolicy
from highmark.config.common import KeyedError, NestedErrors, Strict, normalize_url, parse_url
from highmark.config.connections import ConnectionSpec, ResolvedConnection, SqlConnectionSpec
from highmark.config.jobs import JobSpec
from highmark.config.settings import (
    AlertingSettings,
    AlertSink,
    ApiSettings,
    RetentionSettings,
    WorkerSettings,
)
from highmark.config.tables import OnBadRows
from highmark.errors import ConfigError

DEFAULT_CONTROL_URL = "sqlite:///.highmark/control.db"
# Top-level keys that set a default for every job whose kind takes the key.
JOB_DEFAULTS = ("schema_changes", "mask_key", "on_bad_rows")


class ProjectConfig(Strict):
    """The parsed project file. Pure data: it knows nothing of databases."""

    path: Path
    control: str = DEFAULT_CONTROL_URL
    connections: dict[str, ConnectionSpec] = Field(default_factory=dict)
    # Defaults of every job that does not say (validated before the jobs, which take them).
    schema_changes: SchemaPolicy | None = None
    mask_key: str | None = Field(default=None, exclude=True, repr=False)
    on_bad_rows: OnBadRows | None = None
    jobs: dict[str, JobSpec] = Field(default_factory=dict)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    alerts: list[AlertSink] = Field(default_factory=list)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @field_validator("control")
    @classmethod
    def _known_url(cls, value: str) -> str:
        parse_url(value)
        return value

    @field_validator("connections", mode="before")
    @classmethod
    def _connections(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        parsed: dict[str, ConnectionSpec] = {}
        for name, raw in value.items():
            section = {"url": raw} if isinstance(raw, str) else raw
            if not isinstance(section, Mapping):
                return value  # pydantic says what is wrong with it
            type_name = str(section.get("type", kinds.SQL))
            if not kinds.is_known(type_name):
                known = ", ".join(kinds.known_types())
                raise KeyedError(
                    (str(name), "type"), f"unknown connection type {type_name!r} (known: {known})"
                )
            parsed[str(name)] = _validate(kinds.connection_model(type_name), section, (str(name),))
        return parsed

    @field_validator("jobs", mode="before")
    @classmethod
    def _jobs(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, Mapping):
            return value
        connections: dict[str, ConnectionSpec] = info.data.get("connections") or {}
        parsed: dict[str, JobSpec] = {}
        for job_id, raw in value.items():
            if not isinstance(raw, Mapping):
                return value
            source = raw.get("source")
            name = source.get("connection") if isinstance(source, Mapping) else None
            connection = connections.get(name) if isinstance(name, str) else None
            type_name = connection.type if connection is not None else kinds.SQL
            model = kinds.job_model(type_name)
            section = {**_defaults(model, info.data), **raw, "job_id": str(job_id)}
            parsed[str(job_id)] = _validate(model, section, (str(job_id),))
        return parsed

    @model_validator(mode="after")
    def _references(self) -> ProjectConfig:
        for job in self.jobs.values():
            for side in ("source", "target"):
                name = getattr(job, side).connection
                where = ("jobs", job.job_id, side, "connection")
                if name not in self.connections:
                    known = ", ".join(sorted(self.connections)) or "none defined"
                    raise KeyedError(where, f"unknown connection {name!r} (known: {known})")
            target = self.connections[job.target.connection]
            if not target.is_database:
                raise KeyedError(
                    ("jobs", job.job_id, "target", "connection"),
                    f"{job.target.connection!r} is a {target.type} connection; a job writes "
                    "into a database (sqlite, postgresql, mysql)",
                )
        return self

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def database(self, name: str) -> SqlConnectionSpec:
        spec = self.connections[name]
        if not isinstance(spec, SqlConnectionSpec):
            raise ConfigError(f"connection {name!r} is a {spec.type} connection, not a database")
        return spec

    def connection_url(self, name: str) -> URL:
        return normalize_url(self.database(name).url, self.base_dir)

    def resolve(self, name: str) -> ResolvedConnection:
        """A database connection ready to open."""
        spec = self.database(name)
        return ResolvedConnection(name=name, url=self.connection_url(name), timezone=spec.timezone)

    def control_url(self) -> URL:
        return normalize_url(self.control, self.base_dir)


def _defaults(model: type[Any], top: dict[str, Any]) -> dict[str, Any]:
    return {
        key: top[key]
        for key in JOB_DEFAULTS
        if top.get(key) is not None and key in model.model_fields
    }


def _validate(model: type[Any], section: Any, path: tuple[str, ...]) -> Any:
    try:
        return model.model_validate(section)
    except ValidationError as exc:
        raise NestedErrors(path, model, exc.errors()) from None


def model_at(model: type[BaseModel], path: tuple[str, ...]) -> type[BaseModel] | None:
    """The model of the section at ``path`` under ``model`` (to suggest a misspelt key's
    intended spelling), following fields whose type is a model (or a dict or list of one)."""
    import typing

    current: Any = model
    for key in path:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(key)
        if field is None:
            return None
        candidates = [field.annotation]
        found = None
        while candidates:
            annotation = candidates.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found = annotation
                break
            candidates.extend(a for a in typing.get_args(annotation) if a is not type(None))
        current = found
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None
