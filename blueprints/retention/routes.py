"""Retention and legal holds: see governance.services.retention and legal_holds."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("retention", __name__, url_prefix="/admin/retention")
