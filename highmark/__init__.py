"""highmark: an ETL control plane and incremental-loading engine.

Nothing lost, nothing loaded twice, every run accounted for.
"""

from highmark.config import JobSpec, ProjectConfig, load_project_config
from highmark.errors import (
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

__all__ = [
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
