"""The project file: every mistake is one clear line (file, line, job, key) and exit 2, before any
work; ``${VAR}`` and ``$$``; relative SQLite paths; URL schemes and drivers; redaction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from highmark.config import (
    PROJECT_ENV_VAR,
    load_project_config,
    normalize_url,
    parse_project_text,
    redact_url,
)
from highmark.errors import ConfigError
from highmark.models import LoadType, WatermarkType
from highmark.redact import scrub
from tests.cli.runner import assert_error, finish, start

# Line numbers matter: the error cases below name them.
PROJECT = """\
control: sqlite:///control.db
connections:
  shop: sqlite:///shop.db
  warehouse:
    url: sqlite:///warehouse.db
    timezone: Europe/Paris
jobs:
  orders_sync:
    load_type: incremental
    source: {connection: shop, table: orders}
    target: {connection: warehouse, table: orders}
    primary_key: [id]
    watermark: {column: updated_at, type: timestamp, tiebreaker: id}
    batch_size: 500
    schedule: "*/15 * * * *"
    timeout_seconds: 600
"""
UNSET = "HM_TEST_SURELY_UNSET_VARIABLE"


def edited(old: str, new: str) -> str:
    assert old in PROJECT, old
    return PROJECT.replace(old, new, 1)


# (case id, project text, what the one line must say: line, job, key, problem)
ERRORS: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "yaml-syntax",
        edited("    load_type: incremental\n", "    load_type: incremental: oops\n"),
        (":9:", "YAML syntax error"),
    ),
    (
        "unknown-load-type",
        edited("load_type: incremental", "load_type: streaming"),
        (":9:", "job orders_sync", "load_type", "'streaming'", "'full'"),
    ),
    (
        "cdc-not-supported-yet",
        edited("load_type: incremental", "load_type: cdc"),
        (":9:", "job orders_sync", "load_type", "'cdc' is not supported yet"),
    ),
    (
        "invalid-cron",
        edited('schedule: "*/15 * * * *"', 'schedule: "61 * * * *"'),
        (":15:", "job orders_sync", "schedule", "'61 * * * *'", "cron"),
    ),
    (
        "negative-batch-size",
        edited("batch_size: 500", "batch_size: -5"),
        (":14:", "job orders_sync", "batch_size", "greater than 0"),
    ),
    (
        "zero-timeout",
        edited("timeout_seconds: 600", "timeout_seconds: 0"),
        (":16:", "job orders_sync", "timeout_seconds", "greater than 0"),
    ),
    (
        "unset-variable",
        edited("table: orders}\n    target", f'table: "${{{UNSET}}}"}}\n    target'),
        (":10:", "job orders_sync", "source.table", f"environment variable {UNSET} is not set"),
    ),
    (
        "unknown-connection",
        edited("{connection: warehouse,", "{connection: lake,"),
        (":11:", "job orders_sync", "target.connection", "unknown connection 'lake'"),
    ),
    (
        "misspelt-key",
        edited("primary_key: [id]", "primary_keys: [id]"),
        (":12:", "job orders_sync", "unknown key 'primary_keys'", "did you mean 'primary_key'"),
    ),
    (
        "incremental-without-watermark",
        edited("    watermark: {column: updated_at, type: timestamp, tiebreaker: id}\n", ""),
        (":8:", "job orders_sync", "watermark", "needs a watermark"),
    ),
    (
        "integer-watermark-with-tiebreaker",
        edited("type: timestamp, tiebreaker: id", "type: integer, tiebreaker: id"),
        (":13:", "job orders_sync", "watermark.tiebreaker", "integer watermark"),
    ),
    (
        "integer-watermark-with-lag",
        edited("type: timestamp, tiebreaker: id", "type: integer, lag: 5m"),
        (":13:", "job orders_sync", "watermark.lag", "timestamp watermarks only"),
    ),
    (
        "invalid-job-id",
        edited("  orders_sync:\n", "  'orders sync!':\n"),
        (":8:", "job orders sync!", "job id 'orders sync!' is not valid"),
    ),
    (
        "bad-time-zone",
        edited("timezone: Europe/Paris", "timezone: Mars/Olympus_Mons"),
        (":6:", "connections.warehouse.timezone", "unknown time zone 'Mars/Olympus_Mons'"),
    ),
    (
        "bad-lag-duration",
        edited("tiebreaker: id}", "tiebreaker: id, lag: soon}"),
        (":13:", "job orders_sync", "watermark.lag", "'soon' is not a duration"),
    ),
    (
        "negative-lag",
        edited("tiebreaker: id}", "tiebreaker: id, lag: -30}"),
        (":13:", "job orders_sync", "watermark.lag", "negative"),
    ),
    (
        "unknown-watermark-type",
        edited("type: timestamp", "type: date"),
        (":13:", "job orders_sync", "watermark.type", "'date'"),
    ),
    (
        "empty-primary-key",
        edited("primary_key: [id]", "primary_key: []"),
        (":12:", "job orders_sync", "primary_key"),
    ),
    (
        "primary-key-twice",
        edited("primary_key: [id]", "primary_key: [id, id]"),
        (":12:", "job orders_sync", "primary_key", "twice"),
    ),
    (
        "unsupported-url-scheme",
        edited("shop: sqlite:///shop.db", "shop: oracle://etl:pw@db/shop"),
        (":3:", "connections.shop.url", "unsupported scheme 'oracle'"),
    ),
    (
        "not-a-url",
        edited("control: sqlite:///control.db", "control: just a file name"),
        (":1:", "control", "is not a connection URL"),
    ),
    (
        "unknown-top-level-key",
        "conections: {}\n",
        (":1:", "unknown key 'conections'", "did you mean 'connections'"),
    ),
    ("not-a-mapping", "- a\n- b\n", (":1:", "must be a mapping")),
    (
        "unknown-connection-type",
        edited("  shop: sqlite:///shop.db\n", "  shop: {type: salesforce, url: https://x}\n"),
        (":3:", "connections.shop.type", "unknown connection type 'salesforce'", "github", "jira"),
    ),
    (
        "api-connection-as-target",
        edited(
            "  shop: sqlite:///shop.db\n",
            "  shop: sqlite:///shop.db\n  gh: {type: github, token: t0k3n}\n",
        ).replace("{connection: warehouse,", "{connection: gh,"),
        (":12:", "job orders_sync", "target.connection", "'gh' is a github connection"),
    ),
    (
        "misspelt-key-in-an-api-connection",
        edited(
            "  shop: sqlite:///shop.db\n",
            "  shop: sqlite:///shop.db\n  gh: {type: github, tokn: t0k3n}\n",
        ),
        (":4:", "connections.gh.tokn", "unknown key 'tokn'", "did you mean 'token'"),
    ),
]


def config_error(text: str, file: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_project_text(text, file)
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "fragments"), [(t, f) for _, t, f in ERRORS], ids=[i for i, _, _ in ERRORS]
)
def test_a_bad_project_file_is_one_clear_line(
    text: str, fragments: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    file = tmp_path / "highmark.yml"
    message = config_error(text, file)
    assert message.startswith(f"{file}:"), message
    for fragment in fragments:
        assert fragment in message, message
    # load_project_config says the same about the same file.
    file.write_text(text)
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        load_project_config(file)


def test_the_cli_reports_a_bad_project_file_in_one_line_and_exits_2(tmp_path: Path) -> None:
    cases = [case for case in ERRORS if case[0] in {
        "yaml-syntax", "cdc-not-supported-yet", "unset-variable", "misspelt-key",
        "incremental-without-watermark",
    }]  # fmt: skip
    started = []
    for name, text, _ in cases:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "highmark.yml").write_text(text)
        started.append((("jobs",), start(("jobs",), folder)))
    for (name, text, fragments), (args, process) in zip(cases, started, strict=True):
        result = finish(args, process, code=None)
        line = assert_error(result, 2, *fragments)
        assert line == "highmark: error: " + config_error(text, tmp_path / name / "highmark.yml")
        # Nothing was done: not even the control store was created.
        assert not (tmp_path / name / "control.db").exists()


# ------------------------------------------------------------------------------ valid files


def test_a_valid_project(tmp_path: Path) -> None:
    config = parse_project_text(PROJECT, tmp_path / "highmark.yml")
    job = config.jobs["orders_sync"]
    assert (job.job_id, job.job_name, job.load_type) == (
        "orders_sync",
        "orders_sync",
        LoadType.INCREMENTAL,
    )
    assert job.watermark is not None
    assert (job.watermark.column, job.watermark.type, job.watermark.tiebreaker) == (
        "updated_at", WatermarkType.TIMESTAMP, "id",
    )  # fmt: skip
    assert (job.batch_size, job.timeout_seconds, job.schedule) == (500, 600, "*/15 * * * *")
    assert config.connections["warehouse"].timezone == "Europe/Paris"
    assert config.connections["shop"].timezone == "UTC"


def test_defaults_and_short_forms(tmp_path: Path) -> None:
    config = parse_project_text(
        "connections: {db: 'sqlite:///x.db'}\n"
        "jobs:\n"
        "  copy:\n"
        "    load_type: full\n"
        "    source: {connection: db, table: main.orders}\n"
        "    target: {connection: db, table: orders_copy}\n"
        "    primary_key: id\n",
        tmp_path / "highmark.yml",
    )
    job = config.jobs["copy"]
    assert job.primary_key == ["id"]
    assert (job.source.schema_name, job.source.table_name) == ("main", "orders")
    assert (job.batch_size, job.timeout_seconds, job.retry_count, job.is_active) == (
        10_000, 3600, 3, True,
    )  # fmt: skip
    assert config.control_url().database == str(tmp_path / ".highmark" / "control.db")
    assert parse_project_text("", tmp_path / "highmark.yml").jobs == {}


def test_environment_variables_and_dollar_escapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HM_TEST_TABLE", "orders_2024")
    monkeypatch.delenv(UNSET, raising=False)
    text = edited("table: orders}\n    target", "table: '${HM_TEST_TABLE}'}\n    target")
    text = text.replace(
        "    batch_size: 500\n",
        "    batch_size: 500\n    description: 'costs $$5, not $${" + UNSET + "}'\n",
    )
    job = parse_project_text(text, tmp_path / "highmark.yml").jobs["orders_sync"]
    assert job.source.table == "orders_2024"
    # $$ is a literal $, and what follows it is not a variable (no error for the unset one).
    assert job.description == "costs $5, not ${" + UNSET + "}"


def test_relative_sqlite_paths_are_the_project_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "highmark.yml").write_text(
        edited("shop: sqlite:///shop.db", "shop: sqlite:///data/../shop.db").replace(
            "url: sqlite:///warehouse.db", f"url: sqlite:///{tmp_path / 'elsewhere.db'}"
        )
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_project_config(folder / "highmark.yml")
    assert config.path == folder / "highmark.yml"
    assert config.connection_url("shop").database == str(folder / "shop.db")
    assert config.connection_url("warehouse").database == str(tmp_path / "elsewhere.db")
    assert config.control_url().database == str(folder / "control.db")
    assert normalize_url("sqlite:///:memory:", folder).database == ":memory:"
    assert normalize_url("sqlite://", folder).database in (None, "")


def test_which_project_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "highmark.yml").write_text(PROJECT)
    other = tmp_path / "other.yml"
    other.write_text(PROJECT.replace("orders_sync", "other_job"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PROJECT_ENV_VAR, raising=False)
    assert list(load_project_config().jobs) == ["orders_sync"]
    assert list(load_project_config(tmp_path).jobs) == ["orders_sync"]  # a folder
    monkeypatch.setenv(PROJECT_ENV_VAR, str(other))
    assert list(load_project_config().jobs) == ["other_job"]
    assert list(load_project_config(tmp_path / "highmark.yml").jobs) == ["orders_sync"]
    monkeypatch.setenv(PROJECT_ENV_VAR, str(tmp_path / "missing.yml"))
    with pytest.raises(ConfigError, match=r"missing\.yml: project file not found$"):
        load_project_config()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://etl:pw@db:5432/shop", "postgresql+psycopg"),
        ("postgres://etl:pw@db:5432/shop", "postgresql+psycopg"),
        ("postgresql+psycopg://etl:pw@db:5432/shop", "postgresql+psycopg"),
        ("postgres+psycopg://etl:pw@db:5432/shop", "postgresql+psycopg"),
        ("mysql://etl:pw@db:5432/shop", "mysql+pymysql"),
        ("mariadb://etl:pw@db:5432/shop", "mysql+pymysql"),
        ("mariadb+pymysql://etl:pw@db:5432/shop", "mysql+pymysql"),
        ("mysql+pymysql://etl:pw@db:5432/shop", "mysql+pymysql"),
    ],
)
def test_url_schemes_get_their_driver(url: str, driver: str, tmp_path: Path) -> None:
    config = parse_project_text(
        edited("shop: sqlite:///shop.db", f"shop: '{url}'"), tmp_path / "highmark.yml"
    )
    parsed = config.connection_url("shop")
    assert parsed.drivername == driver
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "etl", "pw", "db", 5432, "shop",
    )  # fmt: skip
    assert config.connection_url("warehouse").drivername == "sqlite"


def test_redact_url_hides_the_password(tmp_path: Path) -> None:
    assert redact_url("postgresql://etl:S3cret@db:5432/shop") == "postgresql://etl:***@db:5432/shop"
    url = normalize_url("mysql://etl:S3cret@db/shop", tmp_path)
    assert redact_url(url) == "mysql+pymysql://etl:***@db/shop"
    assert redact_url("postgresql://etl@db/shop") == "postgresql://etl@db/shop"


def test_passwords_are_secrets_from_the_moment_the_file_is_read(tmp_path: Path) -> None:
    text = edited("shop: sqlite:///shop.db", "shop: postgresql://etl:Xq9-unit-secret@db/shop")
    text = text.replace(
        "url: sqlite:///warehouse.db",
        "url: 'postgresql://etl@db/wh?password=Zk7-query-secret'",
    )
    parse_project_text(text, tmp_path / "highmark.yml")
    assert scrub("a Xq9-unit-secret b Zk7-query-secret") == "a *** b ***"
