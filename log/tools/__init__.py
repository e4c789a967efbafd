"""Offline tools: CSV files -> log database (sync) and back (export)."""

from log.tools.export import export_logs
from log.tools.prune import prune_logs
from log.tools.sync import sync_logs

__all__ = ["export_logs", "prune_logs", "sync_logs"]
