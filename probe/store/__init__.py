"""Where results are kept: SQLite by default, the same models on PostgreSQL centrally."""

from probe.store.database import Database, StoreError, default_database_path, open_database
from probe.store.models import RUN_STATUSES, SCHEMA_VERSION
from probe.store.owner import Holder, SweepBusy, SweepLock, sweep_lock
from probe.store.rows import ExportRow, MeasurementDetail, MeasurementRow, RunSummary
from probe.store.schema import Upgrade
from probe.store.writer import AsyncWriter

__all__ = [
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "AsyncWriter",
    "Database",
    "ExportRow",
    "Holder",
    "MeasurementDetail",
    "MeasurementRow",
    "RunSummary",
    "StoreError",
    "SweepBusy",
    "SweepLock",
    "Upgrade",
    "default_database_path",
    "open_database",
    "sweep_lock",
]
