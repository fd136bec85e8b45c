"""A GitHub token never leaves highmark: not in a log record (at DEBUG, before any handler's
scrubbing), not in a run row (error_message, error_details, notes), an alert, the control or
target database's files, an exception's text, nor the command's output (``--debug`` included) —
whether the token works, is refused, or the run meets retries and rate limits on the way.

The token reaches the project through ``${GITHUB_TOKEN}``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import pytest
import yaml

import highmark
from highmark.connectors.github import queries
from highmark.connectors.github.api import GitHubApi
from highmark.errors import ApiError
from highmark.models import RunStatus
from tests.cli.runner import hm, hm_many
from tests.connectors.github_support import JOB, github_job, write_github_project
from tests.fakes.github import FakeGitHub
from tests.faults.invariants import assert_no_secret

TOKEN = "ghp_Zq7T0kenTh4tMustN3verLeakAnywhere00"


def _project(github: FakeGitHub, tmp_path: Path) -> Path:
    github.add_token(TOKEN)
    github.seed("acme/api", 5, commits=2, reviews=1, comments=1)
    alerts = tmp_path / "alerts.jsonl"
    write = f"import sys; open({str(alerts)!r}, 'a').write(sys.stdin.read() + '\\n')"
    path = write_github_project(
        tmp_path,
        github,
        f"sqlite:///{tmp_path / 'dw.db'}",
        github_job(["acme/api", "acme/gone"], page_size=2),
        token="${GITHUB_TOKEN}",
        extra={"alerts": [{"type": "command", "command": [sys.executable, "-c", write]}]},
    )
    return path


def _files(tmp_path: Path) -> list[str]:
    """Every file the project wrote (databases as bytes decoded loosely), alerts included."""
    return [f.read_bytes().decode("latin-1") for f in tmp_path.iterdir() if f.is_file()]


def test_the_token_is_in_no_log_record_run_row_alert_file_or_exception(
    github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    project = highmark.Project.load(_project(github, tmp_path))
    github.timeout(502, on_request=2)
    github.secondary_limit(status=403)

    unknown = project.run(JOB)  # retries on the way, then acme/gone is not found
    github.revoke_token(TOKEN)
    refused = project.run(JOB)

    assert unknown.run_status is RunStatus.FAILED and "acme/gone" in (unknown.error_message or "")
    assert refused.run_status is RunStatus.FAILED and "401" in (refused.error_message or "")
    assert any(r.levelno == logging.WARNING and "retry" in r.getMessage() for r in caplog.records)
    assert any(r.levelno == logging.DEBUG and "/graphql" in r.getMessage() for r in caplog.records)
    records = [
        r.getMessage() + (logging.Formatter().formatException(r.exc_info) if r.exc_info else "")
        for r in caplog.records
    ]
    rows = [repr(run) for run in project.runs(JOB, limit=None)]
    stored = [*rows, repr(project.jobs()), repr(project.checkpoint(JOB)), repr(project.alerts())]
    assert (tmp_path / "alerts.jsonl").read_text().count("acme/gone") >= 1
    # The exception the client raises, before the run scrubs anything.
    api = GitHubApi("github", github.graphql_url, TOKEN)
    with pytest.raises(ApiError) as caught:
        api.query(queries.viewer_query())
    api.close()
    raised = [str(caught.value), repr(caught.value), repr(caught.value.details)]
    raised.append("".join(traceback.format_exception(caught.value)))
    assert_no_secret([TOKEN], *records, *stored, *raised, *_files(tmp_path))


def test_the_token_is_in_no_command_output(github: FakeGitHub, tmp_path: Path) -> None:
    path = _project(github, tmp_path)
    document = yaml.safe_load(path.read_text())
    document["jobs"][JOB]["source"]["repositories"] = ["acme/api"]
    path.write_text(yaml.safe_dump(document))
    env = {"GITHUB_TOKEN": TOKEN}
    github.timeout(504, on_request=2)

    outputs = [hm("--debug", "run", JOB, cwd=tmp_path, env=env)]
    github.revoke_token(TOKEN)
    outputs += [
        hm("--debug", "run", JOB, cwd=tmp_path, env=env, code=1),
        hm("run", JOB, cwd=tmp_path, env=env, code=1),
    ]
    looks = [
        ("--debug", "check", JOB),
        ("runs", JOB, "--json"),
        ("status", "--json"),
        ("jobs", "--json"),
        ("checkpoint", "show", JOB),
    ]
    outputs += hm_many(looks, cwd=tmp_path, env=env, code=None)
    assert [r.code for r in outputs[3:]] == [1, 0, 0, 0, 0]

    assert "Traceback" in outputs[1].err  # --debug shows the stack, scrubbed
    assert "the token of connection 'github'" in outputs[2].err
    assert_no_secret([TOKEN], *(r.out + r.err for r in outputs), *_files(tmp_path))
