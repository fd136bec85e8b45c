"""Fixtures of the worker tests: a database per test with an orders table, and the workers a test
starts (none outlives it)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, Table

from tests.helpers import create_orders, insert_orders, order
from tests.worker.support import Workers


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.close()


@pytest.fixture
def orders() -> Callable[[Engine, int], Table]:
    """Create the `orders` source table with rows 1..n."""

    def make(engine: Engine, n: int) -> Table:
        table = create_orders(engine)
        insert_orders(engine, table, [order(i) for i in range(1, n + 1)])
        return table

    return make
