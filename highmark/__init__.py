"""highmark: an ETL control plane and incremental-loading engine.

Nothing lost, nothing loaded twice, every run accounted for.

The public names below are imported on first use (PEP 562): ``highmark --version`` and
``--help`` must not pay for SQLAlchemy and pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from highmark.config import JobSpec, ProjectConfig, load_project_config
    from highmark.errors import (
        ApiError,
        CheckpointError,
        ConfigError,
        DestinationError,
        HighmarkError,
        JobAlreadyRunningError,
        JobNotFoundError,
        LeaseLostError,
        RunCancelledError,
        SchemaConflictError,
        SourceError,
        StoreError,
        StoreVersionError,
    )
    from highmark.models import (
        Counts,
        JobRecord,
        LoadType,
        RunRecord,
        RunStatus,
        TriggeredBy,
        Watermark,
        WatermarkRecord,
        WatermarkType,
    )
    from highmark.project import Project
    from highmark.run import CancelToken, RunObserver

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY: dict[str, str] = {
    "JobSpec": "highmark.config",
    "ProjectConfig": "highmark.config",
    "load_project_config": "highmark.config",
    "ApiError": "highmark.errors",
    "CheckpointError": "highmark.errors",
    "ConfigError": "highmark.errors",
    "DestinationError": "highmark.errors",
    "HighmarkError": "highmark.errors",
    "JobAlreadyRunningError": "highmark.errors",
    "JobNotFoundError": "highmark.errors",
    "LeaseLostError": "highmark.errors",
    "RunCancelledError": "highmark.errors",
    "SchemaConflictError": "highmark.errors",
    "SourceError": "highmark.errors",
    "StoreError": "highmark.errors",
    "StoreVersionError": "highmark.errors",
    "Counts": "highmark.models",
    "JobRecord": "highmark.models",
    "LoadType": "highmark.models",
    "RunRecord": "highmark.models",
    "RunStatus": "highmark.models",
    "TriggeredBy": "highmark.models",
    "Watermark": "highmark.models",
    "WatermarkRecord": "highmark.models",
    "WatermarkType": "highmark.models",
    "Project": "highmark.project",
    "CancelToken": "highmark.run",
    "RunObserver": "highmark.run",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ApiError",
    "CancelToken",
    "CheckpointError",
    "ConfigError",
    "Counts",
    "DestinationError",
    "HighmarkError",
    "JobAlreadyRunningError",
    "JobNotFoundError",
    "JobRecord",
    "JobSpec",
    "LeaseLostError",
    "LoadType",
    "Project",
    "ProjectConfig",
    "RunCancelledError",
    "RunObserver",
    "RunRecord",
    "RunStatus",
    "SchemaConflictError",
    "SourceError",
    "StoreError",
    "StoreVersionError",
    "TriggeredBy",
    "Watermark",
    "WatermarkRecord",
    "WatermarkType",
    "__version__",
    "load_project_config",
]
