"""A project whose job quarantined bad rows and saw a schema change: for the API tests
(tests/api/test_rejected.py) and the dashboard's (tests/dashboard/test_rejected_rows.py)."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import CheckConstraint, Engine, text

from highmark.models import RunStatus
from highmark.project import Project
from tests.api.support import write_api_project
from tests.helpers import copy_job, insert_orders, order, orders_table, seed_orders

JOB = "sync"
BAD = [3, 7, 11]  # refused by the target in the first run (negative amounts)
LATE_BAD = 13  # refused in the second run
PASSWORD = "pw-never-shown-4711"
MASK_KEY = "mask-key-never-shown-0815"  # the job reads it from HM_MASK_KEY
GITHUB_TOKEN = "github-token-never-shown-1234"


def with_password(url: str) -> str:
    """The URL with a password (PostgreSQL trusts 127.0.0.1 and never asks for it)."""
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def quarantine_project(url: str, directory: Path, engine: Engine) -> tuple[Project, list[int]]:
    """The API tests' project, its job ``sync`` quarantining what the target refuses (negative
    amounts: BAD in a first run, LATE_BAD in a second, which also added the source's new column
    ``note`` to the target) and masking ``customer``; the project and its two runs' ids."""
    source = seed_orders(engine, 12)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE orders SET amount = -1 WHERE id IN {tuple(BAD)}"))
    target = orders_table("orders_copy")
    target.append_constraint(CheckConstraint("amount >= 0", name="amount_not_negative"))
    target.metadata.create_all(engine)

    path = write_api_project(directory / "highmark.yml", with_password(url))
    document = yaml.safe_load(path.read_text())
    document["jobs"][JOB] = copy_job(
        batch_size=5, on_bad_rows="quarantine", mask_columns=["customer"], mask_key="${HM_MASK_KEY}"
    )
    # A job of another kind, with no quarantine to retry (its server is never called).
    document["connections"]["github"] = {
        "type": "github", "token": GITHUB_TOKEN, "url": "http://127.0.0.1:9/graphql",
    }  # fmt: skip
    document["jobs"]["prs"] = {
        "load_type": "incremental",
        "source": {"connection": "github", "repositories": ["acme/api"]},
        "target": {"connection": "db"},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    project = Project.load(path)

    first = project.run(JOB)
    assert (first.run_status, first.rows_rejected) == (RunStatus.SUCCESS, len(BAD))
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE orders ADD COLUMN note VARCHAR(20)"))
    insert_orders(engine, source, [order(LATE_BAD, amount="-2.00")])
    second = project.run(JOB)
    assert (second.run_status, second.rows_rejected) == (RunStatus.SUCCESS, 1)
    return project, [first.run_id, second.run_id]


def assert_secret_free(*texts: str) -> None:
    """No password, no mask key, no masked value (only its hash) in ``texts``."""
    for body in texts:
        assert PASSWORD not in body and MASK_KEY not in body and GITHUB_TOKEN not in body
        for i in (*BAD, LATE_BAD):
            assert f'"customer {i}"' not in body and f"customer {i}<" not in body
