"""columns, exclude_columns, mask_columns and schema_changes in the project file: a choice that
leaves out or masks a column the job needs is one line naming the job and the column."""

from __future__ import annotations

from pathlib import Path

import pytest

from highmark.config import TableJobSpec, parse_project_text
from highmark.errors import ConfigError
from highmark.redact import scrub

PROJECT = """\
connections:
  db: sqlite:///data.db
jobs:
  orders_sync:
    load_type: incremental
    source: {connection: db, table: orders}
    target: {connection: db, table: orders_copy}
    primary_key: [id]
    watermark: {column: updated_at, type: timestamp, tiebreaker: seq}
    soft_delete: {column: deleted_at}
"""

ERRORS = [
    ("exclude_columns: [email, id]", "exclude_columns: column id cannot be left out: it is the "
     "primary key"),
    ("exclude_columns: [updated_at]", "column updated_at cannot be left out: it is the watermark"),
    ("exclude_columns: [seq]", "column seq cannot be left out: it is the watermark's tiebreaker"),
    ("exclude_columns: [deleted_at]", "column deleted_at cannot be left out: it is the "
     "soft-delete column"),
    ("columns: [id, amount, updated_at, deleted_at]", "columns: column seq cannot be left out"),
    ("columns: [id]\n    exclude_columns: [email]", "use columns or exclude_columns, not both"),
    ("mask_columns: [id]\n    mask_key: k", "mask_columns: column id cannot be masked: it is the "
     "primary key"),
    ("mask_columns: [email]", "mask_key: mask_columns needs a mask_key"),
    ("exclude_columns: [email]\n    mask_columns: [email]\n    mask_key: k",
     "column email is masked but not loaded"),
    ("exclude_columns: [email, Email]", "exclude_columns: lists column email twice"),
    ("schema_changes: adapt", "schema_changes: Input should be 'evolve' or 'freeze'"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "expected"), ERRORS, ids=[e for e, _ in ERRORS])
def test_a_bad_column_choice_is_one_line_naming_job_and_column(
    extra: str, expected: str, tmp_path: Path
) -> None:
    text = PROJECT + f"    {extra}\n"
    with pytest.raises(ConfigError) as caught:
        parse_project_text(text, tmp_path / "highmark.yml")
    message = str(caught.value)
    assert "\n" not in message
    assert "job orders_sync" in message
    assert expected in message, message


def test_a_good_choice_and_its_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HM_TEST_MASKING", "s3cret-mask-value")
    text = (
        "mask_key: ${HM_TEST_MASKING}\n"
        "schema_changes: freeze\n"
        + PROJECT
        + "    exclude_columns: [phone]\n    mask_columns: [Email]\n"
    )
    config = parse_project_text(text, tmp_path / "highmark.yml")
    job = config.jobs["orders_sync"]
    assert isinstance(job, TableJobSpec)
    assert job.mask_key == "s3cret-mask-value"
    assert job.schema_changes == "freeze"
    assert not job.keeps("PHONE") and job.keeps("email") and job.masks("email")
    # The key is a secret: it never shows in anything highmark prints or stores.
    assert "s3cret-mask-value" not in scrub(f"key {job.mask_key}")
    assert "mask_key" not in job.model_dump() and "s3cret" not in repr(config)


def test_a_mask_key_written_in_the_file_is_a_secret_too(tmp_path: Path) -> None:
    text = PROJECT + "    mask_columns: [email]\n    mask_key: written-in-the-file-42\n"
    job = parse_project_text(text, tmp_path / "highmark.yml").jobs["orders_sync"]
    assert "written-in-the-file-42" not in scrub(f"{job.model_dump()} key written-in-the-file-42")


CDC_PROJECT = """\
connections:
  db: postgresql://localhost/shop
jobs:
  orders_cdc:
    load_type: cdc
    source: {connection: db, table: orders}
    target: {connection: db, table: orders_copy}
    primary_key: [id]
"""

CDC_ERRORS = [
    ("exclude_columns: [email, id]", "exclude_columns: column id cannot be left out: it is the "
     "primary key"),
    ("columns: [email]", "columns: column id cannot be left out: it is the primary key"),
    ("mask_columns: [id]\n    mask_key: k", "mask_columns: column id cannot be masked: it is the "
     "primary key"),
    ("soft_delete: {column: gone, mode: delete}\n    exclude_columns: [gone]",
     "column gone cannot be left out: it is the soft-delete column"),
    ("mask_columns: [email]", "mask_key: mask_columns needs a mask_key"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "expected"), CDC_ERRORS, ids=[e for e, _ in CDC_ERRORS])
def test_a_cdc_job_refuses_the_same_choices(extra: str, expected: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_project_text(CDC_PROJECT + f"    {extra}\n", tmp_path / "highmark.yml")
    message = str(caught.value)
    assert "\n" not in message and "job orders_cdc" in message
    assert expected in message, message


def test_a_cdc_job_chooses_and_masks_columns(tmp_path: Path) -> None:
    """A cdc job's mark-mode soft-delete column may be the target's own: it need not be read."""
    text = CDC_PROJECT + (
        "    columns: [id, email, amount]\n    mask_columns: [email]\n    mask_key: k3y\n"
        "    soft_delete: {column: removed_at, mode: mark}\n"
    )
    job = parse_project_text(text, tmp_path / "highmark.yml").jobs["orders_cdc"]
    assert isinstance(job, TableJobSpec)
    assert job.keeps("amount") and not job.keeps("customer") and job.masks("email")
