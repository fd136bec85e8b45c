"""Fixtures of the API tests (tests/api/support.py)."""

from tests.api.support import api_env

__all__ = ["api_env"]
