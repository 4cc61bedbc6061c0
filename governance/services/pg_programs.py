"""Running PostgreSQL programs (pg_dump, pg_restore, psql) for backups and restores, with the
password kept off command lines and out of messages.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import threading
from typing import IO

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy.engine import make_url

# What of a program's stderr an error message keeps (its end says what went wrong).
STDERR_TAIL = 4000


def libpq_url(url: str) -> str:
    """A libpq URI (psycopg, pg_dump) from a SQLAlchemy-style or plain PostgreSQL URL."""
    if "://" not in url:
        return url  # already key=value conninfo
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def program_conninfo(url: str) -> tuple[str, dict[str, str]]:
    """(conninfo without the password, environment with PGPASSWORD) for a PostgreSQL program, so
    the password is never on a command line (visible to `ps`) nor in an error message."""
    params = conninfo_to_dict(libpq_url(url))
    password = params.pop("password", None)
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None}), env


_URL_PASSWORD = re.compile(r"(postgres(?:ql)?(?:\+\w+)?://[^:/@\s]*):[^@\s]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def scrub(message: str, *urls: str | None) -> str:
    """`message` with any password (in a URL, a conninfo, or the given URLs' own) masked."""
    text = _URL_PASSWORD.sub(r"\1:***@", message)
    text = _KV_PASSWORD.sub(r"\1***", text)
    for url in urls:
        if not url:
            continue
        with contextlib.suppress(Exception):
            password = conninfo_to_dict(libpq_url(url)).get("password")
            if password:
                text = text.replace(str(password), "***")
    return text


class StreamTail(threading.Thread):
    """Drains a program's pipe (so it never blocks on a full pipe), keeping the last `limit` bytes
    (stderr) or all of it (a `pg_restore -l` listing)."""

    def __init__(self, pipe: IO[bytes], limit: int | None = STDERR_TAIL) -> None:
        super().__init__(daemon=True)
        self._pipe = pipe
        self._limit = limit
        self._parts: collections.deque[bytes] = collections.deque()
        self._size = 0
        self.start()

    def run(self) -> None:
        read = getattr(self._pipe, "read1", self._pipe.read)
        for chunk in iter(lambda: read(65536), b""):
            self._parts.append(chunk)
            self._size += len(chunk)
            while self._limit is not None and self._size - len(self._parts[0]) >= self._limit:
                self._size -= len(self._parts.popleft())

    def text(self) -> str:
        self.join(timeout=10)
        data = b"".join(self._parts)
        if self._limit is not None:
            data = data[-self._limit:]
        return data.decode("utf-8", "replace").strip()


def program_error(program: str, returncode: int, stderr: str, *urls: str | None) -> str:
    detail = " ".join(stderr.split())[-STDERR_TAIL:] or "no error output"
    return scrub(f"{program} failed (exit status {returncode}): {detail}", *urls)
