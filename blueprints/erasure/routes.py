"""GDPR erasure requests: see governance.services.erasure."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("erasure", __name__, url_prefix="/admin/erasure")
