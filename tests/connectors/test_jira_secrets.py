"""The Jira API token never leaves highmark: not in a log record (DEBUG included), a run row, the
control database's file, the command line's output (``--debug`` included) or an exception's text
— neither the token itself nor the ``Authorization: Basic`` value that carries it — whether the
token works, was revoked, or was mistyped.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from highmark.connectors.jira.api import JiraApi
from highmark.errors import ApiError
from highmark.models import RunStatus
from tests.connectors.jira_support import (  # noqa: F401  (fixtures)
    DAY_AGO,
    EMAIL,
    JOB,
    SECRETS,
    TOKEN,
    JiraProject,
    jira_fixture,
    jira_project_fixture,
    jira_sleeps_fixture,
)
from tests.fakes.jira import SEARCH, FakeJira
from tests.faults.invariants import assert_no_secret

Make = Callable[..., JiraProject]
WRONG = "ATATT3xFfGF0MistypedT0kenValue-0a1b2c3d4e5f=DEADBEEF"
ALL_SECRETS = (*SECRETS, WRONG, base64.b64encode(f"{EMAIL}:{WRONG}".encode()).decode())


def _stored(hm: JiraProject, control_db: Path) -> list[str]:
    """Everything the control store holds about the job, as rows and as the file's bytes."""
    project = hm.load()
    return [
        *(repr(run) for run in project.runs(JOB, limit=None)),
        *(repr(job) for job in project.jobs()),
        *(repr(mark) for mark in project.watermarks(JOB)),
        repr(project.checkpoint(JOB)),
        control_db.read_bytes().decode("latin-1"),
    ]


def _cli(hm: JiraProject) -> list[str]:
    """What the commands that touch the job print, with --debug and without."""
    outputs = []
    for args in [
        ("--debug", "run", JOB),
        ("run", JOB),
        ("--debug", "check", JOB),
        ("check", JOB, "--json"),
        ("runs", JOB, "--json"),
        ("--debug", "status"),
        ("jobs", "--json"),
        ("checkpoint", "show", JOB),
        ("watermark", "show", JOB, "--json"),
    ]:
        result = hm.cli(*args)
        outputs.append(f"{args}: exit {result.exit_code}\n{result.stdout}\n{result.stderr}")
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            outputs.append("".join(traceback.format_exception(result.exception)))
    return outputs


def test_the_api_token_never_shows(
    jira: FakeJira,
    jira_project: Make,
    jira_sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    jira.seed("PROJ", 4, start=DAY_AGO)
    hm = jira_project(projects=["PROJ"], max_results=2)
    outputs: list[str] = []

    # A run that works, through a rate limit (a WARNING with the request) and a 500.
    jira.throttle(on_request=2, path=SEARCH, retry_after=3)
    jira.fail(status=500, on_request=4, path=SEARCH)
    assert hm.run().run_status is RunStatus.SUCCESS
    # A run that fails on Jira's answer (a bad JQL: a 400 quoted in the error).
    hm.write(jql="colour = red")
    assert hm.run().run_status is RunStatus.FAILED
    hm.write(jql=None)
    outputs += _cli(hm)
    # The token revoked: runs, checks and the CLI fail on a 401.
    jira.revoke_token()
    assert hm.run().run_status is RunStatus.FAILED
    outputs += _cli(hm)
    # A mistyped token: another secret, refused as well.
    monkeypatch.setenv("JIRA_API_TOKEN", WRONG)
    assert hm.run().run_status is RunStatus.FAILED
    outputs += _cli(hm)

    # The exception a caller of the API gets, its details and its traceback.
    api = JiraApi("jira", jira.url, EMAIL, TOKEN)
    with pytest.raises(ApiError) as caught:
        api.myself()
    api.close()
    error = caught.value
    outputs += [str(error), repr(error), repr(error.details), repr(api.http), repr(api.http.auth)]
    outputs.append("".join(traceback.format_exception(error)))

    assert "connection 'jira' was refused" in str(error)
    assert any("401" in text for text in outputs)  # the failures were really seen
    assert any("rate limit" in r.getMessage().lower() or "429" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    logs = [record.getMessage() for record in caplog.records]
    assert_no_secret(
        ALL_SECRETS, caplog.text, *logs, *outputs, *_stored(hm, tmp_path / "control.db")
    )
    # The fake did receive them: the check above is not vacuous.
    sent = {r.headers.get("authorization", "") for r in jira.requests}
    assert f"Basic {SECRETS[1]}" in sent and f"Basic {ALL_SECRETS[3]}" in sent
