"""Schema changes between a source and its target, and the columns a job chooses.

change.py     SchemaChange: one change applied to (or seen in) a target, as it is recorded
types.py      can a target column hold a source column's values, or be widened to?
plan.py       compare a source table with its target: add, drop, widen, or refuse (evolve/freeze)
ddl.py        apply a plan's ALTERs on SQLite, PostgreSQL and MySQL/MariaDB
selection.py  the columns a SQL-table job reads (columns/exclude_columns) and masks (mask_columns)
sqlite_decimal.py  DECIMAL_TEXT: the SQLite column type that keeps a wide decimal exactly

Every kind of job uses them: SQL tables (destinations/sql.py), CDC (destinations/changes.py) and
API records (destinations/record_tables.py, whose entities add their own columns).
"""
