"""What the CDC tests share: an `orders` source on PostgreSQL or MariaDB, a CDC job copying it
into `orders_copy`, and the check that the target equals the source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from highmark import Project
from tests.helpers import snapshot

JOB = "orders_cdc"
SOURCE = "orders"
TARGET = "orders_copy"


def cdc_job(**options: Any) -> dict[str, Any]:
    return {
        "load_type": "cdc",
        "source": {"connection": "src", "table": SOURCE},
        "target": {"connection": "dst", "table": TARGET},
        "primary_key": ["id"],
        "batch_size": 4,
        **options,
    }


def slot_name(url: str) -> str:
    """The test's own replication slot. Slot names are cluster-wide: with the default
    (highmark_<job_id>) two test runs at once, on one server, would take each other's slot."""
    return "highmark_" + url.rsplit("/", 1)[-1].split("?", maxsplit=1)[0].lower()


def write_cdc_project(
    write_project: Callable[..., Path],
    url: str,
    *,
    target_url: str | None = None,
    control: str | None = None,
    **options: Any,
) -> Path:
    if url.startswith("postgresql") and "cdc" not in options:
        options["cdc"] = {"slot": slot_name(url)}
    return write_project(
        control=control or url,
        connections={"src": url, "dst": target_url or url},
        jobs={JOB: cdc_job(**options)},
    )


def execute(engine: Engine, *statements: str) -> None:
    """Run statements in one source transaction."""
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def eight_transactions(engine: Engine) -> None:
    """Eight transactions (two batches of four), one row updated in several of them."""
    for i in range(1, 9):
        execute(
            engine,
            f"UPDATE orders SET amount = amount + {i} WHERE id = 1",
            f"INSERT INTO orders (id, customer, amount, updated_at) VALUES "
            f"({100 + i}, 'c{i}', {i}.00, '2024-02-01 00:00:00')",
            f"DELETE FROM orders WHERE id = {i + 1}",
        )


def differences(source: Engine, target: Engine | None = None) -> dict[str, list[Any]]:
    want = {r["id"]: r for r in snapshot(source, SOURCE)}
    have = {r["id"]: r for r in snapshot(target or source, TARGET)}
    return {
        "missing": sorted(want.keys() - have.keys()),
        "extra": sorted(have.keys() - want.keys()),
        "different": sorted(k for k in want.keys() & have.keys() if _common(want[k], have[k])),
    }


def _common(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Do the rows differ in a column both have?"""
    return any(a[k] != b[k] for k in a.keys() & b.keys())


def assert_equal(source: Engine, target: Engine | None = None) -> None:
    found = differences(source, target)
    assert not any(found.values()), f"target != source: {found}"


def run_ok(project: Project, **options: Any) -> Any:
    record = project.run(JOB, **options)
    assert record.run_status.value == "success", record.error_message
    return record
