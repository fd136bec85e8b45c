"""Movers: how each kind of job moves its data (highmark/run.py runs them all the same way).

base.py    the seam: Mover, RunContext, MarkUpdate
table.py   SQL tables: incremental windows, full refreshes, parallel first loads
"""
