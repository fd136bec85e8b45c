"""`highmark check` for CDC jobs: every server setting and privilege the log needs, with the fix.

PostgreSQL: ``wal_level=logical``, a free replication slot, a role that may replicate and create
the publication, a replica identity on the table, and the slot's lag. MySQL/MariaDB: ``log_bin``,
``binlog_format=ROW``, ``binlog_row_image=FULL``, ``binlog_row_metadata=FULL``, the replication
privileges, binlog retention, and the lag.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from highmark.config import ProjectConfig, TableJobSpec
from highmark.errors import HighmarkError
from highmark.findings import Finding, Level


class _Report:
    def __init__(self, job: TableJobSpec) -> None:
        self.job = job
        self.findings: list[Finding] = []

    def add(self, check: str, level: Level, detail: str, fix: str = "", sql: str = "") -> None:
        self.findings.append(Finding(self.job.job_id, check, level, detail, fix, sql))


def check_cdc(config: ProjectConfig, job: TableJobSpec) -> list[Finding]:
    """Every check for one CDC job's source."""
    from highmark import cdc_ops
    from highmark.sources.sql import SqlSource

    report = _Report(job)
    connection = config.resolve(job.source.connection)
    source = SqlSource(connection, job.source, job.model_copy(update={"soft_delete": None}))
    try:
        schema = source.describe()
    except HighmarkError as exc:
        report.add("source table", Level.FAIL, str(exc), "create the table or fix the job's source")
        return report.findings
    report.add(
        "source table", Level.PASS, f"{schema.qualified_name}: {len(schema.columns)} columns"
    )
    backend = connection.url.get_backend_name()
    try:
        with source.engine.connect() as conn:
            if backend == "postgresql":
                _postgres(report, conn)
            elif backend == "mysql":
                _mysql(report, conn)
            else:
                report.add(
                    "cdc source",
                    Level.FAIL,
                    f"load_type cdc reads PostgreSQL or MySQL/MariaDB, not {backend}",
                    "use load_type incremental",
                )
                return report.findings
    except Exception as exc:  # introspection is best effort; say what could not be checked
        report.add("cdc settings", Level.WARN, f"could not inspect: {exc}")
        return report.findings
    lag = cdc_ops.state(config, _store(config), job)
    if lag.error:
        report.add("log lag", Level.WARN, lag.error)
    elif lag.lag_bytes is None:
        report.add("log lag", Level.PASS, f"nothing held yet ({lag.log}: the first run sets it up)")
    elif lag.over_limit:
        report.add(
            "log lag",
            Level.FAIL,
            f"{lag.log} holds {_size(lag.lag_bytes)}, over cdc.max_lag {_size(lag.max_lag)}",
            f"run the job (highmark run {job.job_id}), or drop it: highmark cdc drop {job.job_id}",
        )
    else:
        report.add("log lag", Level.PASS, f"{lag.log} holds {_size(lag.lag_bytes)}")
    return report.findings


def _store(config: ProjectConfig) -> Any:
    from highmark.store.store import ControlStore

    return ControlStore.open(config.control_url(), migrate_schema=False)


