"""``highmark.yml`` -> :class:`ProjectConfig`: parsing, ``${VAR}`` expansion, validation, redaction.

The whole file is validated before any work. Every error names the file, the line, the job and the
key, in one line. Secrets substituted from the environment and passwords in connection URLs are
registered with :mod:`highmark.redact` as soon as they are read.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from highmark.errors import ConfigError
from highmark.models import LoadType, WatermarkType
from highmark.redact import register_secret

PROJECT_FILE_NAME = "highmark.yml"
PROJECT_ENV_VAR = "HIGHMARK_PROJECT"
DEFAULT_CONTROL_URL = "sqlite:///.highmark/control.db"
DEFAULT_BATCH_SIZE = 10_000
DEFAULT_TIMEOUT_SECONDS = 3600
DEFAULT_RETRY_COUNT = 3
MAX_PARALLELISM = 16

_ENV_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
_IDENTIFIER = re.compile(r"^[^\s\"'`;]+$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SECRET_KEY_HINTS = ("password", "passwd", "secret", "token", "apikey", "api_key", "key")
# URL schemes a user may write, and the SQLAlchemy driver highmark picks for each.
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
    "sqlite": "sqlite",
}
# Other names of a backend, as SQLAlchemy knows it (``postgres+psycopg://`` -> ``postgresql+…``).
_ALIASES = {"postgres": "postgresql", "mariadb": "mysql"}


def parse_duration(value: str | float | int) -> timedelta:
    """``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` or a number of seconds -> timedelta."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 2h or 1d")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


def _parse_url(raw: str) -> URL:
    """Parse a connection URL, register its secrets, refuse a scheme highmark cannot use."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ValueError(
            "is not a connection URL (sqlite:///…, postgresql://…, mysql://…)"
        ) from None
    register_secret(url.password if isinstance(url.password, str) else None)
    for key, value in url.query.items():
        if any(hint in key.lower() for hint in _SECRET_KEY_HINTS):
            for item in [value] if isinstance(value, str) else value:
                register_secret(item)
    backend = url.get_backend_name()
    if backend not in _DRIVERS:
        raise ValueError(
            f"has the unsupported scheme {backend!r} (use sqlite, postgresql, mysql or mariadb)"
        )
    return url


def normalize_url(raw: str, base_dir: Path) -> URL:
    """Parse a connection URL, pick its driver, anchor relative SQLite paths at ``base_dir``."""
    url = _parse_url(raw)
    backend = url.get_backend_name()
    if "+" not in url.drivername:
        url = url.set(drivername=_DRIVERS[backend])
    elif backend in _ALIASES:
        url = url.set(drivername=f"{_ALIASES[backend]}+{url.get_driver_name()}")
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            if not path.is_absolute():
                path = (base_dir / path).resolve()
            url = url.set(database=str(path))
    return url


def redact_url(url: URL | str) -> str:
    """A URL as it may be shown: the password reads ``***``."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


# --------------------------------------------------------------------------------------- models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ConnectionSpec(_Strict):
    """A named database connection. ``timezone`` says how naive timestamps are to be read."""

    url: str = Field(repr=False)  # may hold a password
    timezone: str = "UTC"

    @field_validator("url")
    @classmethod
    def _known_url(cls, value: str) -> str:
        _parse_url(value)  # refuse a bad URL before any work, and learn its password now
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return check_zone(value)


class TableRef(_Strict):
    """A table on a named connection; ``schema.table`` names are allowed."""

    connection: str
    table: str

    @field_validator("table")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2 or not all(part and _IDENTIFIER.match(part) for part in parts):
            raise ValueError(f"{value!r} is not a table name (use table or schema.table)")
        return value

    @property
    def schema_name(self) -> str | None:
        return self.table.split(".")[0] if "." in self.table else None

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]


class WatermarkSpec(_Strict):
    column: str
    type: WatermarkType = WatermarkType.TIMESTAMP
    tiebreaker: str | None = None
    lag: timedelta = timedelta(0)
    on_null: Literal["error", "skip", "include"] = "error"
    # What to do when the source role cannot see other sessions' transactions (the upper bound is
    # then blind to late commits): refuse to run unless `lag` is set, or allow it knowingly.
    blind_bound: Literal["refuse", "allow"] = "refuse"

    @field_validator("lag", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        return parse_duration(value)

    @model_validator(mode="after")
    def _coherent(self) -> WatermarkSpec:
        if self.type is WatermarkType.INTEGER and self.tiebreaker:
            raise _KeyedError(
                ("tiebreaker",), "an integer watermark takes no tiebreaker (the column is the key)"
            )
        if self.type is WatermarkType.INTEGER and self.lag:
            raise _KeyedError(("lag",), "lag applies to timestamp watermarks only")
        return self


class SoftDeleteSpec(_Strict):
    column: str
    mode: Literal["mark", "delete"] = "mark"


def check_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def _duration_field(value: Any) -> timedelta:
    return value if isinstance(value, timedelta) else parse_duration(value)


class RetryBackoff(_Strict):
    """Exponential backoff between retries of a failed scheduled run (with jitter)."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=30)

    @field_validator("base", "cap", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> timedelta:
        return _duration_field(value)


class WorkerSettings(_Strict):
    """How workers run jobs: concurrency, polling, leases and heartbeats, the shutdown grace."""

    concurrency: Annotated[int, Field(gt=0, le=256)] = 4
    poll_interval: timedelta = timedelta(seconds=1)
    lease: timedelta = timedelta(seconds=60)
    heartbeat: timedelta = timedelta(seconds=10)
    grace: timedelta = timedelta(seconds=30)

    @field_validator("poll_interval", "lease", "heartbeat", "grace", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> timedelta:
        return _duration_field(value)

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> WorkerSettings:
        if self.heartbeat * 2 > self.lease:
            raise ValueError("heartbeat must be at most half the lease")
        return self


class JobSpec(_Strict):
    """One job of the project file, validated."""

    job_id: Annotated[str, Field(pattern=_JOB_ID_PATTERN)]
    name: str | None = None
    description: str | None = None
    load_type: LoadType
    source: TableRef
    target: TableRef
    primary_key: Annotated[list[str], Field(min_length=1)]
    watermark: WatermarkSpec | None = None
    soft_delete: SoftDeleteSpec | None = None
    batch_size: Annotated[int, Field(gt=0, le=1_000_000)] = DEFAULT_BATCH_SIZE
    # Ranges of a first load that are loaded at once (highmark/parallel.py says where it applies).
    parallelism: Annotated[int, Field(ge=1, le=MAX_PARALLELISM)] = 1
    schedule: str | None = None
    schedule_timezone: str | None = None
    timeout_seconds: Annotated[int, Field(gt=0)] = DEFAULT_TIMEOUT_SECONDS
    retry_count: Annotated[int, Field(ge=0, le=100)] = DEFAULT_RETRY_COUNT
    retry_backoff: RetryBackoff = Field(default_factory=RetryBackoff)
    is_active: bool = True
    # How old the last success may get before the job counts as stale (alerts, metrics).
    freshness: timedelta | None = None

    @field_validator("freshness", mode="before")
    @classmethod
    def _freshness(cls, value: Any) -> timedelta | None:
        return None if value is None else _duration_field(value)

    @field_validator("primary_key", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("load_type")
    @classmethod
    def _supported(cls, value: LoadType) -> LoadType:
        if value is LoadType.CDC:
            raise ValueError("'cdc' is not supported yet (use full or incremental)")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a valid cron expression")
        return value

    @field_validator("schedule_timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @model_validator(mode="after")
    def _coherent(self) -> JobSpec:
        if self.load_type is LoadType.INCREMENTAL and self.watermark is None:
            raise _KeyedError(
                ("watermark",), "an incremental job needs a watermark: {column: …, type: …}"
            )
        if len(set(self.primary_key)) != len(self.primary_key):
            raise _KeyedError(("primary_key",), "lists a column twice")
        return self

    @property
    def job_name(self) -> str:
        return self.name or self.job_id


AlertEvent = Literal["failed", "consecutive_failures", "recovered", "stale"]
ALERT_EVENTS: tuple[str, ...] = ("failed", "consecutive_failures", "recovered", "stale")


class _Sink(_Strict):
    """Which alerts a sink gets: by default every event of every job."""

    jobs: list[str] | None = None
    events: list[AlertEvent] | None = None
    timeout: timedelta = timedelta(seconds=10)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> timedelta:
        return _duration_field(value)

    def wants(self, job_id: str, event: str) -> bool:
        return (self.jobs is None or job_id in self.jobs) and (
            self.events is None or event in self.events
        )


class WebhookSink(_Sink):
    """A JSON POST; ``format`` shapes the body for Slack or Microsoft Teams incoming webhooks."""

    type: Literal["webhook"]
    url: str = Field(repr=False)  # incoming-webhook URLs carry a token
    format: Literal["json", "slack", "teams"] = "json"
    headers: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_validator("url")
    @classmethod
    def _secret_url(cls, value: str) -> str:
        # Incoming-webhook URLs carry their token in the path: treat the whole URL as a secret.
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        register_secret(value)
        return value

    @field_validator("headers")
    @classmethod
    def _secret_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for header in value.values():
            register_secret(header)
        return value

    @property
    def name(self) -> str:
        return f"webhook {self.format} {redact_url(self.url).split('/')[2]}"


class SmtpSettings(_Strict):
    host: str
    port: int = 587
    user: str | None = None
    password: str | None = Field(default=None, repr=False)
    starttls: bool = True
    ssl: bool = False  # SMTPS (implicit TLS, usually port 465)
    verify: bool = True  # check the server's certificate
    ca_file: Path | None = None

    @field_validator("password")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        register_secret(value)
        return value


class EmailSink(_Sink):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, populate_by_name=True
    )

    type: Literal["email"]
    to: Annotated[list[str], Field(min_length=1)]
    sender: str = Field(default="highmark@localhost", alias="from")
    smtp: SmtpSettings

    @property
    def name(self) -> str:
        return f"email {','.join(self.to)}"


class CommandSink(_Sink):
    """A program that gets the alert as JSON on stdin (exit 0: delivered)."""

    type: Literal["command"]
    command: list[str] | str

    @property
    def name(self) -> str:
        return f"command {self.command if isinstance(self.command, str) else self.command[0]}"


AlertSink = Annotated[WebhookSink | EmailSink | CommandSink, Field(discriminator="type")]


class AlertingSettings(_Strict):
    consecutive_failures: Annotated[int, Field(ge=2)] = 3
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 5


class RetentionSettings(_Strict):
    runs_days: Annotated[int, Field(ge=1)] = 90
    summary_days: Annotated[int, Field(ge=1)] = 730
    batch_size: Annotated[int, Field(ge=100, le=100_000)] = 5_000
    # How often a worker purges by itself (none: only `highmark purge`).
    purge_every: timedelta | None = None

    @field_validator("purge_every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> timedelta | None:
        return None if value is None else _duration_field(value)


class ProjectConfig(_Strict):
    """The parsed project file. Pure data: it knows nothing of databases."""

    path: Path
    control: str = DEFAULT_CONTROL_URL
    connections: dict[str, ConnectionSpec] = Field(default_factory=dict)
    jobs: dict[str, JobSpec] = Field(default_factory=dict)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    alerts: list[AlertSink] = Field(default_factory=list)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @field_validator("control")
    @classmethod
    def _known_url(cls, value: str) -> str:
        _parse_url(value)
        return value

    @field_validator("connections", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: {"url": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("jobs", mode="before")
    @classmethod
    def _job_ids(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                k: {**v, "job_id": str(k)} if isinstance(v, Mapping) else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _references(self) -> ProjectConfig:
        for job in self.jobs.values():
            for side in ("source", "target"):
                ref: TableRef = getattr(job, side)
                if ref.connection not in self.connections:
                    known = ", ".join(sorted(self.connections)) or "none defined"
                    raise _KeyedError(
                        ("jobs", job.job_id, side, "connection"),
                        f"unknown connection {ref.connection!r} (known: {known})",
                    )
        return self

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def connection_url(self, name: str) -> URL:
        return normalize_url(self.connections[name].url, self.base_dir)

    def control_url(self) -> URL:
        return normalize_url(self.control, self.base_dir)


class _KeyedError(ValueError):
    """A cross-field error that knows the path of the key it is about, relative to the model that
    raised it (the root model raises it with the key's whole path)."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# -------------------------------------------------------------------------------------- loading


def find_project_file(explicit: str | Path | None = None) -> Path:
    """``--project``, else ``$HIGHMARK_PROJECT``, else ``./highmark.yml``."""
    chosen = explicit or os.environ.get(PROJECT_ENV_VAR) or PROJECT_FILE_NAME
    path = Path(chosen).expanduser()
    if path.is_dir():
        path = path / PROJECT_FILE_NAME
    if not path.is_file():
        hint = (
            ""
            if explicit or os.environ.get(PROJECT_ENV_VAR)
            else (" (create one, or name it with --project or HIGHMARK_PROJECT)")
        )
        raise ConfigError(f"{path}: project file not found{hint}")
    return path.resolve()


def load_project_config(path: str | Path | None = None) -> ProjectConfig:
    """Read, expand and validate a project file; raise :class:`ConfigError` on the first problem."""
    file = find_project_file(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the project file: {exc.strerror}") from None
    return parse_project_text(text, file)


def parse_project_text(text: str, file: Path) -> ProjectConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    lines = _line_index(node)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{file}:1: the project file must be a mapping of control/connections/jobs"
        )
    expanded = _expand_env(raw, (), file, lines)
    try:
        return ProjectConfig.model_validate({**expanded, "path": file})
    except ValidationError as exc:
        raise _config_error(exc, file, lines) from None
    except _KeyedError as exc:
        raise ConfigError(_where(file, lines, exc.path) + ": " + exc.message) from None


def _expand_env(
    value: Any, path: tuple[str, ...], file: Path, lines: dict[tuple[str, ...], int]
) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, (*path, str(k)), file, lines) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*path, str(i)), file, lines) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(
                f"{_where(file, lines, path)}: environment variable {name} is not set"
            )
        resolved = os.environ[name]
        if any(hint in name.lower() for hint in _SECRET_KEY_HINTS) or any(
            hint in part.lower() for part in path for hint in _SECRET_KEY_HINTS
        ):
            register_secret(resolved)
        return resolved

    return _ENV_PATTERN.sub(substitute, value)


def _line_index(node: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """Map each key path of the YAML document to its 1-based line number."""
    index: dict[tuple[str, ...], int] = {}

    def walk(current: yaml.Node, path: tuple[str, ...]) -> None:
        index.setdefault(path, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                key = (*path, str(key_node.value))
                index[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(current, yaml.SequenceNode):
            for i, item in enumerate(current.value):
                walk(item, (*path, str(i)))

    if node is not None:
        walk(node, ())
    return index


def _where(file: Path, lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> str:
    probe = path
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    location = f"{file}:{line}" if line else str(file)
    if len(path) >= 2 and path[0] == "jobs":
        key = ".".join(path[2:]) or "(job)"
        return f"{location}: job {path[1]}: {key}"
    return f"{location}: {'.'.join(path) or '(top level)'}"


def _config_error(
    exc: ValidationError, file: Path, lines: dict[tuple[str, ...], int]
) -> ConfigError:
    errors = exc.errors()
    # A misspelt key also makes the key it was meant to be "missing": report the misspelling.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    path = _loc(error)
    message = str(error["msg"]).removeprefix("Value error, ")
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, _KeyedError):
        path, message = (*path, *ctx_error.path), ctx_error.message
    explained = 1
    if error["type"] == "extra_forbidden":
        message = f"unknown key {path[-1]!r}"
        close = difflib.get_close_matches(path[-1], _keys_of(path[:-1]), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
            if any(e["type"] == "missing" and _loc(e) == (*path[:-1], close[0]) for e in errors):
                explained += 1
    elif error["type"] == "enum":
        expected = (error.get("ctx") or {}).get("expected", "")
        message = f"{error['input']!r} is not one of {expected}"
    elif error["type"] == "missing":
        message = "is required"
    if path and path[-1] == "job_id" and len(path) == 3:
        message = f"job id {path[1]!r} is not valid (letters, digits, _ . -; at most 100)"
    more = len(errors) - explained
    extra = f" (and {more} more)" if more > 0 else ""
    return ConfigError(f"{_where(file, lines, path)}: {message}{extra}")


def _loc(error: Any) -> tuple[str, ...]:
    """An error's key path, without pydantic's union/function markers."""
    path = (str(p) for p in error["loc"])
    return tuple(p for p in path if not p.startswith(("function-", "tagged-union")))


def _keys_of(section: tuple[str, ...]) -> list[str]:
    """The keys a section of the project file may have (to suggest one for a misspelt key)."""
    model: type[BaseModel]
    match section:
        case ():
            model = ProjectConfig
        case ("connections", _):
            model = ConnectionSpec
        case ("jobs", _):
            model = JobSpec
        case ("jobs", _, "source" | "target"):
            model = TableRef
        case ("jobs", _, "watermark"):
            model = WatermarkSpec
        case ("jobs", _, "soft_delete"):
            model = SoftDeleteSpec
        case _:
            return []
    return [key for key in model.model_fields if key not in ("path", "job_id")]


@dataclass(frozen=True)
class ResolvedConnection:
    """A connection ready to open: its URL with the chosen driver, and its time zone."""

    name: str
    url: URL
    timezone: str

    @property
    def display_url(self) -> str:
        return redact_url(self.url)
