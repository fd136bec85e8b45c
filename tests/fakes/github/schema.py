"""GitHub's public GraphQL schema, built once per process, with the scalars rendered the way
GitHub renders them.

The SDL is ``tests/fakes/github-schema.graphql.gz``: GitHub's public schema from
octokit/graphql-schema (``schema.graphql``, July 2026), MIT License, Copyright (c) GitHub. It is
kept gzipped in the repository so tests never read outside it.
"""

from __future__ import annotations

import functools
import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphql import GraphQLScalarType, GraphQLSchema, build_schema

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "github-schema.graphql.gz"


def iso(when: datetime) -> str:
    """A ``DateTime`` as GitHub sends it: UTC, second precision, ``Z``."""
    return when.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _serialize_datetime(value: Any) -> str:
    return iso(value) if isinstance(value, datetime) else str(value)


@functools.cache
def github_schema() -> GraphQLSchema:
    """The built schema (about a second to build: done once per process).

    ``assume_valid_sdl`` because the SDL defines one field twice; ``assume_valid`` because
    graphql-core 3.3 also rejects the schema's deprecated implementations of non-deprecated
    interface fields (``Project.id``, ``PullRequest.databaseId``), which GitHub serves anyway.
    """
    sdl = gzip.decompress(SCHEMA_PATH.read_bytes()).decode()
    schema = build_schema(sdl, assume_valid=True, assume_valid_sdl=True)
    scalars: dict[str, Any] = {"DateTime": _serialize_datetime, "BigInt": str}
    for name, serialize in scalars.items():
        scalar = schema.type_map[name]
        assert isinstance(scalar, GraphQLScalarType)
        # graphql-core 3.3 renders with coerce_output_value, 3.2 with serialize
        for attr in ("coerce_output_value", "serialize"):
            setattr(scalar, attr, serialize)
    return schema