def _postgres(report: _Report, conn: Any) -> None:
    job = report.job
    level = conn.execute(text("SHOW wal_level")).scalar_one()
    if level == "logical":
        report.add("wal_level", Level.PASS, "logical")
    else:
        report.add(
            "wal_level",
            Level.FAIL,
            f"wal_level is {level}; logical decoding needs logical",
            "set it and restart PostgreSQL",
            "ALTER SYSTEM SET wal_level = logical;  -- then restart PostgreSQL",
        )
    used, limit = conn.execute(
        text(
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name <> :s), "
            "current_setting('max_replication_slots')::int"
        ),
        {"s": job.slot_name},
    ).one()
    if used < limit:
        report.add("replication slots", Level.PASS, f"{used} of {limit} in use by others")
    else:
        report.add(
            "replication slots",
            Level.FAIL,
            f"all {limit} replication slots are in use",
            "raise max_replication_slots (restart) or drop unused slots",
            "ALTER SYSTEM SET max_replication_slots = 20;  -- then restart PostgreSQL",
        )
    role, can_replicate = conn.execute(
        text(
            "SELECT rolname, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
        )
    ).one()
    if can_replicate:
        report.add("replication role", Level.PASS, f"{role} may use replication slots")
    else:
        report.add(
            "replication role",
            Level.FAIL,
            f"role {role} has no REPLICATION attribute",
            "let it create and read replication slots",
            f'ALTER ROLE "{role}" REPLICATION;',
        )
    table = _pg_table(job)
    identity, has_pk, owns = conn.execute(
        text(
            "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
            "AND i.indisprimary), pg_has_role(current_user, c.relowner, 'USAGE') OR "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
            "FROM pg_class c WHERE c.oid = to_regclass(:t)"
        ),
        {"t": table},
    ).one()
    if identity in ("f", "i") or (identity == "d" and has_pk):
        what = {"f": "FULL", "i": "an index", "d": "the primary key"}[identity]
        report.add("replica identity", Level.PASS, f"updates and deletes are logged by {what}")
    else:
        report.add(
            "replica identity",
            Level.FAIL,
            "no replica identity: updates and deletes cannot be published (and would fail at "
            "the source once the table is in a publication)",
            "add a primary key, or log whole rows",
            f"ALTER TABLE {table} REPLICA IDENTITY FULL;",
        )
    exists = conn.execute(
        text("SELECT 1 FROM pg_publication WHERE pubname = :p"), {"p": job.publication_name}
    ).first()
    if exists is not None or owns:
        detail = "exists" if exists is not None else "the first run creates it"
        report.add("publication", Level.PASS, f"{job.publication_name} {detail}")
    else:
        report.add(
            "publication",
            Level.FAIL,
            f"role cannot create publication {job.publication_name}: it does not own {table}",
            "create it as the table's owner (or a superuser)",
            f'CREATE PUBLICATION "{job.publication_name}" FOR TABLE {table};',
        )


def _pg_table(job: TableJobSpec) -> str:
    schema, name = job.source.schema_name, job.source.table_name
    return f'"{schema}"."{name}"' if schema else f'"{name}"'


def _mysql(report: _Report, conn: Any) -> None:
    from highmark.sources.cdc_mysql import REQUIRED

    names = ", ".join(f"@@{n}" for n in REQUIRED)
    values = conn.execute(text(f"SELECT {names}")).one()
    for (name, (wanted, fix)), value in zip(REQUIRED.items(), values, strict=True):
        shown = "ON" if name == "log_bin" and str(value) == "1" else str(value)
        if str(value).upper() == wanted:
            report.add(name, Level.PASS, shown)
        else:
            sql = fix if fix.startswith("SET GLOBAL") else f"-- {fix}"
            report.add(name, Level.FAIL, f"{name} is {shown}; change capture needs {wanted}",
                       fix, sql.split(" (")[0] + ";")  # fmt: skip
    grants = " ".join(str(row[0]).upper() for row in conn.execute(text("SHOW GRANTS")))
    wanted_grants = ("REPLICATION SLAVE", "REPLICATION REPLICA", "ALL PRIVILEGES")
    if any(g in grants for g in wanted_grants):
        report.add("replication privileges", Level.PASS, "may read the binary log")
    else:
        report.add(
            "replication privileges",
            Level.FAIL,
            "the user may not read the binary log",
            "grant it REPLICATION SLAVE and BINLOG MONITOR (REPLICATION CLIENT on MySQL)",
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO CURRENT_USER;",
        )
    seconds = conn.execute(text("SELECT @@binlog_expire_logs_seconds")).scalar_one()
    if int(seconds or 0) == 0:
        report.add(
            "binlog retention",
            Level.WARN,
            "binary logs are never expired: a job that stops running fills the disk",
            "expire them after a few days (longer than a job may stay down)",
            "SET GLOBAL binlog_expire_logs_seconds = 604800;",
        )
    else:
        report.add(
            "binlog retention",
            Level.PASS,
            f"kept {int(seconds) // 3600} h: a job down longer loses its place (re-snapshot)",
        )


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"
