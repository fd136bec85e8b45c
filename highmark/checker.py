"""`highmark check`: is each job's source table fit for incremental loading?

One finding per item of the reference's checklist (shared/reference/000, "Source Tables
Requirements" and "Checklist"), each pass / warn / fail with the fix; ``--sql`` adds the DDL that
would fix a finding (printed, never run). A failure makes the command exit 1.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from highmark.config import ProjectConfig, TableJobSpec
from highmark.errors import HighmarkError
from highmark.findings import Finding, Level
from highmark.models import LoadType, WatermarkType
from highmark.sources.introspect import TableFacts, table_facts
from highmark.sources.sql import SqlSource
from highmark.sqlschema import TableSchema
from highmark.sqltypes import TimestampKind


class _Report:
    def __init__(self, job: TableJobSpec) -> None:
        self.job = job
        self.findings: list[Finding] = []

    def add(self, check: str, level: Level, detail: str, fix: str = "", sql: str = "") -> None:
        self.findings.append(Finding(self.job.job_id, check, level, detail, fix, sql))


def check_job(config: ProjectConfig, job: TableJobSpec) -> list[Finding]:
    """Every check for one job's source, in checklist order."""
    report = _Report(job)
    source = SqlSource(config.resolve(job.source.connection), job.source, job)
    try:
        schema = source.describe()
    except HighmarkError as exc:
        report.add("source table", Level.FAIL, str(exc), "create the table or fix the job's source")
        return report.findings
    report.add(
        "source table", Level.PASS, f"{schema.qualified_name}: {len(schema.columns)} columns"
    )
    try:
        with source.engine.connect() as conn:
            facts = table_facts(conn, job.source.schema_name, job.source.table_name)
    except Exception as exc:  # introspection is best effort; say what could not be checked
        report.add("table details", Level.WARN, f"could not inspect: {exc}")
        return report.findings
    ddl = _Ddl(schema, job)
    _primary_key(report, facts, ddl)
    report.add("rows", Level.PASS, f"{facts.row_count:,} rows")
    if job.load_type is not LoadType.FULL and job.watermark is not None:
        _watermark(report, facts, schema, ddl)
        _soft_delete(report, facts, ddl)
        _bound(report, source)
        _zone(report, schema, config)
    return report.findings


def _primary_key(report: _Report, facts: TableFacts, ddl: _Ddl) -> None:
    keys = report.job.primary_key
    if facts.primary_key:
        report.add("primary key", Level.PASS, f"({', '.join(facts.primary_key)})")
    elif len(keys) == 1 and facts.is_unique(keys[0]):
        report.add(
            "primary key",
            Level.WARN,
            f"no primary key; {keys[0]} is unique",
            "declare the primary key",
            ddl.add_primary_key(),
        )
    else:
        report.add(
            "primary key",
            Level.FAIL,
            "no primary key",
            f"add a primary key on ({', '.join(keys)})",
            ddl.add_primary_key(),
        )


def _watermark(report: _Report, facts: TableFacts, schema: TableSchema, ddl: _Ddl) -> None:
    spec = report.job.watermark
    assert spec is not None
    column = facts.column(spec.column)
    assert column is not None  # describe() checked it exists
    report.add("watermark column", Level.PASS, f"{column.name} ({spec.type.value})")
    if column.nullable:
        report.add(
            "watermark not null",
            Level.WARN,
            f"{column.name} allows NULL",
            "make it NOT NULL (NULL rows are never read by a window)",
            ddl.set_not_null(column.name),
        )
    else:
        report.add("watermark not null", Level.PASS, f"{column.name} is NOT NULL")
    if facts.leads_an_index(column.name):
        report.add("watermark index", Level.PASS, f"an index starts with {column.name}")
    else:
        report.add(
            "watermark index",
            Level.FAIL,
            f"no index starts with {column.name}",
            "add an index so each run reads its window without a full scan",
            ddl.create_index(),
        )
    if spec.tiebreaker:
        if facts.is_unique(spec.tiebreaker):
            report.add("tiebreaker unique", Level.PASS, f"{spec.tiebreaker} is unique")
        else:
            report.add(
                "tiebreaker unique",
                Level.FAIL,
                f"{spec.tiebreaker} is not unique",
                "a tiebreaker must be unique, or ties are lost or read twice",
                ddl.unique_index(spec.tiebreaker),
            )
    if spec.type is not WatermarkType.TIMESTAMP:
        return
    if column.default:
        report.add("watermark default", Level.PASS, f"default {column.default}")
    else:
        report.add(
            "watermark default",
            Level.WARN,
            f"{column.name} has no default",
            "let the database stamp new rows",
            ddl.set_default(column.name),
        )
    if column.on_update or facts.bumped_by_trigger(column.name):
        how = "ON UPDATE" if column.on_update else f"trigger {', '.join(facts.bump_triggers)}"
        report.add("watermark bumped on update", Level.PASS, f"by {how}")
    else:
        report.add(
            "watermark bumped on update",
            Level.WARN,
            f"nothing in the database updates {column.name} on UPDATE; writers that "
            "forget it (bulk updates) are never seen",
            "bump it in the database",
            ddl.bump_on_update(column.name),
        )


