"""The commands around a GitHub job, and the GitHub part of the project file.

* `highmark check` verifies the token, its scopes and each repository, with a fix per failure;
* `checkpoint show/set/reset` work on a GitHub job, `set` validated by the GitHub model;
* `highmark worker --once` runs a due GitHub job (triggered_by scheduler);
* `--full-refresh` reads every pull request again (what an incremental run cannot see: an edited
  comment that did not bump its PR) and ignores an incremental run's checkpoint;
* errors in the GitHub part of the file are one line naming the file and line.

Short commands run in this process through the click entry point (the fake GitHub is here too);
the worker is a real process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

import highmark
from highmark.cli import cli
from highmark.config import load_project_config
from highmark.errors import ConfigError
from highmark.models import RunStatus, TriggeredBy
from tests.cli.runner import hm
from tests.connectors.github_support import (
    JOB,
    assert_target_equals_model,
    github_job,
    page_calls,
    write_github_project,
)
from tests.fakes.github import FakeGitHub
from tests.worker.support import make_due

REPOS = ["acme/api", "acme/web"]


def highmark_cli(project: Path, *args: str) -> Result:
    """`highmark --project PROJECT ARGS…`, in this process."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return CliRunner().invoke(cli, ["--project", str(project), *args])
    finally:  # the command points the root logger at its captured stderr: undo that
        root.handlers[:] = handlers
        root.setLevel(level)


def _seeded(github: FakeGitHub) -> None:
    now = github.clock.now()
    github.clock.set(now - timedelta(hours=2))
    for repo in REPOS:
        github.seed(repo, 5, commits=2, reviews=1, comments=1)
    github.clock.set(now)


def _findings(result: Result) -> dict[str, dict[str, Any]]:
    import json

    return {f["check"]: f for f in json.loads(result.stdout)}


# ------------------------------------------------------------------------------ check


def test_check_verifies_the_token_its_scopes_and_each_repository(
    github: FakeGitHub, tmp_path: Path
) -> None:
    _seeded(github)
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    job = github_job([*REPOS, "acme/gone"])
    path = write_github_project(tmp_path, github, url, job)

    result = highmark_cli(path, "check", JOB, "--json")

    assert result.exit_code == 1, result.output
    found = _findings(result)
    assert found["token"]["level"] == "pass" and "highmark-bot" in found["token"]["detail"]
    assert found["scopes"]["level"] == "pass"
    assert found["repository acme/api"]["level"] == "pass"
    assert found["repository acme/web"]["level"] == "pass"
    gone = found["repository acme/gone"]
    assert gone["level"] == "fail" and "acme/gone" in gone["detail"] and gone["fix"]

    # A classic token without `repo`; a fine-grained one limited to acme/api.
    github.add_token("ghp_no_repo_scope_token", scopes="read:org")
    github.add_token("github_pat_fine_grained", scopes=None, repos=["acme/api"])
    write_github_project(tmp_path, github, url, github_job(REPOS), token="ghp_no_repo_scope_token")
    found = _findings(highmark_cli(path, "check", JOB, "--json"))
    assert found["scopes"]["level"] == "fail" and "repo" in found["scopes"]["fix"]
    write_github_project(tmp_path, github, url, github_job(REPOS), token="github_pat_fine_grained")
    found = _findings(highmark_cli(path, "check", JOB, "--json"))
    assert found["scopes"]["level"] == "warn"
    assert found["repository acme/api"]["level"] == "pass"
    assert found["repository acme/web"]["level"] == "fail"

    github.revoke_token("github_pat_fine_grained")
    result = highmark_cli(path, "check", JOB)
    assert result.exit_code == 1
    found = _findings(highmark_cli(path, "check", JOB, "--json"))
    assert list(found) == ["token"]  # nothing more can be checked
    assert found["token"]["level"] == "fail" and "401" in found["token"]["detail"]
    assert "token" in found["token"]["fix"] and "'github'" in found["token"]["fix"]
    assert [r.status for r in github.requests[-2:]] == [401, 401]  # one request per check


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_show_set_and_reset_on_a_github_job(github: FakeGitHub, tmp_path: Path) -> None:
    _seeded(github)
    path = write_github_project(
        tmp_path, github, f"sqlite:///{tmp_path / 'dw.db'}", github_job(REPOS, page_size=2)
    )
    project = highmark.Project.load(path)
    github.before(3, github.exhaust_rate_limit)  # the run fails on page 3, its place kept
    assert project.run(JOB).run_status is RunStatus.FAILED

    shown = highmark_cli(path, "checkpoint", "show", JOB)
    assert shown.exit_code == 0, shown.output
    assert '"current_repository": "acme/api"' in shown.stdout
    assert '"last_pr_cursor": "' in shown.stdout and '"batch_number": 2' in shown.stdout

    ok = highmark_cli(path, "checkpoint", "set", JOB, "total_prs_processed", "4")
    assert ok.exit_code == 0, ok.output
    for key, value in [
        ("batch_number", '"two"'),
        ("recovery_mode", '"maybe"'),
        ("pending_prs", '[{"node_id": "PR_x"}]'),  # sync_run_id is missing
        ("repository_marks", '{"acme/api": "yesterday"}'),
    ]:
        refused = highmark_cli(path, "checkpoint", "set", JOB, key, value)
        assert refused.exit_code == 2, refused.output
        (line,) = refused.stderr.splitlines()
        assert key in line and "Traceback" not in refused.output
    assert (project.checkpoint(JOB) or {})["total_prs_processed"] == 4  # the rest unchanged

    reset = highmark_cli(path, "checkpoint", "reset", JOB)
    assert reset.exit_code == 0 and project.checkpoint(JOB) is None
    github.clock.advance(3600)
    github.clear_log()
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    assert page_calls(github, "acme/api")[0].variables["after"] is None  # started over


