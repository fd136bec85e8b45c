"""CDC tests run on the two databases that have a log highmark reads."""

from __future__ import annotations

import pytest

CDC_BACKENDS = ["postgresql", "mysql"]


@pytest.fixture(params=CDC_BACKENDS)
def cdc_url(request: pytest.FixtureRequest) -> str:
    fixture = "pg_url" if request.param == "postgresql" else "mysql_url"
    return str(request.getfixturevalue(fixture))