def _soft_delete(report: _Report, facts: TableFacts, ddl: _Ddl) -> None:
    soft, spec = report.job.soft_delete, report.job.watermark
    if soft is None or spec is None:
        return
    column = facts.column(soft.column)
    if column is None:
        report.add("soft delete column", Level.FAIL, f"{soft.column} does not exist")
        return
    wm = facts.column(spec.column)
    covered = wm is not None and (wm.on_update or facts.bumped_by_trigger(wm.name))
    if covered:
        report.add(
            "soft delete covered",
            Level.PASS,
            f"setting {column.name} bumps {spec.column}, so deletions are read",
        )
    else:
        report.add(
            "soft delete covered",
            Level.WARN,
            f"deletions are read only if writers bump {spec.column} with {column.name}",
            "bump the watermark in the database",
            ddl.bump_on_update(spec.column),
        )


def _bound(report: _Report, source: SqlSource) -> None:
    spec = report.job.watermark
    assert spec is not None
    try:
        bound = source.upper_bound(None)
    except HighmarkError as exc:
        report.add("upper bound", Level.FAIL, str(exc))
        return
    if bound.blind:
        allowed = bool(spec.lag) or spec.blind_bound == "allow"
        report.add(
            "upper bound",
            Level.WARN if allowed else Level.FAIL,
            f"blind to open transactions ({bound.reason})"
            + ("" if allowed else ": incremental runs are refused"),
            "grant pg_read_all_stats (PostgreSQL) or PROCESS (MySQL/MariaDB)"
            + ("" if allowed else ", or set watermark.lag"),
        )
    else:
        report.add("upper bound", Level.PASS, f"{bound.high} ({bound.reason})")
    found = source.anomalies(bound.now)
    if found.null_rows:
        level = Level.FAIL if spec.on_null == "error" else Level.WARN
        report.add(
            "null watermarks",
            level,
            f"{found.null_rows} row(s) with a NULL {spec.column}",
            f"set {spec.column} on those rows, or watermark.on_null: skip|include",
        )
    else:
        report.add("null watermarks", Level.PASS, "none")
    if found.future_rows:
        report.add(
            "future watermarks",
            Level.WARN,
            f"{found.future_rows} row(s) with {spec.column} after the source clock "
            f"(up to {found.future_max}); no window reads them until then",
            "correct the timestamps",
        )


def _zone(report: _Report, schema: TableSchema, config: ProjectConfig) -> None:
    spec = report.job.watermark
    assert spec is not None
    column = schema.find(spec.column)
    if column is None or column.timestamp_kind is not TimestampKind.LOCAL_NAIVE:
        return
    zone = config.database(report.job.source.connection).timezone
    if _has_dst(zone):
        report.add(
            "time zone",
            Level.WARN,
            f"{column.name} has no time zone and is read as {zone}, which repeats an hour "
            "each autumn: rows written then may sort before earlier ones",
            "store timestamps with a time zone (timestamptz) or in UTC",
        )


def _has_dst(name: str) -> bool:
    from datetime import datetime

    zone = ZoneInfo(name)
    offsets = {datetime(2024, month, 1, tzinfo=zone).utcoffset() for month in (1, 7)}
    return len(offsets) > 1


class _Ddl:
    """The DDL that would fix a finding, in the source's dialect (printed, never run)."""

    def __init__(self, schema: TableSchema, job: TableJobSpec) -> None:
        self.dialect = schema.dialect
        self.table = schema.qualified_name
        self.name = schema.name
        self.job = job

    def add_primary_key(self) -> str:
        if self.dialect == "sqlite":
            return "-- SQLite cannot add a primary key to a table: rebuild it with one"
        return f"ALTER TABLE {self.table} ADD PRIMARY KEY ({', '.join(self.job.primary_key)});"

    def create_index(self) -> str:
        spec = self.job.watermark
        assert spec is not None
        cols = [spec.column, *([spec.tiebreaker] if spec.tiebreaker else [])]
        return f"CREATE INDEX idx_{self.name}_{spec.column} ON {self.table} ({', '.join(cols)});"

    def unique_index(self, column: str) -> str:
        return f"CREATE UNIQUE INDEX uq_{self.name}_{column} ON {self.table} ({column});"

    def set_not_null(self, column: str) -> str:
        if self.dialect == "postgresql":
            return f"ALTER TABLE {self.table} ALTER COLUMN {column} SET NOT NULL;"
        if self.dialect == "mysql":
            return f"ALTER TABLE {self.table} MODIFY {column} DATETIME(6) NOT NULL;"
        return "-- SQLite cannot change a column's NULL constraint: rebuild the table"

    def set_default(self, column: str) -> str:
        if self.dialect == "postgresql":
            return f"ALTER TABLE {self.table} ALTER COLUMN {column} SET DEFAULT now();"
        if self.dialect == "mysql":
            return (
                f"ALTER TABLE {self.table} MODIFY {column} DATETIME(6) NOT NULL "
                "DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6);"
            )
        return "-- SQLite cannot change a column's default: rebuild the table"

    def bump_on_update(self, column: str) -> str:
        if self.dialect == "postgresql":
            function = f"highmark_touch_{column}"
            return (
                f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS "
                f"$$ BEGIN NEW.{column} := now(); RETURN NEW; END $$;\n"
                f"CREATE TRIGGER trg_{self.name}_touch_{column} BEFORE UPDATE ON {self.table} "
                f"FOR EACH ROW EXECUTE FUNCTION {function}();"
            )
        if self.dialect == "mysql":
            return self.set_default(column)
        return (
            f"CREATE TRIGGER trg_{self.name}_touch_{column} AFTER UPDATE ON {self.table} "
            f"FOR EACH ROW WHEN NEW.{column} IS OLD.{column} BEGIN UPDATE {self.table} "
            f"SET {column} = strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE rowid = NEW.rowid; END;"
        )
