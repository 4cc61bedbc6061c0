"""Restoring a backup into an empty database, then migrating it forward (docs/backups.md).

Everything comes from the backup bucket (a fresh machine whose database is gone has no `backups`
rows): the manifest, then the dump streamed object -> decrypt_stream -> pg_restore's stdin, never
whole in memory or on disk. pg_restore reads a stream sequentially, so every pass lists its items
(`-L`, from `pg_restore -l` of the same archive) in archive order.

A full backup is one pass. A diff is three: the diff's pre-data (the schema, as of the diff), the
full's data for the tables the diff left out, then the diff's data (changed tables, sequence values)
and its post-data. Indexes, foreign keys and triggers come last in both cases, so no trigger fires
on restored rows (the audit chain's trigger must not re-hash restored entries).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from governance import backup_crypto, pg_tools
from governance.services import backups, pg_programs
from governance.services.backups import BackupError, RestoreResult
from governance.storage import Storage, StorageError

_TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
# pg_restore -l names an entry "<dump id>; <catalog oid> <oid> <DESC> <schema> <name> <owner>"; the
# kinds of entry a pass picks by (longest first: "TABLE DATA" before "TABLE").
_DESCS = ("SEQUENCE OWNED BY", "EVENT TRIGGER", "SEQUENCE SET", "TABLE DATA", "SEQUENCE", "TABLE")
FEED_CHUNK = 256 * 1024
# A long pass says how far it has got this often (bytes of the dump fed to pg_restore).
PROGRESS_EVERY = 256 * 1024 * 1024


@dataclass(frozen=True)
class TocEntry:
    line: str
    desc: str
    schema: str
    name: str


def parse_toc(listing: str) -> list[TocEntry]:
    """The entries of a `pg_restore -l` listing, in archive order (comment lines dropped)."""
    entries = []
    for line in listing.splitlines():
        match = _TOC_LINE.match(line)
        if match is None:
            continue
        rest = match.group(4)
        desc = next((d for d in _DESCS if rest.startswith(d + " ")), rest.split(" ", 1)[0])
        fields = rest[len(desc):].split()
        entries.append(TocEntry(line, desc, fields[0] if fields else "", fields[1] if len(fields) > 1 else ""))
    return entries


# --- streaming a backup object into a program ----------------------------------------------------------

def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _plain(store: Storage, master: bytes, key: str, expected_sha256: str | None,
           backup_id: str) -> Generator[bytes, None, None]:
    """The object's plaintext, each segment authenticated first. The first segment is read now, so
    a wrong key or altered header fails before any program starts. When the object is read to its
    end, its SHA-256 must be the manifest's (a valid object of another backup is refused too)."""
    try:
        raw = store.open_stream(key)
    except StorageError as exc:
        raise BackupError(f"backup {backup_id}: {exc}") from exc
    digest = hashlib.sha256()

    def hashed() -> Iterator[bytes]:
        for chunk in raw:
            digest.update(chunk)
            yield chunk

    plain = backup_crypto.decrypt_stream(master, hashed())
    try:
        first = next(plain, b"")
    except backup_crypto.CryptoError as exc:
        _close(raw)
        raise BackupError(f"backup {backup_id}: {exc}") from exc

    def chunks() -> Generator[bytes, None, None]:
        try:
            if first:
                yield first
            yield from plain
            if expected_sha256 and digest.hexdigest() != expected_sha256:
                raise backup_crypto.CryptoError(f"the object {key} is not the one its manifest names "
                                                "(SHA-256 differs)")
        finally:
            _close(plain)
            _close(raw)

    return chunks()


@dataclass
class _Fed:
    code: int
    stdout: str
    stderr: str
    fed: int
    program: str = "pg_restore"