# ------------------------------------------------------------------------------ the worker


def test_a_due_github_job_runs_in_the_worker(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    _seeded(github)
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    job = {**github_job(REPOS, page_size=2), "schedule": "0 0 1 1 *"}
    path = write_github_project(tmp_path, github, url, job)
    project = highmark.Project.load(path)
    make_due(engine_for(f"sqlite:///{tmp_path / 'control.db'}"), JOB)

    worker = hm("worker", "--once", "--worker-id", "w1", cwd=tmp_path)

    assert "1 succeeded" in worker.out + worker.err, worker
    (run,) = project.runs(JOB)
    assert run.run_status is RunStatus.SUCCESS, run.error_message
    assert run.triggered_by == TriggeredBy.SCHEDULER.value
    assert_target_equals_model(engine_for(url), github, REPOS)
    assert {w.source_table for w in project.watermarks(JOB)} == set(REPOS)


# ------------------------------------------------------------------------------ full refresh


def test_full_refresh_reads_every_pull_request_again(
    github: FakeGitHub, tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    _seeded(github)
    url = f"sqlite:///{tmp_path / 'dw.db'}"
    path = write_github_project(tmp_path, github, url, github_job(REPOS, page_size=2))
    project = highmark.Project.load(path)
    assert project.run(JOB).run_status is RunStatus.SUCCESS
    marks = {w.source_table: w.last_value_timestamp for w in project.watermarks(JOB)}
    # An edited comment need not bump its PR: an incremental run cannot see it.
    comment = github.comments("acme/web", 1)[0]
    github.edit_comment("acme/web", 1, comment.id, body="Edited, PR not bumped")
    github.clock.advance(600)
    assert project.run(JOB).rows_updated == 0
    # An incremental run that failed half-way leaves its checkpoint: a full refresh ignores it.
    github.before(len(github.requests) + 2, github.exhaust_rate_limit)
    assert project.run(JOB).run_status is RunStatus.FAILED
    github.clock.advance(3600)
    github.clear_log()

    result = highmark_cli(path, "run", JOB, "--full-refresh", "--json")

    assert result.exit_code == 0, result.output
    assert page_calls(github, "acme/api")[0].variables["after"] is None
    assert len(page_calls(github, "acme/web")) == 3  # all five PRs, two at a time
    (run, *_) = project.runs(JOB)
    assert (run.rows_read, run.rows_written, run.rows_updated) == (2 * 5 * 5, 0, 1)
    assert_target_equals_model(engine_for(url), github, REPOS)
    after = {w.source_table: w.last_value_timestamp for w in project.watermarks(JOB)}
    assert after == marks  # nothing newer was loaded: the marks stay
    assert project.checkpoint(JOB) is None


# ------------------------------------------------------------------------------ the project file


def _file(tmp_path: Path, connection: dict[str, Any], source: dict[str, Any], **job: Any) -> Path:
    document = {
        "connections": {"github": {"type": "github", **connection}, "dw": "sqlite:///dw.db"},
        "jobs": {
            JOB: {
                "load_type": "incremental",
                "source": {"connection": "github", **source},
                "target": {"connection": "dw"},
                **job,
            }
        },
    }
    path = tmp_path / "highmark.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _line_of(path: Path, fragment: str) -> int:
    """The line of the ``nth`` occurrence of ``fragment`` (``fragment#nth``, default the first)."""
    text, _, nth = fragment.partition("#")
    lines = [i for i, line in enumerate(path.read_text().splitlines(), start=1) if text in line]
    return lines[int(nth or 1) - 1]


TOKEN = {"token": "ghp_test_token_value"}
REPO = {"repositories": ["acme/api"]}


@pytest.mark.parametrize(
    ("connection", "source", "job", "at", "says"),
    [
        (TOKEN, {"repositories": ["acme/api", "not a repo"]}, {}, "repositories:",
         "'not a repo' is not a repository as owner/name"),
        (TOKEN, {"repositories": ["acme/api", "Acme/API"]}, {}, "repositories:",
         "lists a repository twice"),
        (TOKEN, {"repositories": []}, {}, "repositories:", "source.repositories"),
        (TOKEN, {**REPO, "entities": ["pull_requests", "issues"]}, {}, "- issues",
         "source.entities.1: Input should be 'pull_requests', 'commits', 'reviews' or"),
        (TOKEN, {**REPO, "page_size": 101}, {}, "page_size:", "source.page_size"),
        ({}, REPO, {}, "github:", "connections.github.token: is required"),
        ({"token": "  "}, REPO, {}, "token:", "connections.github.token: is empty"),
        ({"token": "${HM_UNSET_GITHUB_TOKEN}"}, REPO, {}, "token:",
         "environment variable HM_UNSET_GITHUB_TOKEN is not set"),
        ({**TOKEN, "url": "api.github.com/graphql"}, REPO, {}, "url:", "connections.github.url"),
        (TOKEN, REPO, {"target": {"connection": "github"}}, "connection: github#2",
         "target.connection: 'github' is a github connection"),
        (TOKEN, REPO, {"lag": "soon"}, "lag:", f"job {JOB}: lag"),
    ],
)  # fmt: skip
def test_errors_in_the_github_part_of_the_file_are_one_line_with_file_and_line(
    connection: dict[str, Any],
    source: dict[str, Any],
    job: dict[str, Any],
    at: str,
    says: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HM_UNSET_GITHUB_TOKEN", raising=False)
    path = _file(tmp_path, connection, source, **job)

    with pytest.raises(ConfigError) as caught:
        load_project_config(path)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{_line_of(path, at)}: "), message
    assert says in message
    assert "ghp_test_token_value" not in message


def test_a_config_error_exits_2_with_one_line(tmp_path: Path) -> None:
    path = _file(tmp_path, TOKEN, {**REPO, "entities": ["prs"]})
    result = highmark_cli(path, "run", JOB)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"highmark: error: {path}:") and "source.entities.0" in line


# ------------------------------------------------------------------------------ marks by hand


def test_watermark_set_and_reset_on_a_github_job(github: FakeGitHub, tmp_path: Path) -> None:
    _seeded(github)  # five PRs per repository, a minute apart, two hours old
    path = write_github_project(
        tmp_path, github, f"sqlite:///{tmp_path / 'dw.db'}", github_job(REPOS, page_size=2)
    )
    project = highmark.Project.load(path)
    third = github.pr("acme/api", 3).updated_at

    fifth = github.pr("acme/web", 5).updated_at
    result = highmark_cli(path, "watermark", "set", JOB, f"{third:%Y-%m-%dT%H:%M:%SZ}")
    assert result.exit_code == 0, result.output
    one = ["--source-table", "acme/web"]
    result = highmark_cli(path, "watermark", "set", JOB, f"{fifth:%Y-%m-%dT%H:%M:%SZ}", *one)
    assert result.exit_code == 0, result.output
    shown = highmark_cli(path, "watermark", "show", JOB).stdout.splitlines()
    assert [line.split(".")[0] for line in shown] == [f"{JOB}: acme/api", f"{JOB}: acme/web"]
    run = project.run(JOB)

    # acme/api starts at the mark set for all (PRs #3, #4 and #5), acme/web at its own (#5).
    assert run.run_status is RunStatus.SUCCESS and run.rows_read == 4 * 5
    assert run.watermark_start is not None and run.watermark_start == fifth

    assert highmark_cli(path, "watermark", "reset", JOB).exit_code == 0
    assert project.watermarks(JOB) == []
    github.clear_log()
    run = project.run(JOB)
    assert run.rows_read == 2 * 5 * 5 and run.rows_written == 6 * 5  # the PRs not read before
    assert len(page_calls(github, "acme/api")) == 3
