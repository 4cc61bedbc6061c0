"""`flask retention run [--dry-run]` and legal holds (docs/operations.md)."""

from __future__ import annotations

from flask.cli import AppGroup

retention_cli = AppGroup("retention", help="Retention: archive expired audit partitions and evidence; legal holds.")
