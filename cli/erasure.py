"""`flask erasure ...`: GDPR erasure requests from the command line (docs/operations.md)."""

from __future__ import annotations

from flask.cli import AppGroup

erasure_cli = AppGroup("erasure", help="GDPR erasure requests: list, show receipts.")
