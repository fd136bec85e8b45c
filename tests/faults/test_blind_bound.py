"""A source role that cannot see other sessions' transactions makes the upper bound blind.

highmark must notice, say so, and refuse to run an incremental job on such a source unless the job
sets `watermark.lag` or opts out with `watermark.blind_bound: allow`; `highmark check` fails it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from highmark import Project, RunStatus
from tests.faults.harness import run
from tests.helpers import create_orders, insert_orders, order


@pytest.fixture
def restricted_url(
    backend_name: str, request: pytest.FixtureRequest, engine_for: Callable[[str], Engine]
) -> Iterator[str]:
    """A login that may read the source table but not see other sessions' transactions."""
    url = request.getfixturevalue("pg_url" if backend_name == "postgresql" else "mysql_url")
    engine = engine_for(url)
    create_orders(engine)
    user = f"hm_reader_{uuid.uuid4().hex[:8]}"
    database = make_url(url).database
    with engine.begin() as conn:
        if backend_name == "postgresql":
            conn.execute(text(f"CREATE ROLE {user} LOGIN PASSWORD 'reader-pw'"))
            conn.execute(text(f"GRANT SELECT ON orders TO {user}"))
        else:
            conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'reader-pw'"))
            conn.execute(text(f"GRANT SELECT ON `{database}`.orders TO '{user}'@'%'"))
    host = "127.0.0.1:5432" if backend_name == "postgresql" else "127.0.0.1:3306"
    scheme = "postgresql" if backend_name == "postgresql" else "mysql"
    try:
        yield f"{scheme}://{user}:reader-pw@{host}/{database}"
    finally:
        with engine.begin() as conn:
            if backend_name == "postgresql":
                conn.execute(text(f"REVOKE ALL ON orders FROM {user}"))
                conn.execute(text(f"DROP ROLE {user}"))
            else:
                conn.execute(text(f"DROP USER '{user}'@'%'"))


def _write(
    write_project: Callable[..., Path], tmp_path: Path, source: str, **watermark: Any
) -> Path:
    job = {
        "load_type": "incremental",
        "source": {"connection": "src", "table": "orders"},
        "target": {"connection": "dw", "table": "orders"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id", **watermark},
    }
    return write_project(
        connections={"src": source, "dw": f"sqlite:///{tmp_path / 'dw.db'}"}, jobs={"sync": job}
    )


@pytest.mark.parametrize("backend_name", ["postgresql", "mysql"])
def test_blind_source_is_refused_then_allowed_with_lag(
    backend_name: str,
    restricted_url: str,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
    write_project: Callable[..., Path],
    request: pytest.FixtureRequest,
) -> None:
    admin = engine_for(
        request.getfixturevalue("pg_url" if backend_name == "postgresql" else "mysql_url")
    )
    from tests.helpers import orders_table

    insert_orders(admin, orders_table(), [order(i) for i in range(1, 4)])
    project = _write(write_project, tmp_path, restricted_url)

    refused = run(project, "run", "sync")
    assert refused.returncode == 1
    assert "blind" in refused.stdout + refused.stderr
    assert "reader-pw" not in refused.stdout + refused.stderr
    checked = run(project, "check", "sync", "--json")
    assert checked.returncode == 1
    findings = {f["check"]: f for f in json.loads(checked.stdout)}
    assert findings["upper bound"]["level"] == "fail"

    with_lag = Project.load(_write(write_project, tmp_path, restricted_url, lag="5m"))
    done = with_lag.run("sync")
    assert done.run_status is RunStatus.SUCCESS, done.error_message
    assert done.rows_written == 3
    assert done.notes and any("blind" in note for note in done.notes)

    opted_out = Project.load(_write(write_project, tmp_path, restricted_url, blind_bound="allow"))
    assert opted_out.run("sync").run_status is RunStatus.SUCCESS
