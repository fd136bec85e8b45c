"""Helpers shared by the tests: a portable `orders` table, and row snapshots to compare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    MetaData,
    Numeric,
    String,
    Table,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql

BASE_TIME = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)

Timestamp = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def orders_table(name: str = "orders", schema: str | None = None) -> Table:
    return Table(
        name,
        MetaData(),
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("customer", String(100), nullable=False),
        Column("amount", Numeric(12, 2), nullable=False),
        Column("updated_at", Timestamp, nullable=False),
        Column("deleted_at", Timestamp, nullable=True),
        schema=schema,
    )


def create_checked_orders(engine: Engine, name: str = "orders_copy") -> None:
    """An orders-shaped target that refuses negative amounts (a row the target refuses)."""
    table = orders_table(name)
    table.append_constraint(CheckConstraint("amount >= 0", name="amount_not_negative"))
    table.metadata.create_all(engine)


def short_lock_timeout(engine: Engine) -> None:
    """Every later session of ``engine``'s PostgreSQL database waits 1 s for a lock."""
    with engine.connect() as conn:
        conn.execute(text(f"ALTER DATABASE \"{engine.url.database}\" SET lock_timeout = '1s'"))
        conn.commit()


def _bind(engine: Engine, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value if engine.dialect.name == "postgresql" else value.replace(tzinfo=None)


def create_orders(engine: Engine, name: str = "orders", schema: str | None = None) -> Table:
    table = orders_table(name, schema)
    table.metadata.create_all(engine)
    return table


def order(
    i: int, *, at: datetime | None = None, amount: str | None = None, customer: str | None = None
) -> dict[str, Any]:
    return {
        "id": i,
        "customer": customer or f"customer {i}",
        "amount": Decimal(amount or f"{i}.25"),
        "updated_at": at or BASE_TIME + timedelta(seconds=i),
        "deleted_at": None,
    }


def insert_orders(engine: Engine, table: Table, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {
                    **r,
                    "updated_at": _bind(engine, r["updated_at"]),
                    "deleted_at": _bind(engine, r["deleted_at"]),
                }
                for r in rows
            ],
        )


def update_order(engine: Engine, table: Table, i: int, **values: Any) -> None:
    for key in ("updated_at", "deleted_at"):
        if key in values:
            values[key] = _bind(engine, values[key])
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == i).values(**values))


def delete_order(engine: Engine, table: Table, i: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(table).where(table.c.id == i))


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, Decimal | float):
        return Decimal(str(value)).quantize(Decimal("0.01"))
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        return _normal(datetime.fromisoformat(value))
    return value


def snapshot(engine: Engine, name: str, schema: str | None = None) -> list[dict[str, Any]]:
    """Every row of an orders-shaped table, normalised so that databases compare equal."""
    table = Table(name, MetaData(), autoload_with=engine, schema=schema)
    with engine.connect() as conn:
        rows = conn.execute(select(table).order_by(table.c.id)).mappings().all()
    return [{k: _normal(v) for k, v in row.items()} for row in rows]


def seed_orders(engine: Engine, rows: int, *, per_timestamp: int = 3) -> Table:
    """An `orders` table of ``rows`` rows, ``per_timestamp`` of them sharing each `updated_at`
    (so that batch and range boundaries fall inside ties)."""
    table = create_orders(engine)
    at = [BASE_TIME + timedelta(seconds=i // per_timestamp) for i in range(1, rows + 1)]
    insert_orders(engine, table, [order(i, at=t) for i, t in enumerate(at, start=1)])
    return table


def copy_job(**options: Any) -> dict[str, Any]:
    """An incremental job copying `orders` into `orders_copy` on the connection `db`."""
    return {
        "load_type": "incremental",
        "source": {"connection": "db", "table": "orders"},
        "target": {"connection": "db", "table": "orders_copy"},
        "primary_key": ["id"],
        "watermark": {"column": "updated_at", "type": "timestamp", "tiebreaker": "id"},
        **options,
    }