def _feed(command: list[str], env: dict[str, str], chunks: Iterator[bytes], *, collect: bool = False,
          drain: bool = False, tick: Callable[[int], None] | None = None) -> _Fed:
    """Run `command` with `chunks` on its stdin. A program that stops reading (it has what it
    needs, or failed) ends the feeding; its exit status says which. drain: once it succeeded, read
    the rest of `chunks` anyway (so the whole object is authenticated and its SHA-256 checked)."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE,  # noqa: S603
                            stdout=subprocess.PIPE if collect else subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    stderr = pg_programs.StreamTail(proc.stderr)
    stdout = pg_programs.StreamTail(proc.stdout, limit=None) if collect and proc.stdout is not None else None
    try:
        result = _feed_into(proc, chunks, drain=drain, stderr=stderr, tick=tick)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    result.stdout = stdout.text() if stdout is not None else ""
    return result


# --- the target -----------------------------------------------------------------------------------

def _database_name(url: str) -> str:
    return str(psycopg.conninfo.conninfo_to_dict(pg_programs.libpq_url(url)).get("dbname") or "?")


@dataclass(frozen=True)
class Target:
    superuser: bool
    # server_version_num, e.g. 150020
    version: int


def check_target(target_url: str) -> Target:
    """Refuse a target holding any table (or view, sequence...); say whether we restore as a
    superuser (only a superuser may create the event triggers) and the server's version."""
    name = _database_name(target_url)
    try:
        with psycopg.connect(pg_programs.libpq_url(target_url), autocommit=True) as conn:
            found = conn.execute(
                "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND n.nspname <> ALL(%s) "
                "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
                "ORDER BY 1", (list(backups.SYSTEM_SCHEMAS),)).fetchall()
            row = conn.execute("SELECT rolsuper, current_setting('server_version_num')::int FROM pg_roles "
                               "WHERE rolname = current_user").fetchone()
    except psycopg.Error as exc:
        raise BackupError(pg_programs.scrub(f"target database {name} unreachable: {exc}", target_url)) from exc
    if found:
        shown = ", ".join(str(r[0]) for r in found[:5])
        raise BackupError(f"target database {name} is not empty ({len(found)} relation(s), e.g. {shown}): restore "
                          "only into a new, empty database (CREATE DATABASE ...)")
    assert row is not None
    return Target(bool(row[0]), int(row[1]))


# --- migrations and what follows them ---------------------------------------------------------------------

def migrate_database(settings: Any, target_url: str) -> str | None:
    """Run the project's migrations forward to head on target_url; returns the head reached."""
    import importlib

    from alembic import command

    import config
    from extensions import db

    # The migrations' env.py runs inside a Flask app (Flask-Migrate reads current_app), so this
    # builds one on the target through the composition root; imported at call time, so the domain
    # package has no import-time dependency on the web layer (and mypy keeps to governance/).
    create_app = importlib.import_module("app").create_app

    url = config.normalise_database_url(target_url)
    app = create_app(settings=dataclasses.replace(settings, database_url=url, database_admin_url=None))
    with app.app_context():
        try:
            command.upgrade(app.extensions["migrate"].migrate.get_config(), "head")
        except Exception as exc:
            message = pg_programs.scrub(f"migrations on the restored database failed: {exc}", target_url)
            raise BackupError(message) from exc
        finally:
            db.engine.dispose()
    with psycopg.connect(pg_programs.libpq_url(target_url), autocommit=True) as conn:
        return backups.migration_head(conn)


def after_restore(settings: Any, target_url: str, manifest: dict[str, Any]) -> list[str]:
    """Called once the restored database is migrated; returns notes for the result.

    A backup taken before a GDPR erasure still holds the person and their key: every erasure in
    the ledger (kept in the backup bucket, outside the database) is executed again on the restored
    database, so a restore never brings an erased person back (docs/erasure.md)."""
    from governance.services import erasure

    again = erasure.reapply_after_restore(settings, target_url)
    return [f"re-applied {again} GDPR erasure(s) executed after this backup"] if again else []


# --- restore -------------------------------------------------------------------------------------------

@dataclass
class _Pass:
    label: str
    backup_id: str
    key: str
    sha256: str | None
    items: list[TocEntry]
    sections: tuple[str, ...] = ()


def _toc(settings: Any, store: Storage, master: bytes, manifest: dict[str, Any]) -> list[TocEntry]:
    """`pg_restore -l` of a backup's dump (reads only the head of the stream: the table of contents)."""
    chunks = _plain(store, master, manifest["dump"]["key"], None, manifest["id"])
    result = _feed([pg_tools.bin_path("pg_restore", settings), "--list"], dict(os.environ), chunks, collect=True)
    if result.code != 0:
        raise BackupError(f"backup {manifest['id']}: " + pg_programs.program_error("pg_restore --list", result.code,
                                                                               result.stderr))
    return parse_toc(result.stdout)


