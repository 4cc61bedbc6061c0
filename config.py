"""Settings from the environment, under the names documented in .env.example.

Every secret may also be read from a file named by NAME_FILE (as Docker/Kubernetes secret stores
mount them). With APP_ENV=production, load_settings() refuses unsafe defaults and says which.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# Values that must never reach production: the ones in .env.example and the SDKs' documentation.
DEFAULT_SECRET_KEYS = frozenset({"", "change-me", "dev", "secret", "changeme"})
DEFAULT_S3_CREDENTIALS = frozenset({"", "minioadmin", "change-me", "changeme"})

SECRET_NAMES = ("SECRET_KEY", "DATABASE_URL", "DATABASE_ADMIN_URL", "S3_ACCESS_KEY", "S3_SECRET_KEY",
                "BACKUP_ENCRYPTION_KEY", "S3_SSE_C_KEY")


class ConfigError(RuntimeError):
    """A setting is missing or unsafe; the message names it."""


def _read(env: Mapping[str, str], name: str) -> str | None:
    """NAME wins; otherwise the content of the file named by NAME_FILE (trailing newline stripped)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path} cannot be read: {exc.strerror}") from exc
    return None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


DEFAULT_TASK_SLA_DAYS = {"critical": 2, "high": 7, "medium": 30, "low": 90}


def _sla_days(raw: str | None) -> dict[str, int]:
    """TASK_SLA_DAYS="critical=2,high=7,medium=30,low=90": days per severity (unnamed ones keep
    their default)."""
    days = dict(DEFAULT_TASK_SLA_DAYS)
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in days:
            raise ConfigError(f"TASK_SLA_DAYS takes severity=days pairs ({', '.join(days)}), got {part.strip()!r}")
        try:
            days[name] = int(value)
        except ValueError as exc:
            raise ConfigError(f"TASK_SLA_DAYS: {name} must be a whole number of days, got {value.strip()!r}") from exc
        if days[name] < 0:
            raise ConfigError(f"TASK_SLA_DAYS: {name} cannot be negative")
    return days


def _prepare_threshold(raw: str | None) -> int | None:
    """DB_PREPARE_THRESHOLD: a whole number >= 0 (psycopg's default 5), or off/none (never prepare)."""
    if raw is None or not raw.strip():
        return 5
    value = raw.strip().lower()
    if value in ("off", "none"):
        return None
    try:
        threshold = int(value)
    except ValueError as exc:
        raise ConfigError(f"DB_PREPARE_THRESHOLD must be a whole number or off, got {raw!r}") from exc
    if threshold < 0:
        raise ConfigError(f"DB_PREPARE_THRESHOLD cannot be negative, got {threshold}")
    return threshold


