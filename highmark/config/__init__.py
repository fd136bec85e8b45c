"""``highmark.yml`` -> :class:`ProjectConfig`: parsing, ``${VAR}`` expansion, validation, redaction.

common.py       strict models, durations, time zones, database URLs, keyed errors
connections.py  connections: databases, and the base of API connections
jobs.py         what every job has (JobSpec), whatever its kind
tables.py       SQL-table jobs (TableJobSpec)
settings.py     worker, alerts, retention, api
project.py      ProjectConfig: connections and jobs of every kind (highmark/kinds.py)
loading.py      reading the file, ``${VAR}``, one-line errors
"""

from highmark.config.common import normalize_url, parse_duration, redact_url
from highmark.config.connections import (
    ApiConnectionSpec,
    ConnectionSpec,
    ResolvedConnection,
    SqlConnectionSpec,
)
from highmark.config.jobs import (
    DEFAULT_RETRY_COUNT,
    DEFAULT_TIMEOUT_SECONDS,
    JobSpec,
    MarkSpec,
    RetryBackoff,
)
from highmark.config.loading import (
    PROJECT_ENV_VAR,
    PROJECT_FILE_NAME,
    find_project_file,
    load_project_config,
    parse_project_text,
)
from highmark.config.project import DEFAULT_CONTROL_URL, ProjectConfig
from highmark.config.settings import (
    ALERT_EVENTS,
    AlertingSettings,
    AlertSink,
    ApiSettings,
    ApiToken,
    CommandSink,
    EmailSink,
    RetentionSettings,
    SmtpSettings,
    WebhookSink,
    WorkerSettings,
)
from highmark.config.tables import (
    DEFAULT_BATCH_SIZE,
    MAX_PARALLELISM,
    SoftDeleteSpec,
    TableJobSpec,
    TableRef,
    WatermarkSpec,
)

__all__ = [
    "ALERT_EVENTS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CONTROL_URL",
    "DEFAULT_RETRY_COUNT",
    "DEFAULT_TIMEOUT_SECONDS",
    "MAX_PARALLELISM",
    "PROJECT_ENV_VAR",
    "PROJECT_FILE_NAME",
    "AlertSink",
    "AlertingSettings",
    "ApiConnectionSpec",
    "ApiSettings",
    "ApiToken",
    "CommandSink",
    "ConnectionSpec",
    "EmailSink",
    "JobSpec",
    "MarkSpec",
    "ProjectConfig",
    "ResolvedConnection",
    "RetentionSettings",
    "RetryBackoff",
    "SmtpSettings",
    "SoftDeleteSpec",
    "SqlConnectionSpec",
    "TableJobSpec",
    "TableRef",
    "WatermarkSpec",
    "WebhookSink",
    "WorkerSettings",
    "find_project_file",
    "load_project_config",
    "normalize_url",
    "parse_duration",
    "parse_project_text",
    "redact_url",
]