def plan_passes(manifest: dict[str, Any], base: dict[str, Any] | None, toc: list[TocEntry],
                base_toc: list[TocEntry] | None, *, superuser: bool) -> list[_Pass]:
    """The pg_restore passes for a full backup (one) or a diff (three)."""
    def usable(entries: list[TocEntry]) -> list[TocEntry]:
        # Event triggers need a superuser; without one the restore goes on and says so.
        return [e for e in entries if superuser or e.desc != "EVENT TRIGGER"]

    dump = manifest["dump"]
    if manifest["kind"] != "diff":
        return [_Pass(f"everything (full backup {manifest['id']})", manifest["id"], dump["key"], dump["sha256"],
                      usable(toc))]
    assert base is not None and base_toc is not None
    left_out = {(t["schema"], t["name"]) for t in manifest["tables"].values() if not t.get("included", True)}
    in_diff = {(e.desc, e.schema, e.name) for e in toc}
    from_base = [e for e in base_toc
                 if (e.desc == "TABLE DATA" and (e.schema, e.name) in left_out)
                 or (e.desc == "SEQUENCE SET" and (e.desc, e.schema, e.name) not in in_diff
                     and ("SEQUENCE", e.schema, e.name) in in_diff)]
    missing = left_out - {(e.schema, e.name) for e in from_base if e.desc == "TABLE DATA"}
    if missing:
        raise BackupError(f"diff {manifest['id']} leaves out tables its full backup {base['id']} has no data for: "
                          + ", ".join(f"{s}.{n}" for s, n in sorted(missing)))
    base_dump = base["dump"]
    passes = [_Pass(f"schema (diff {manifest['id']})", manifest["id"], dump["key"], None, usable(toc), ("pre-data",))]
    if from_base:
        passes.append(_Pass(f"unchanged tables' data (full backup {base['id']})", base["id"], base_dump["key"],
                            base_dump["sha256"], from_base, ("data",)))
    passes.append(_Pass(f"changed tables' data, indexes, constraints, triggers (diff {manifest['id']})",
                        manifest["id"], dump["key"], dump["sha256"], usable(toc), ("data", "post-data")))
    return passes


def restore_backup(settings: Any, backup_id: uuid.UUID | str, target_url: str, *, migrate: bool = True,
                   progress: Callable[[str], None] | None = None, via_psql: bool | None = None) -> RestoreResult:
    """Restore backup `backup_id` (read from the bucket alone) into the empty database at target_url
    and, with migrate, run the migrations forward on it. BackupError on any failure; the target may
    then be partly restored: drop and re-create it before trying again.

    via_psql: pg_restore writes the SQL and psql runs it (None: only for servers before 17, on which
    a newer pg_restore's own connection fails on `SET transaction_timeout`)."""
    say = progress or (lambda _message: None)
    backup_id = str(backup_id)
    master = backups.master_key(settings)
    store = backups.backup_store(settings)
    manifest = backups.read_manifest(settings, backup_id, store=store)
    if manifest.get("id") != backup_id:
        raise BackupError(f"backup {backup_id}: its manifest names another backup ({manifest.get('id')})")
    base = None
    if manifest["kind"] == "diff":
        base = backups.read_manifest(settings, manifest["base_id"], store=store)
    target = check_target(target_url)
    superuser = target.superuser
    script = target.version < 170000 if via_psql is None else via_psql
    notes: list[str] = []
    if not superuser:
        notes.append("restored without a superuser: the schema-change event triggers were left out "
                     "(docs/audit.md says how to add them)")
    started = time.monotonic()
    say(f"backup {backup_id}: {manifest['kind']} of {manifest['created_at']} at migration head "
        f"{manifest['migration_head']}")
    toc = _toc(settings, store, master, manifest)
    base_toc = _toc(settings, store, master, base) if base is not None else None
    passes = plan_passes(manifest, base, toc, base_toc, superuser=superuser)
    conninfo, env = pg_programs.program_conninfo(target_url)
    restored = 0
    for number, step in enumerate(passes, 1):
        say(f"pass {number}/{len(passes)}: {step.label}")

        def tick(fed: int, done: int = restored) -> None:
            say(f"  ... {done + fed} bytes restored")

        restored += _run_pass(settings, store, master, step, conninfo, env, target_url, script=script, tick=tick)
        say(f"pass {number}/{len(passes)} done: {restored} bytes restored")
    migrated_to = manifest["migration_head"]
    if migrate:
        say(f"migrating from {manifest['migration_head']}")
        migrated_to = migrate_database(settings, target_url)
        say(f"migrated to {migrated_to}")
    notes += after_restore(settings, target_url, manifest)
    return RestoreResult(backup_id=backup_id, manifest=manifest, seconds=time.monotonic() - started,
                         migrated_from=manifest["migration_head"], migrated_to=migrated_to,
                         bytes_restored=restored, passes=len(passes), notes=notes)


