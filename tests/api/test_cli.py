"""The commands of this part, run for real: ``highmark serve`` (refusals, and a real server
answering), ``highmark audit``, ``highmark backfill``; the ``api:`` section of the project file
validated like the rest; every command in the README's command table."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from highmark.cli import cli
from highmark.config import parse_project_text
from highmark.errors import ConfigError
from highmark.redact import scrub
from tests.api.support import ADMIN_TOKEN, READ_TOKEN, WAIT_SECONDS, write_api_project
from tests.cli.runner import assert_error, finish, hm, start
from tests.helpers import seed_orders

README = Path(__file__).resolve().parents[2] / "README.md"
ENV = {"HM_READ_TOKEN": READ_TOKEN, "HM_ADMIN_TOKEN": ADMIN_TOKEN}
API_SECTION = """\
connections: {}
jobs: {}
api:
  tokens:
%s
"""


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (
            "    - {name: a, token: short, scope: read}",
            "api.tokens.0.token: a token needs at least 16",
        ),
        ("    - {name: a, token: aaaaaaaaaaaaaaaaaaaa, scope: root}", "api.tokens.0.scope"),
        ("    - {name: 'a b', token: aaaaaaaaaaaaaaaaaaaa}", "api.tokens.0.name"),
        (
            "    - {name: a, token: aaaaaaaaaaaaaaaaaaaa}\n"
            "    - {name: a, token: bbbbbbbbbbbbbbbbbbbb}",
            "two tokens are named 'a'",
        ),
        ("    - {name: a, token: aaaaaaaaaaaaaaaaaaaa, scop: read}", "unknown key 'scop'"),
    ],
)
def test_the_api_section_is_validated(tokens: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        parse_project_text(API_SECTION % tokens, tmp_path / "highmark.yml")
    assert message in str(error.value)
    assert "aaaaaaaaaaaaaaaaaaaa" not in str(error.value)


def test_tokens_are_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HM_SOME_VALUE", "a-token-from-the-environment")
    config = parse_project_text(
        API_SECTION % "    - {name: ops, token: '${HM_SOME_VALUE}', scope: admin}",
        tmp_path / "highmark.yml",
    )
    assert config.api.tokens[0].scope == "admin" and not config.api.metrics_public
    assert "a-token-from" not in repr(config)
    assert scrub("Bearer a-token-from-the-environment") == "Bearer ***"


def test_every_command_is_in_the_readme_table() -> None:
    table = README.read_text()
    commands: list[str] = []
    for name, command in cli.commands.items():
        subcommands = getattr(command, "commands", None)
        commands += [f"{name} {sub}" for sub in subcommands] if subcommands else [name]
        assert command.help, name
    documented: set[str] = set()
    for span in re.findall(r"`highmark ([^`]+)`", table):
        words = span.split()
        for first in words[0].split("\\|"):
            documented.add(first)
            if len(words) > 1:
                documented.update(f"{first} {second}" for second in words[1].split("\\|"))
    assert [c for c in commands if c not in documented] == []


def test_serve_refuses_what_it_cannot_do_safely(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    (tmp_path / "highmark.yml").write_text(
        f"control: {url}\nconnections: {{db: {url}}}\njobs: {{}}\n"
    )
    no_tokens = hm("serve", cwd=tmp_path, code=2)
    assert_error(no_tokens, 2, "no api.tokens", "--no-auth")
    exposed = hm("serve", "--no-auth", "--host", "0.0.0.0", cwd=tmp_path, code=2)
    assert_error(exposed, 2, "--no-auth serves on 127.0.0.1 only")


def test_a_real_server_answers_and_stops_on_sigterm(
    tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    seed_orders(engine_for(url), 5)
    write_api_project(tmp_path / "highmark.yml", url)
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ("serve", "--port", str(port))
    server = start(args, tmp_path, ENV)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        started = httpx.post(f"{base}/api/v1/jobs/sync/runs", headers=admin).json()
        while True:
            run = httpx.get(f"{base}/api/v1/runs/{started['run_id']}", headers=admin).json()
            if run["run_status"] != "running":
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert run["run_status"] == "success" and run["triggered_by"] == "api"
    finally:
        server.send_signal(signal.SIGTERM)
    result = finish(args, server, code=0)
    assert "POST /api/v1/jobs/sync/runs" in result.err  # the access log...
    assert ADMIN_TOKEN not in result.out + result.err  # ...never shows a token

    runs = json.loads(hm("runs", "sync", "--json", cwd=tmp_path, env=ENV).out)
    assert [r["triggered_by"] for r in runs] == ["api"]
    audit = hm("audit", "--json", cwd=tmp_path, env=ENV)
    [entry] = json.loads(audit.out)
    assert (entry["actor"], entry["scope"], entry["status_code"]) == ("ops", "admin", 202)
    assert entry["action"] == "POST /api/v1/jobs/{job_id}/runs" and entry["target"] == "sync"
    table = hm("audit", "--since", "1h", "--actor", "ops", cwd=tmp_path, env=ENV).out
    assert "ops (admin)" in table and f"run {runs[0]['run_id']} started" in table
    assert json.loads(hm("audit", "--actor", "nobody", "--json", cwd=tmp_path, env=ENV).out) == []


def test_backfill_command(tmp_path: Path, engine_for: Callable[[str], Engine]) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    seed_orders(engine_for(url), 9)
    write_api_project(tmp_path / "highmark.yml", url)
    hm("run", "sync", cwd=tmp_path, env=ENV)
    usage = hm("backfill", "sync", "--from", "2024-01-01T12:00:00Z", cwd=tmp_path, env=ENV, code=2)
    assert "--from X --to Y" in usage.err
    not_sql = hm("backfill", "broken", "--from", "1", "--to", "2", cwd=tmp_path, env=ENV, code=2)
    assert "no watermark yet" in not_sql.err or "cannot be backfilled" in not_sql.err
    done = hm(
        "backfill", "sync", "--from", "2024-01-01T12:00:00Z", "--to", "2024-01-01T12:00:02Z",
        "--json", cwd=tmp_path, env=ENV,
    )  # fmt: skip
    run = json.loads(done.out)
    assert run["run_status"] == "success" and run["rows_read"] == 6
    assert run["backfill_window"] == {"from": "2024-01-01T12:00:00Z", "to": "2024-01-01T12:00:02Z"}
    line = hm(
        "backfill", "sync", "--from", "2024-01-01T12:00:00Z", "--to", "2024-01-01T12:00:01Z",
        cwd=tmp_path, env=ENV,
    ).out  # fmt: skip
    assert "success" in line and "window up to 2024-01-01T12:00:01Z" in line
