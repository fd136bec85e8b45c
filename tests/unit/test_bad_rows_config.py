"""``on_bad_rows``: per job, with the top of the project file as the default of every SQL job;
a wrong value is one line naming the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from highmark.config import TableJobSpec, parse_project_text
from highmark.errors import ConfigError

PROJECT = """\
connections: {{db: "sqlite:///data.db"}}
{top}
jobs:
  plain:
    load_type: full
    source: {{connection: db, table: orders}}
    target: {{connection: db, table: orders_copy}}
    primary_key: [id]
  own:
    load_type: full
    source: {{connection: db, table: orders}}
    target: {{connection: db, table: orders_own}}
    primary_key: [id]
    on_bad_rows: {own}
"""


def _policies(tmp_path: Path, top: str, own: str) -> dict[str, str]:
    config = parse_project_text(PROJECT.format(top=top, own=own), tmp_path / "highmark.yml")
    jobs = config.jobs
    return {k: j.on_bad_rows for k, j in jobs.items() if isinstance(j, TableJobSpec)}


def test_the_default_is_fail_and_the_top_of_the_file_changes_it(tmp_path: Path) -> None:
    assert _policies(tmp_path, "", "quarantine") == {"plain": "fail", "own": "quarantine"}
    assert _policies(tmp_path, "on_bad_rows: quarantine", "fail") == {
        "plain": "quarantine",
        "own": "fail",
    }


@pytest.mark.parametrize(("top", "own", "where"), [
    ("", "skip", "job own: on_bad_rows"),
    ("on_bad_rows: ignore", "fail", "on_bad_rows"),
])  # fmt: skip
def test_a_wrong_value_is_one_line(tmp_path: Path, top: str, own: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _policies(tmp_path, top, own)
    message = str(caught.value)
    assert "\n" not in message and where in message and "highmark.yml:" in message
    assert "fail" in message and "quarantine" in message
