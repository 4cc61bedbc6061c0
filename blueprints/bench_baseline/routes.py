"""/layout-baseline: the base layout (navigation included) with static content and no query of its own.

The yardstick of bench/probes_dashboard.py: the dashboard's throughput is reported as a ratio to this
page's, served by the same app in the same run. Both pay for the same sign-in checks (session,
permission) and the same navigation; only the dashboard's own queries and rendering differ.
"""

from __future__ import annotations

from flask import Blueprint
from werkzeug.wrappers import Response

from blueprints.access import requires
from blueprints.web import render

bp = Blueprint("bench_baseline", __name__)


@bp.get("/layout-baseline")
@requires("dashboard", "read")
def layout_baseline() -> Response:
    return render("bench_baseline/layout_baseline.html")
