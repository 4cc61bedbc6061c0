"""The web layer: one package per feature, each with routes.py defining `bp` at the top."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from blueprints import access, request_context, web
    from blueprints.admin.routes import bp as admin_bp
    from blueprints.ai_systems import bp as ai_systems_bp
    from blueprints.alerts.routes import bp as alerts_bp
    from blueprints.audit.routes import bp as audit_bp
    from blueprints.auth.routes import bp as auth_bp
    from blueprints.backups.routes import bp as backups_bp
    from blueprints.bench_baseline.routes import bp as bench_baseline_bp
    from blueprints.erasure.routes import bp as erasure_bp
    from blueprints.errors.routes import bp as errors_bp
    from blueprints.evidence.routes import bp as evidence_bp
    from blueprints.evidence_upload.routes import bp as evidence_upload_bp
    from blueprints.framework_import.routes import bp as framework_import_bp
    from blueprints.frameworks.routes import bp as frameworks_bp
    from blueprints.health.routes import bp as health_bp
    from blueprints.main.routes import bp as main_bp
    from blueprints.notifications.routes import bp as notifications_bp
    from blueprints.probes.routes import bp as probes_bp
    from blueprints.reports.routes import bp as reports_bp
    from blueprints.retention.routes import bp as retention_bp
    from blueprints.tasks.routes import bp as tasks_bp

    request_context.init_app(app)
    web.init_app(app)
    for bp in (auth_bp, errors_bp, health_bp, main_bp, framework_import_bp, frameworks_bp, admin_bp,
               evidence_upload_bp, evidence_bp, notifications_bp, bench_baseline_bp, probes_bp):
        app.register_blueprint(bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(alerts_bp)
    app.register_blueprint(tasks_bp)
    app.register_blueprint(ai_systems_bp)
    for bp in (backups_bp, retention_bp, erasure_bp, reports_bp):
        app.register_blueprint(bp)
    access.init_app(app)
