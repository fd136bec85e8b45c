"""Checkpoint tools: partial updates in the database, queries by field, validation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from highmark import CheckpointError, ConfigError, Project


def _project(url: str, write_project: Callable[..., Path]) -> Project:
    jobs = {
        name: {
            "load_type": "full",
            "source": {"connection": "db", "table": "t"},
            "target": {"connection": "db", "table": f"{name}_copy"},
            "primary_key": ["id"],
        }
        for name in ("github", "jira", "fabric")
    }
    return Project.load(write_project(control=url, connections={"db": url}, jobs=jobs))


def test_set_append_incr_and_nested_paths(db_url: str, write_project: Callable[..., Path]) -> None:
    project = _project(db_url, write_project)
    project.set_checkpoint("github", "current_repository", "repo3")
    project.set_checkpoint("github", "cursors.pr.last", "Y3Vyc29y")  # parents are created
    project.append_checkpoint("github", "repositories_processed", "repo1")
    project.append_checkpoint("github", "repositories_processed", "repo2")
    project.incr_checkpoint("github", "total_prs_processed", 100)
    project.incr_checkpoint("github", "total_prs_processed")
    project.set_checkpoint("github", "recovery_mode", True)
    project.set_checkpoint("github", "batch_number", 6)

    assert project.checkpoint("github") == {
        "current_repository": "repo3",
        "cursors": {"pr": {"last": "Y3Vyc29y"}},
        "repositories_processed": ["repo1", "repo2"],
        "total_prs_processed": 101,
        "recovery_mode": True,
        "batch_number": 6,
    }


def test_find_by_field(db_url: str, write_project: Callable[..., Path]) -> None:
    project = _project(db_url, write_project)
    project.set_checkpoint("github", "recovery_mode", True)
    project.set_checkpoint("github", "batch_number", 6)
    project.append_checkpoint("github", "repositories_processed", "repo1")
    project.set_checkpoint("jira", "recovery_mode", False)
    project.set_checkpoint("jira", "batch_number", 3)
    project.set_checkpoint("jira", "current_project", "DEMO")

    def ids(expression: str) -> list[str]:
        return [job_id for job_id, _ in project.find_checkpoints(expression)]

    assert ids("recovery_mode=true") == ["github"]
    assert ids("recovery_mode=false") == ["jira"]
    assert ids("recovery_mode!=true") == ["jira"]
    assert ids("batch_number>5") == ["github"]
    assert ids("batch_number>=3") == ["github", "jira"]
    assert ids("batch_number<4") == ["jira"]
    assert ids("repositories_processed?repo1") == ["github"]
    assert ids("repositories_processed?repo9") == []
    assert ids("current_project=DEMO") == ["jira"]
    assert ids('current_project="DEMO"') == ["jira"]
    with pytest.raises(ConfigError):
        project.find_checkpoints("batch_number>lots")
    with pytest.raises(ConfigError):
        project.find_checkpoints("no operator here")


def test_invalid_values_are_refused_and_change_nothing(
    db_url: str, write_project: Callable[..., Path]
) -> None:
    project = _project(db_url, write_project)
    project.set_checkpoint("github", "batch_number", 2)
    with pytest.raises(CheckpointError, match="batch_number"):
        project.set_checkpoint("github", "batch_number", "many")
    with pytest.raises(CheckpointError, match="recovery_mode"):
        project.set_checkpoint("github", "recovery_mode", [1])
    assert project.checkpoint("github") == {"batch_number": 2}


def test_reset_clears_the_checkpoint(db_url: str, write_project: Callable[..., Path]) -> None:
    project = _project(db_url, write_project)
    project.set_checkpoint("github", "batch_number", 2)
    project.reset_checkpoint("github")
    assert project.checkpoint("github") is None


def test_two_writers_on_different_keys_never_lose_an_update(
    db_url: str, write_project: Callable[..., Path]
) -> None:
    project = _project(db_url, write_project)
    rounds = 25
    errors: list[BaseException] = []

    def writer(key: str) -> None:
        try:
            mine = Project.load(project.config.path)
            for _ in range(rounds):
                mine.incr_checkpoint("github", key)
                mine.append_checkpoint("github", f"{key}_log", "x")
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(key,)) for key in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, errors
    data = project.checkpoint("github") or {}
    assert data["a"] == rounds and data["b"] == rounds
    assert len(data["a_log"]) == rounds and len(data["b_log"]) == rounds
