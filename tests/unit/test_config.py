from pathlib import Path

import pytest

import config
from app import create_app


def test_defaults_leave_services_to_the_embedded_ones() -> None:
    settings = config.load_settings({})
    assert settings.app_env == "development"
    assert settings.uses_embedded_database and settings.uses_embedded_s3
    assert settings.db_pool_size == 10 and settings.db_statement_timeout_ms == 30000


def test_database_url_spellings_become_psycopg() -> None:
    for given in ("postgres://u@h/db", "postgresql://u@h/db", "postgresql+psycopg://u@h/db"):
        assert config.load_settings({"DATABASE_URL": given}).database_url == "postgresql+psycopg://u@h/db"


def test_secrets_are_read_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 40 + "\n")
    creds = tmp_path / "s3secret"
    creds.write_text("from-a-file")
    settings = config.load_settings({"SECRET_KEY_FILE": str(secret), "S3_SECRET_KEY_FILE": str(creds)})
    assert settings.secret_key == "s" * 40
    assert settings.s3_secret_key == "from-a-file"


def test_a_direct_value_wins_over_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file")
    assert config.load_settings({"SECRET_KEY": "direct", "SECRET_KEY_FILE": str(secret)}).secret_key == "direct"


def test_an_unreadable_secret_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="SECRET_KEY_FILE"):
        config.load_settings({"SECRET_KEY_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(("name", "value", "message"), [
    ("DB_POOL_SIZE", "ten", "DB_POOL_SIZE must be a whole number"),
    ("DB_POOL_PRE_PING", "maybe", "DB_POOL_PRE_PING must be true or false"),
    ("APP_ENV", "staging", "APP_ENV must be"),
])
def test_malformed_settings_are_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load_settings({name: value})


PRODUCTION_OK = {
    "APP_ENV": "production",
    "SECRET_KEY": "k" * 48,
    "DATABASE_URL": "postgresql://app@db.internal/governance",
    "S3_ENDPOINT": "minio.internal:9000",
    "S3_ACCESS_KEY": "governance-app",
    "S3_SECRET_KEY": "a-long-random-secret",
    "BACKUP_ENCRYPTION_KEY": "x" * 44,
}


def test_production_accepts_complete_safe_settings() -> None:
    settings = config.load_settings(PRODUCTION_OK)
    assert settings.production
    assert config.flask_config(settings)["SESSION_COOKIE_SECURE"] is True


@pytest.mark.parametrize(("override", "named"), [
    ({"SECRET_KEY": ""}, "SECRET_KEY"),
    ({"SECRET_KEY": "change-me"}, "SECRET_KEY"),
    ({"SECRET_KEY": "short"}, "SECRET_KEY"),
    ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ({"S3_ENDPOINT": ""}, "S3_ENDPOINT"),
    ({"S3_ACCESS_KEY": "minioadmin"}, "S3_ACCESS_KEY"),
    ({"S3_SECRET_KEY": "minioadmin"}, "S3_SECRET_KEY"),
])
def test_production_refuses_unsafe_defaults_and_names_them(override: dict[str, str], named: str) -> None:
    with pytest.raises(config.ConfigError, match=named):
        config.load_settings({**PRODUCTION_OK, **override})


def test_production_lists_every_problem_at_once() -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load_settings({"APP_ENV": "production"})
    for name in ("SECRET_KEY", "DATABASE_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
        assert name in str(info.value)


def test_create_app_refuses_to_start_in_production_with_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    for name in ("SECRET_KEY", "DATABASE_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(config.ConfigError, match="refusing to start in production"):
        create_app()


def test_pool_settings_reach_the_engine(test_settings: config.Settings) -> None:
    import dataclasses

    from extensions import db

    settings = dataclasses.replace(test_settings, db_pool_size=3, db_max_overflow=2,
                                   db_statement_timeout_ms=1234)
    app = create_app({"TESTING": True}, settings=settings)
    with app.app_context():
        engine = db.engine
        assert engine.pool.size() == 3
        assert engine.pool._max_overflow == 2  # type: ignore[attr-defined]
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "1234ms"
        engine.dispose()
