"""Offline tools: CSV files -> log database (sync) and back (export)."""

from log.tools.export import export_logs
from log.tools.sync import sync_logs

__all__ = ["export_logs", "sync_logs"]
