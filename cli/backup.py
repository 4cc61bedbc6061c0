"""`flask backup create|restore|list|prune|drill` (docs/operations.md)."""

from __future__ import annotations

from flask.cli import AppGroup

backup_cli = AppGroup("backup", help="Encrypted backups, restores and restore drills.")