def normalise_database_url(url: str) -> str:
    """We always talk psycopg 3: accept the common postgres:// spellings and rewrite them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass(frozen=True)
class Settings:
    app_env: str = "development"
    secret_key: str | None = None
    database_url: str | None = None
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_evidence_bucket: str = "evidence"
    instance_dir: Path = ROOT / "instance"
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout: int = 30
    db_pool_recycle: int = 1800
    db_pool_pre_ping: bool = True
    db_statement_timeout_ms: int = 30000
    # psycopg prepares a statement on the server after this many executions on a connection (0: at
    # once; None: never, for a PgBouncer in transaction mode before 1.21). docs/operations.md.
    db_prepare_threshold: int | None = 5
    # A request that only read ends its transaction with COMMIT, not ROLLBACK, so psycopg keeps its
    # prepared statements (governance.read_only); false: always ROLLBACK.
    db_commit_read_only: bool = True
    log_level: str = "INFO"
    # Identity and access (docs/security.md)
    session_idle_minutes: int = 30
    session_max_hours: int = 8
    mfa_required_roles: tuple[str, ...] = ("admin",)
    login_max_failures: int = 5
    login_window_minutes: int = 15
    login_lockout_minutes: int = 15
    denial_alert_threshold: int = 10
    denial_alert_window_minutes: int = 5
    # Reverse proxies in front of the app whose X-Forwarded-* headers are trusted (0: none).
    proxy_fix_hops: int = 0
    # Evidence (docs/evidence.md)
    evidence_max_bytes: int = 2 * 1024**3
    evidence_zip_max_entries: int = 10_000
    evidence_zip_max_uncompressed_bytes: int = 8 * 1024**3
    evidence_zip_max_ratio: int = 200
    # Approved revisions are put under S3 object lock (where the store supports it) for this long.
    evidence_lock_days: int = 1095
    evidence_lock_mode: str = "GOVERNANCE"
    # Owners are told this many days before their evidence expires.
    evidence_expiry_notice_days: int = 14
    # The dashboard's widgets reload themselves this often (seconds; also on probe-run-finished).
    dashboard_refresh_seconds: int = 30
    # Widgets are kept in the shared read cache until a write changes their data, and at most this
    # long (seconds) for what depends on the clock alone (overdue, expiring soon); 0 turns it off.
    dashboard_cache_seconds: int = 60
    # The frameworks list's control counts and a framework page's first tree level are kept in the
    # shared read cache until a control or framework changes, and at most this long; 0 turns it off.
    catalog_cache_seconds: int = 3600
    # E-mail (notifications): nothing is sent while SMTP_HOST is empty.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_from: str = "governance@localhost"
    # Absolute base URL for links in e-mails (e.g. https://governance.example.org).
    public_base_url: str = "http://127.0.0.1:5000"
    # Probes (docs/probes.md): a run whose kind has not finished after this many seconds is timed out.
    probe_run_timeout_s: int = 120
    # Remediation tasks (docs/alerts.md): an alert's task is due this many days after it opens.
    task_sla_days: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TASK_SLA_DAYS))
    # Audit log (docs/audit.md): the hourly chain-head anchors go to this bucket (object lock where
    # the store supports it), each locked this many days in the evidence lock mode.
    audit_anchor_bucket: str = "audit-anchors"
    audit_anchor_lock_days: int = 400
    # Data lifecycle (docs/operations.md).
    # Migrations, partition maintenance, retention, restores and drills need the schema's owner; the
    # app itself runs as the service role (DATABASE_URL). Unset: DATABASE_URL is used for both.
    database_admin_url: str | None = None
    # Backups: AES-256-GCM under this key (32 bytes, base64; never stored beside the backups).
    backup_bucket: str = "backups"
    backup_encryption_key: str | None = None
    backup_retention_days: int = 90
    # The monitoring check alerts when the last successful backup is older than this.
    backup_max_age_hours: int = 26
    # Evidence objects whose SHA-256 a restore drill re-checks.
    drill_sample_objects: int = 20
    # Where pg_dump / pg_restore are (unset: the embedded PostgreSQL's, else the PATH's).
    pg_bin_dir: str | None = None
    # Retention per data class, in months; then archived to the cold bucket.
    retention_evidence_months: int = 36
    retention_audit_months: int = 36
    cold_bucket: str = "cold-storage"
    # Server-side encryption of evidence objects: none, s3 (SSE-S3) or c (SSE-C with S3_SSE_C_KEY,
    # 32 bytes base64). TLS to the store: S3_SECURE=true, S3_CA_BUNDLE for a private CA.
    s3_sse: str = "none"
    s3_sse_c_key: str | None = None
    s3_ca_bundle: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url

    @property
    def uses_embedded_s3(self) -> bool:
        return not self.s3_endpoint

    @property
    def admin_database_url(self) -> str:
        """The URL for schema-owning work (migrations, partitions, retention, restores)."""
        return self.database_admin_url or self.database_url or ""


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    app_env = (env.get("APP_ENV") or "development").strip().lower()
    if app_env not in ("development", "production", "test"):
        raise ConfigError(f"APP_ENV must be development, production or test, got {app_env!r}")
    database_url = _read(env, "DATABASE_URL")
    admin_url = _read(env, "DATABASE_ADMIN_URL")
    settings = Settings(
        app_env=app_env,
        secret_key=_read(env, "SECRET_KEY"),
        database_url=normalise_database_url(database_url) if database_url else None,
        s3_endpoint=env.get("S3_ENDPOINT") or None,
        s3_access_key=_read(env, "S3_ACCESS_KEY"),
        s3_secret_key=_read(env, "S3_SECRET_KEY"),
        s3_secure=_bool(env, "S3_SECURE", False),
        s3_region=env.get("S3_REGION") or "us-east-1",
        s3_evidence_bucket=env.get("S3_EVIDENCE_BUCKET") or "evidence",
        instance_dir=Path(env.get("INSTANCE_DIR") or ROOT / "instance").resolve(),
        db_pool_size=_int(env, "DB_POOL_SIZE", 10),
        db_max_overflow=_int(env, "DB_MAX_OVERFLOW", 10),
        db_pool_timeout=_int(env, "DB_POOL_TIMEOUT", 30),
        db_pool_recycle=_int(env, "DB_POOL_RECYCLE", 1800),
        db_pool_pre_ping=_bool(env, "DB_POOL_PRE_PING", True),
        db_statement_timeout_ms=_int(env, "DB_STATEMENT_TIMEOUT_MS", 30000),
        db_prepare_threshold=_prepare_threshold(env.get("DB_PREPARE_THRESHOLD")),
        db_commit_read_only=_bool(env, "DB_COMMIT_READ_ONLY", True),
        log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
        session_idle_minutes=_int(env, "SESSION_IDLE_MINUTES", 30),
        session_max_hours=_int(env, "SESSION_MAX_HOURS", 8),
        mfa_required_roles=tuple(
            r.strip() for r in env.get("MFA_REQUIRED_ROLES", "admin").split(",") if r.strip()
        ),
        login_max_failures=_int(env, "LOGIN_MAX_FAILURES", 5),
        login_window_minutes=_int(env, "LOGIN_WINDOW_MINUTES", 15),
        login_lockout_minutes=_int(env, "LOGIN_LOCKOUT_MINUTES", 15),
        denial_alert_threshold=_int(env, "DENIAL_ALERT_THRESHOLD", 10),
        denial_alert_window_minutes=_int(env, "DENIAL_ALERT_WINDOW_MINUTES", 5),
        proxy_fix_hops=_int(env, "PROXY_FIX_HOPS", 0),
        evidence_max_bytes=_int(env, "EVIDENCE_MAX_BYTES", 2 * 1024**3),
        evidence_zip_max_entries=_int(env, "EVIDENCE_ZIP_MAX_ENTRIES", 10_000),
        evidence_zip_max_uncompressed_bytes=_int(env, "EVIDENCE_ZIP_MAX_UNCOMPRESSED_BYTES", 8 * 1024**3),
        evidence_zip_max_ratio=_int(env, "EVIDENCE_ZIP_MAX_RATIO", 200),
        evidence_lock_days=_int(env, "EVIDENCE_LOCK_DAYS", 1095),
        evidence_lock_mode=(env.get("EVIDENCE_LOCK_MODE") or "GOVERNANCE").upper(),
        evidence_expiry_notice_days=_int(env, "EVIDENCE_EXPIRY_NOTICE_DAYS", 14),
        dashboard_refresh_seconds=max(5, _int(env, "DASHBOARD_REFRESH_SECONDS", 30)),
        dashboard_cache_seconds=max(0, _int(env, "DASHBOARD_CACHE_SECONDS", 60)),
        catalog_cache_seconds=max(0, _int(env, "CATALOG_CACHE_SECONDS", 3600)),
        smtp_host=env.get("SMTP_HOST") or None,
        smtp_port=_int(env, "SMTP_PORT", 587),
        smtp_username=_read(env, "SMTP_USERNAME"),
        smtp_password=_read(env, "SMTP_PASSWORD"),
        smtp_starttls=_bool(env, "SMTP_STARTTLS", True),
        smtp_from=env.get("SMTP_FROM") or "governance@localhost",
        public_base_url=(env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),
        probe_run_timeout_s=_int(env, "PROBE_RUN_TIMEOUT_S", 120),
        task_sla_days=_sla_days(env.get("TASK_SLA_DAYS")),
        audit_anchor_bucket=env.get("AUDIT_ANCHOR_BUCKET") or "audit-anchors",
        audit_anchor_lock_days=max(0, _int(env, "AUDIT_ANCHOR_LOCK_DAYS", 400)),
        database_admin_url=normalise_database_url(admin_url) if admin_url else None,
        backup_bucket=env.get("BACKUP_BUCKET") or "backups",
        backup_encryption_key=_read(env, "BACKUP_ENCRYPTION_KEY"),
        backup_retention_days=_int(env, "BACKUP_RETENTION_DAYS", 90),
        backup_max_age_hours=_int(env, "BACKUP_MAX_AGE_HOURS", 26),
        drill_sample_objects=max(0, _int(env, "DRILL_SAMPLE_OBJECTS", 20)),
        pg_bin_dir=env.get("PG_BIN_DIR") or None,
        retention_evidence_months=_int(env, "RETENTION_EVIDENCE_MONTHS", 36),
        retention_audit_months=_int(env, "RETENTION_AUDIT_MONTHS", 36),
        cold_bucket=env.get("COLD_BUCKET") or "cold-storage",
        s3_sse=(env.get("S3_SSE") or "none").strip().lower(),
        s3_sse_c_key=_read(env, "S3_SSE_C_KEY"),
        s3_ca_bundle=env.get("S3_CA_BUNDLE") or None,
    )
    if settings.s3_sse not in ("none", "s3", "c"):
        raise ConfigError(f"S3_SSE must be none, s3 or c, got {settings.s3_sse!r}")
    if settings.s3_sse == "c" and not settings.s3_sse_c_key:
        raise ConfigError("S3_SSE=c needs S3_SSE_C_KEY (32 bytes, base64)")
    for name, months in (("RETENTION_EVIDENCE_MONTHS", settings.retention_evidence_months),
                         ("RETENTION_AUDIT_MONTHS", settings.retention_audit_months)):
        if months < 1:
            raise ConfigError(f"{name} must be at least 1 (months), got {months}")
    if settings.backup_retention_days < 1:
        raise ConfigError(f"BACKUP_RETENTION_DAYS must be at least 1, got {settings.backup_retention_days}")
    if settings.evidence_lock_mode not in ("GOVERNANCE", "COMPLIANCE"):
        raise ConfigError(f"EVIDENCE_LOCK_MODE must be GOVERNANCE or COMPLIANCE, got {settings.evidence_lock_mode!r}")
    if settings.probe_run_timeout_s < 1:
        raise ConfigError(f"PROBE_RUN_TIMEOUT_S must be at least 1 (seconds), got {settings.probe_run_timeout_s}")
    if settings.production:
        check_production(settings)
    return settings


def check_production(settings: Settings) -> None:
    """Refuse to start with anything a production deployment must not run on; name every problem."""
    problems = []
    if (settings.secret_key or "") in DEFAULT_SECRET_KEYS or len(settings.secret_key or "") < 32:
        problems.append("SECRET_KEY is missing, a default, or shorter than 32 characters")
    if not settings.database_url:
        problems.append("DATABASE_URL is not set (the embedded PostgreSQL is for development only)")
    if not settings.s3_endpoint:
        problems.append("S3_ENDPOINT is not set (the embedded S3 server is for development only)")
    if (settings.s3_access_key or "") in DEFAULT_S3_CREDENTIALS:
        problems.append("S3_ACCESS_KEY is missing or a default credential")
    if (settings.s3_secret_key or "") in DEFAULT_S3_CREDENTIALS:
        problems.append("S3_SECRET_KEY is missing or a default credential")
    if not settings.backup_encryption_key:
        problems.append("BACKUP_ENCRYPTION_KEY is not set (backups could not be encrypted)")
    if problems:
        raise ConfigError("refusing to start in production: " + "; ".join(problems))


def flask_config(settings: Settings) -> dict[str, object]:
    """The Flask / Flask-SQLAlchemy keys derived from the settings."""
    from datetime import timedelta

    return {
        "SECRET_KEY": settings.secret_key,
        "SQLALCHEMY_DATABASE_URI": settings.database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow,
            "pool_timeout": settings.db_pool_timeout,
            "pool_recycle": settings.db_pool_recycle,
            "pool_pre_ping": settings.db_pool_pre_ping,
            "connect_args": {"options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
                             "prepare_threshold": settings.db_prepare_threshold},
        },
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        # "__Host-" makes browsers insist on Secure, Path=/ and no Domain (no subdomain can set it).
        "SESSION_COOKIE_NAME": "__Host-session" if settings.production else "session",
        "SESSION_COOKIE_PATH": "/",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": settings.production,
        # Sign-in cookies are browser-session cookies; user_sessions enforces the idle and absolute
        # limits. Should anything mark a session permanent, its cookie still ends with the latter.
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=settings.session_max_hours),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "WTF_CSRF_TIME_LIMIT": None,
        "APP_ENV": settings.app_env,
        "SETTINGS": settings,
    }
