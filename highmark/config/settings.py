"""Project-wide settings: how workers run, where alerts go, how long history is kept, who may
use the REST API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from highmark.config.common import Strict, duration_field, redact_url
from highmark.redact import register_secret


class WorkerSettings(Strict):
    """How workers run jobs: concurrency, polling, leases and heartbeats, the shutdown grace."""

    concurrency: Annotated[int, Field(gt=0, le=256)] = 4
    poll_interval: timedelta = timedelta(seconds=1)
    lease: timedelta = timedelta(seconds=60)
    heartbeat: timedelta = timedelta(seconds=10)
    grace: timedelta = timedelta(seconds=30)

    @field_validator("poll_interval", "lease", "heartbeat", "grace", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> timedelta:
        return duration_field(value)

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> WorkerSettings:
        if self.heartbeat * 2 > self.lease:
            raise ValueError("heartbeat must be at most half the lease")
        return self


AlertEvent = Literal[
    "failed",
    "consecutive_failures",
    "recovered",
    "stale",
    "cdc_lag",
    "schema_changed",
    "rows_rejected",
]
ALERT_EVENTS: tuple[str, ...] = (
    "failed", "consecutive_failures", "recovered", "stale", "cdc_lag", "schema_changed",
    "rows_rejected",
)  # fmt: skip


class _Sink(Strict):
    """Which alerts a sink gets: by default every event of every job."""

    jobs: list[str] | None = None
    events: list[AlertEvent] | None = None
    timeout: timedelta = timedelta(seconds=10)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> timedelta:
        return duration_field(value)

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


class SmtpSettings(Strict):
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


class AlertingSettings(Strict):
    consecutive_failures: Annotated[int, Field(ge=2)] = 3
    max_attempts: Annotated[int, Field(ge=1, le=50)] = 5


class RetentionSettings(Strict):
    runs_days: Annotated[int, Field(ge=1)] = 90
    summary_days: Annotated[int, Field(ge=1)] = 730
    # The REST API's audit log (who did what): kept longer than run detail, as audits are.
    audit_days: Annotated[int, Field(ge=1)] = 365
    batch_size: Annotated[int, Field(ge=100, le=100_000)] = 5_000
    # How often a worker purges by itself (none: only `highmark purge`).
    purge_every: timedelta | None = None

    @field_validator("purge_every", mode="before")
    @classmethod
    def _every(cls, value: Any) -> timedelta | None:
        return None if value is None else duration_field(value)


# The shortest bearer token accepted: guessable tokens are refused before the server starts.
MIN_TOKEN_LENGTH = 16


class ApiToken(Strict):
    """A bearer token of the REST API and dashboard: ``read`` sees, ``admin`` also acts."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")]
    token: str = Field(repr=False)
    scope: Literal["read", "admin"] = "read"

    @field_validator("token")
    @classmethod
    def _secret(cls, value: str) -> str:
        register_secret(value)
        if len(value) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"a token needs at least {MIN_TOKEN_LENGTH} characters (make one with: "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value


class ApiSettings(Strict):
    """``highmark serve``: its tokens, and whether ``/api/v1/metrics`` needs one."""

    tokens: list[ApiToken] = Field(default_factory=list)
    metrics_public: bool = False

    @model_validator(mode="after")
    def _distinct(self) -> ApiSettings:
        names = [t.name for t in self.tokens]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two tokens are named {name!r}")
        values = [t.token for t in self.tokens]
        if len(set(values)) != len(values):
            raise ValueError("two tokens have the same value")
        return self
