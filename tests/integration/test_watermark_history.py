"""Watermark history on real SQLite, PostgreSQL and MariaDB: every change of a mark is a row
(a run's commit, set, reset, rollback), written in the change's transaction; a rollback puts the
marks back to what a run left, and the next run loads again what came after."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from highmark import failpoints
from highmark.errors import ConfigError, JobAlreadyRunningError
from highmark.models import Counts, MarkUpdate, RunStatus, Watermark, WatermarkType
from highmark.project import Project
from tests.cli.runner import hm
from tests.helpers import BASE_TIME, copy_job, insert_orders, order, orders_table, seed_orders


def _project(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> tuple[Engine, Project]:
    engine = engine_for(db_url)
    seed_orders(engine, 9)
    path = write_project(control=db_url, connections={"db": db_url}, jobs={"sync": copy_job()})
    return engine, Project.load(path)


def test_history_rows_on_every_database(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    """The store alone (no source read): a run's commit of two marks, a hand-set, a rollback."""
    _, project = _project(db_url, engine_for, write_project)
    store = project.store

    def commit(*values: tuple[str, int]) -> int:
        handle = store.start_run(
            "sync", triggered_by="manual", host="h", pid=1, watermark_start=None
        )
        assert handle is not None
        marks = [MarkUpdate(t, "id", Watermark(WatermarkType.INTEGER, id=v)) for t, v in values]
        store.finish_success(handle, Counts(), marks=marks, mark_tables=[t for t, _ in values])
        return handle.run_id

    first = commit(("a", 5), ("b", 7))
    second = commit(("a", 9), ("b", 7))  # b did not move: no row for it
    store.set_watermarks("sync", [MarkUpdate("a", "id", Watermark(WatermarkType.INTEGER, id=1))])
    changes = store.watermark_history("sync")
    assert [(c.change, c.source_table, c.run_id) for c in changes] == [
        ("set", "b", None), ("set", "a", None), ("run", "a", second), ("run", "b", first),
        ("run", "a", first),
    ]  # fmt: skip
    assert changes[0].new_value() is None and changes[0].old_value() == Watermark(
        WatermarkType.INTEGER, id=7
    )
    restored = store.rollback_watermarks("sync", first, changed_by="me")
    assert [(m.source_table, m.last_value_integer) for m in restored] == [("a", 5), ("b", 7)]
    assert [c.change for c in store.watermark_history("sync", limit=2)] == ["rollback"] * 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_every_change_of_a_mark_is_recorded_and_a_rollback_restores_a_run(
    db_url: str, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    # (Not on MariaDB here: its upper bound is held back by any transaction on the server, and
    # the shared test server has other tests' transactions open; the store test covers it.)
    engine, project = _project(db_url, engine_for, write_project)
    first = project.run("sync")
    insert_orders(engine, orders_table(), [order(i) for i in range(10, 13)])
    second = project.run("sync")
    nothing = project.run("sync")  # loads nothing newer: the mark does not move, no row
    project.set_watermark("sync", "2024-01-01T12:00:01Z/2", changed_by="alice (cli)")
    project.reset_watermark("sync", changed_by="api:ops")
    assert nothing.succeeded

    history = project.watermark_history("sync")
    assert [(c.change, c.run_id, c.changed_by) for c in history] == [
        ("reset", None, "api:ops"),
        ("set", None, "alice (cli)"),
        ("run", second.run_id, f"run {second.run_id}"),
        ("run", first.run_id, f"run {first.run_id}"),
    ]
    reset, hand, moved, loaded = history
    assert loaded.old_value() is None and moved.old_value() == loaded.new_value()
    assert moved.new_value() is not None and moved.new_value().id == 12  # type: ignore[union-attr]
    assert hand.old_value() == moved.new_value() and str(hand.new_value()).endswith("/ 2")
    assert reset.old_value() == hand.new_value() and reset.new_value() is None
    assert {c.source_table for c in history} == {"orders"}
    assert all(c.watermark_column == "updated_at" for c in history)

    # Back to what the first run left: the next run loads rows 10-12 again.
    marks = project.rollback_watermark("sync", first.run_id, changed_by="bob (cli)")
    assert [m.watermark() for m in marks] == [loaded.new_value()]
    assert marks[0].last_successful_run_id == first.run_id
    latest = project.watermark_history("sync", limit=1)[0]
    assert (latest.change, latest.run_id) == ("rollback", first.run_id)
    assert latest.changed_by == "bob (cli)"
    assert latest.old_value() is None and latest.new_value() == loaded.new_value()
    again = project.run("sync")
    assert again.rows_read == 3 and again.rows_written == 0, again  # upserts: nothing twice

    # Rolling back to a run that left no mark is refused, as is one of another job.
    failed = project.store.start_run(
        "sync", triggered_by="manual", host="h", pid=1, watermark_start=None
    )
    assert failed is not None
    with pytest.raises(JobAlreadyRunningError, match="live run"):
        project.rollback_watermark("sync", first.run_id)
    project.store.finish_failed(
        failed, status=RunStatus.FAILED, error_message="x", error_details=None,
        counts=Counts(),
    )  # fmt: skip
    with pytest.raises(ConfigError, match="not a success"):
        project.rollback_watermark("sync", failed.run_id)
    with pytest.raises(Exception, match="no run 999"):
        project.rollback_watermark("sync", 999)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_mark_and_its_history_commit_together(
    db_url: str,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run that fails inside its final transaction leaves neither the mark nor its history."""
    _, project = _project(db_url, engine_for, write_project)

    def boom(name: str) -> None:
        if name == "during_final_commit":
            raise RuntimeError("killed during the final commit")

    monkeypatch.setattr(failpoints, "reach", boom)
    record = project.run("sync")
    assert record.run_status is RunStatus.FAILED and "final commit" in (record.error_message or "")
    assert project.watermarks("sync") == [] and project.watermark_history("sync") == []


def test_cli_history_and_rollback(
    tmp_path: Path, engine_for: Callable[[str], Engine], write_project: Callable[..., Path]
) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    engine = engine_for(url)
    seed_orders(engine, 6)
    write_project(control=url, connections={"db": url}, jobs={"sync": copy_job()})
    hm("run", "sync", cwd=tmp_path)
    insert_orders(engine, orders_table(), [order(7, at=BASE_TIME + timedelta(minutes=5))])
    hm("run", "sync", cwd=tmp_path)

    changes = json.loads(hm("watermark", "history", "sync", "--json", cwd=tmp_path).out)
    assert [c["change"] for c in changes] == ["run", "run"]
    assert changes[0]["new_value_integer"] == 7 and changes[0]["old_value_integer"] == 6
    table = hm("watermark", "history", "sync", cwd=tmp_path).out
    assert "run" in table and "/ 7" in table

    out = hm("watermark", "rollback", "sync", "--to-run", str(changes[1]["run_id"]), cwd=tmp_path)
    assert "rolled back to 2024-01-01T12:00:02Z / 6 (run 1)" in out.out
    latest = json.loads(hm("watermark", "history", "sync", "--json", cwd=tmp_path).out)[0]
    assert latest["change"] == "rollback" and latest["changed_by"].endswith("(cli)")
    missing = hm("watermark", "rollback", "sync", "--to-run", "999", cwd=tmp_path, code=2)
    assert "no run 999" in missing.err
