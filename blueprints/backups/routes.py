"""Backups and restore drills (admin page): see governance.services.backups and drills."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("backups", __name__, url_prefix="/admin/backups")