def _run_pass(settings: Any, store: Storage, master: bytes, step: _Pass, conninfo: str, env: dict[str, str],
              target_url: str, *, script: bool, tick: Callable[[int], None] | None = None) -> int:
    with tempfile.NamedTemporaryFile("w", prefix="gov-restore-", suffix=".list", delete=False,
                                     encoding="utf-8") as listing:
        listing.write("".join(entry.line + "\n" for entry in step.items))
    try:
        command = [pg_tools.bin_path("pg_restore", settings), "--no-owner", "--no-acl", "--exit-on-error",
                   f"--use-list={listing.name}"]
        command += [f"--section={section}" for section in step.sections]
        if script:
            command += ["--file=-"]
            psql = [pg_tools.bin_path("psql", settings), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--no-password",
                    f"--dbname={conninfo}"]
        else:
            command += ["--no-password", f"--dbname={conninfo}"]
        chunks = _plain(store, master, step.key, step.sha256, step.backup_id)
        drain = step.sha256 is not None
        try:
            result = _feed_script(command, psql, env, chunks, drain=drain, tick=tick) if script else \
                _feed(command, env, chunks, drain=drain, tick=tick)
        except backup_crypto.CryptoError as exc:
            raise BackupError(f"backup {step.backup_id}: {exc} (the target database is partly restored: drop and "
                              "re-create it before trying again)") from exc
        except StorageError as exc:
            raise BackupError(f"backup {step.backup_id}: reading the dump failed: {exc}") from exc
    finally:
        os.unlink(listing.name)
    if result.code != 0:
        raise BackupError(pg_programs.program_error(result.program, result.code, result.stderr, target_url)
                          + " (the target database is partly restored: drop and re-create it before trying again)")
    return result.fed


# --- servers before PostgreSQL 17 --------------------------------------------------------------------------

# pg_restore 17+ starts every session with this; older servers do not know the setting.
_TRANSACTION_TIMEOUT = b"\nSET transaction_timeout = 0;\n"
_HEAD = 64 * 1024


def _without_transaction_timeout(head: bytes) -> bytes:
    """The script's head without its `SET transaction_timeout = 0;`, looked for only before the first
    CREATE or COPY (so no row of data can ever be touched)."""
    end = min((i for i in (head.find(b"\nCREATE "), head.find(b"\nCOPY ")) if i >= 0), default=len(head))
    at = head.find(_TRANSACTION_TIMEOUT, 0, end)
    return head if at < 0 else head[:at + 1] + head[at + len(_TRANSACTION_TIMEOUT):]


def _pump(source: Any, sink: Any, on_broken: Callable[[], None]) -> None:
    """pg_restore's SQL into psql, its head filtered, the rest passed through as it comes."""
    try:
        head = b""
        while len(head) < _HEAD and (chunk := source.read1(_HEAD)):
            head += chunk
        sink.write(_without_transaction_timeout(head))
        while chunk := source.read1(FEED_CHUNK):
            sink.write(chunk)
    except (BrokenPipeError, OSError):
        on_broken()  # psql stopped (an error): stop pg_restore too, it would block on a full pipe
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            sink.close()


def _feed_script(restore: list[str], psql: list[str], env: dict[str, str], chunks: Iterator[bytes], *,
                 drain: bool, tick: Callable[[int], None] | None = None) -> _Fed:
    """`chunks` -> pg_restore --file=- -> (filter) -> psql -v ON_ERROR_STOP=1."""
    runner = subprocess.Popen(psql, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,  # noqa: S603
                              stderr=subprocess.PIPE, env=env)
    assert runner.stdin is not None and runner.stderr is not None
    runner_err = pg_programs.StreamTail(runner.stderr)
    writer = subprocess.Popen(restore, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # noqa: S603
                              stderr=subprocess.PIPE, env=env)
    assert writer.stdout is not None and writer.stderr is not None
    pump = threading.Thread(target=_pump, args=(writer.stdout, runner.stdin, writer.kill), daemon=True)
    pump.start()
    try:
        result = _feed_into(writer, chunks, drain=drain, stderr=pg_programs.StreamTail(writer.stderr), tick=tick)
        pump.join()
        code = runner.wait()
    except BaseException:
        for proc in (writer, runner):
            proc.kill()
            proc.wait()
        raise
    # psql's error, when it failed, is the cause (pg_restore was then stopped).
    return _Fed(code, "", runner_err.text(), result.fed, "psql") if code != 0 else result


def _feed_into(proc: subprocess.Popen[bytes], chunks: Iterator[bytes], *, drain: bool,
               stderr: pg_programs.StreamTail, tick: Callable[[int], None] | None = None) -> _Fed:
    """The feeding loop of _feed for an already started program (tick(bytes so far) every
    PROGRESS_EVERY bytes)."""
    assert proc.stdin is not None
    fed = 0
    next_tick = PROGRESS_EVERY
    try:
        for chunk in chunks:
            try:
                proc.stdin.write(chunk)
            except BrokenPipeError:
                break
            fed += len(chunk)
            if tick is not None and fed >= next_tick:
                tick(fed)
                next_tick += PROGRESS_EVERY
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.close()
        code = proc.wait()
        if code == 0 and drain:
            for _chunk in chunks:
                pass
    finally:
        _close(chunks)
    return _Fed(code, "", stderr.text(), fed)
