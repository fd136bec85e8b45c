"""The control store: the only code that touches highmark's control tables."""

from highmark.store.store import ControlStore

__all__ = ["ControlStore"]
