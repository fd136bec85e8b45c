"""Movers: how each kind of job moves its data (highmark/run.py runs them all the same way).

base.py            the seam: Mover, RunContext, MarkUpdate
table.py           SQL tables: incremental windows, full refreshes, first loads
table_parallel.py  first loads in key ranges at once (parallelism)
"""
