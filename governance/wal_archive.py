"""WAL archiving and base backups for point-in-time recovery (docs/operations.md, "PITR").

PostgreSQL runs `push` as its archive_command once per finished WAL segment and `fetch` as its
restore_command for every file recovery asks for, so this module is a small program, not part of
the app: it imports only the S3 client, the stream cipher and config's environment readers (no
Flask, no SQLAlchemy) and starts in a fraction of a second.

    push PATH NAME        archive_command = '.../python scripts/wal_archive.py push %p %f'
    fetch NAME PATH       restore_command = '.../python scripts/wal_archive.py fetch %f %p'
    base-push [--name N] SOURCE     SOURCE: '-' (a tar on stdin: `pg_basebackup -D - -Ft -X none`),
                                    a base.tar, or a pg_basebackup output directory (-Fp or -Ft)
    base-fetch NAME|latest DEST     unpack a base backup into a new data directory
    base-list                       the base backups, oldest first
    prune --keep N [--dry-run]      drop all but the newest N base backups and the WAL they alone need

Objects, all in BACKUP_BUCKET and all sealed with backup_crypto under BACKUP_ENCRYPTION_KEY except
the info files (names, times and WAL positions only):
    wal/<file name>.enc               a segment, timeline history or backup history file
    base/<name>/base.tar.enc          a base backup (the tar pg_basebackup writes)
    base/<name>/info.json             when it was taken and its first WAL segment (for prune)

Settings come from the server process's environment under config.py's names (S3_ENDPOINT,
S3_ACCESS_KEY, S3_SECRET_KEY, S3_SECURE, S3_REGION, S3_CA_BUNDLE, BACKUP_BUCKET,
BACKUP_ENCRYPTION_KEY; secrets also as NAME_FILE), never from postgresql.conf, which any superuser
can read with SHOW.

Exit codes follow what PostgreSQL makes of them. push: 0 only once the segment is stored (or an
identical copy already was); anything else and PostgreSQL keeps the segment and retries. fetch: 0
restored; 1 "not in the archive", which recovery takes as the end of the archived WAL (normal when
it catches up); EXIT_ABORT for everything else (store unreachable, wrong key, altered object,
misconfiguration), because any exit code above 125 makes PostgreSQL abort recovery instead of
ending it early and promoting a database that is missing WAL.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, NoReturn, cast

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import ENABLED
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.versioningconfig import VersioningConfig

import config
from governance import backup_crypto

EXIT_OK = 0
EXIT_FAILED = 1  # push: PostgreSQL retries; fetch: "no such file in the archive"
EXIT_ABORT = 126  # fetch: PostgreSQL treats > 125 as fatal and aborts recovery
WAL_PREFIX = "wal/"
BASE_PREFIX = "base/"
# A default 16 MiB segment, sealed, goes up in one PUT; larger configured segments in 32 MiB parts.
PART_SIZE = 32 * 1024 * 1024
CHUNK = 1024 * 1024
# The only names archive_command / restore_command are given: segments (timeline + log + segment),
# partial segments, backup history files and timeline history files. Anything else is refused, so a
# mistaken command line (%p and %f swapped) cannot read or write elsewhere in the bucket.
WAL_NAME = re.compile(r"^[0-9A-F]{8}(?:[0-9A-F]{16}(?:\.partial|\.[0-9A-F]{8}\.backup)?|\.history)$")
BASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MISSING = ("NoSuchKey", "NoSuchVersion", "NoSuchObject", "NotFound", "ResourceNotFound")


class ArchiveError(RuntimeError):
    """Something an operator must fix or that a retry may cure; the message says which."""


class NotArchived(ArchiveError):
    """The file asked for is not in the archive."""


@dataclasses.dataclass(frozen=True)
class Archive:
    client: Minio
    bucket: str
    key: bytes


def archive_from_env(env: Mapping[str, str] | None = None) -> Archive:
    env = os.environ if env is None else env
    endpoint = env.get("S3_ENDPOINT")
    if not endpoint:
        raise ArchiveError("S3_ENDPOINT is not set in the PostgreSQL server's environment")
    try:
        secure = config._bool(env, "S3_SECURE", False)
        access, secret = config._read(env, "S3_ACCESS_KEY"), config._read(env, "S3_SECRET_KEY")
        raw_key = config._read(env, "BACKUP_ENCRYPTION_KEY")
        key = backup_crypto.load_key(raw_key)
    except (config.ConfigError, backup_crypto.CryptoError) as exc:
        raise ArchiveError(str(exc)) from exc
    ca_bundle = env.get("S3_CA_BUNDLE") or env.get("SSL_CERT_FILE") or certifi.where()
    # Bounded waits: a hung store must not hold the archiver for minutes per attempt (it retries).
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10.0, read=120.0), maxsize=4, cert_reqs="CERT_REQUIRED",
        ca_certs=ca_bundle,
        retries=urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)))
    client = Minio(endpoint, access_key=access, secret_key=secret, secure=secure,
                   region=env.get("S3_REGION") or "us-east-1", http_client=http)
    return Archive(client, env.get("BACKUP_BUCKET") or "backups", key)


def _exists(archive: Archive, key: str) -> bool:
    try:
        archive.client.stat_object(archive.bucket, key)
    except S3Error as exc:
        if exc.code in MISSING:
            return False
        raise ArchiveError(f"{archive.bucket}/{key}: {exc.code}") from exc
    return True


def _plain_chunks(archive: Archive, key: str) -> Iterator[bytes]:
    """The decrypted bytes of an object; NotArchived when it is not there (raised on first next())."""
    try:
        response = archive.client.get_object(archive.bucket, key)
    except S3Error as exc:
        if exc.code in MISSING:
            raise NotArchived(f"{key} is not in bucket {archive.bucket}") from exc
        raise ArchiveError(f"{archive.bucket}/{key}: {exc.code}") from exc
    try:
        yield from backup_crypto.decrypt_stream(archive.key, response.stream(CHUNK))
    finally:
        response.close()
        response.release_conn()


def _file_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: handle.read(CHUNK), b"")


def _upload(archive: Archive, key: str, chunks: Iterable[bytes], plain_size: int = -1) -> tuple[int, str]:
    """Seal and store `chunks` at `key`, streamed; (size, sha256) of the stored object."""
    reader = backup_crypto.IteratorReader(backup_crypto.encrypt_stream(archive.key, chunks))
    length = backup_crypto.encrypted_size(plain_size) if plain_size >= 0 else -1
    archive.client.put_object(archive.bucket, key, cast(BinaryIO, reader), length, part_size=PART_SIZE)
    return reader.size, reader.sha256.hexdigest()


def _check_wal_name(name: str) -> None:
    if not WAL_NAME.match(name):
        raise ArchiveError(f"{name!r} is not a WAL file name (check the command's %p/%f order)")


# --- WAL: archive_command / restore_command -------------------------------------------------------

def push(archive: Archive, path: Path, name: str) -> str:
    """Store one WAL file as wal/<name>.enc; a message for the server log."""
    _check_wal_name(name)
    key = f"{WAL_PREFIX}{name}.enc"
    try:
        plain_size = path.stat().st_size
    except OSError as exc:
        raise ArchiveError(f"{path}: {exc.strerror}") from exc
    if _exists(archive, key):
        # PostgreSQL's contract: never overwrite an archived file, but succeed when the same file
        # is offered again (a crash after the upload and before PostgreSQL noted it).
        local = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in _file_chunks(handle):
                local.update(chunk)
        stored = hashlib.sha256()
        try:
            for chunk in _plain_chunks(archive, key):
                stored.update(chunk)
        except backup_crypto.CryptoError as exc:
            raise ArchiveError(f"{key} already exists and cannot be read under this key ({exc}); "
                               "refusing to overwrite it") from exc
        if stored.digest() != local.digest():
            raise ArchiveError(f"{key} already exists with different contents; refusing to overwrite it "
                               "(two servers archiving into one bucket?)")
        return f"{name} was already archived (identical)"
    with path.open("rb") as handle:
        size, _sha = _upload(archive, key, _file_chunks(handle), plain_size)
    # Exit 0 tells PostgreSQL it may recycle the segment: make sure the store has all of it.
    stat = archive.client.stat_object(archive.bucket, key)
    if stat.size != size:
        raise ArchiveError(f"{key}: the store holds {stat.size} bytes, {size} were sent")
    return f"archived {name} ({plain_size} bytes)"


def fetch(archive: Archive, name: str, path: Path) -> str:
    """Restore wal/<name>.enc to `path` (written beside it first, then renamed into place)."""
    _check_wal_name(name)
    key = f"{WAL_PREFIX}{name}.enc"
    chunks = _plain_chunks(archive, key)
    first = next(chunks, b"")  # NotArchived / ArchiveError / CryptoError surface here
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".fetch-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(first)
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return f"restored {name}"


# --- base backups --------------------------------------------------------------------------------

class _LabelTap:
    """Watches a tar stream go by: keeps the member named backup_label (PostgreSQL writes it into
    every base backup; it names the first WAL segment the backup needs) and notes whether the
    archive's end marker arrived (a producer that died mid-way leaves a tar without one)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0  # bytes of the current member (with its padding) still to pass
        self._capture: int | None = None  # bytes of backup_label still to keep
        self._kept = bytearray()
        self.label: bytes | None = None
        self.ended = False

    def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        while not self.ended:
            if self._skip:
                take = min(self._skip, len(self._buffer))
                if self._capture is not None:
                    keep = min(self._capture, take)
                    self._kept += self._buffer[:keep]
                    self._capture -= keep
                    if not self._capture:
                        self.label, self._capture = bytes(self._kept), None
                del self._buffer[:take]
                self._skip -= take
                if self._skip:
                    break
                continue
            if len(self._buffer) < 512:
                break
            header = bytes(self._buffer[:512])
            del self._buffer[:512]
            if header == bytes(512):
                self.ended = True
                break
            size_field = header[124:136]
            if size_field[0] & 0x80:  # base-256 (members over 8 GiB)
                size = int.from_bytes(size_field[1:], "big")
            else:
                size = int(size_field.split(b"\0", 1)[0].strip() or b"0", 8)
            self._skip = (size + 511) // 512 * 512
            name = header[:100].split(b"\0", 1)[0]
            if self.label is None and name in (b"backup_label", b"./backup_label") and header[156:157] in (b"0", b"\0"):
                if size:
                    self._capture = size
                else:
                    self.label = b""
        if self.ended:
            self._buffer.clear()
        return chunk


def _tar_directory(root: Path) -> Iterator[bytes]:
    """A plain-format base backup directory as a tar stream, file by file (never whole in memory)."""
    # Only for gettarinfo() (owner names, modes, link targets): nothing is written through it.
    maker = tarfile.TarFile(fileobj=io.BytesIO(), mode="w", format=tarfile.PAX_FORMAT)
    paths = sorted(root.rglob("*"), key=lambda p: (p.name != "backup_label", str(p)))
    for path in paths:
        if path.is_socket() or path.is_fifo():
            continue
        info = maker.gettarinfo(str(path), arcname=str(path.relative_to(root)))
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        if info.isreg():
            remaining = info.size
            with path.open("rb") as handle:
                while remaining > 0:
                    data = handle.read(min(CHUNK, remaining))
                    if not data:
                        raise ArchiveError(f"{path} shrank while being read (is this a live data directory?)")
                    remaining -= len(data)
                    yield data
            yield b"\0" * ((-info.size) % 512)
    yield b"\0" * 1024


def _source_chunks(source: str) -> Iterator[bytes]:
    if source == "-":
        yield from _file_chunks(sys.stdin.buffer)
        return
    path = Path(source)
    if path.is_dir():
        tars = sorted(p.name for p in path.glob("*.tar"))
        if tars:  # pg_basebackup -Ft output: base.tar (+ pg_wal.tar, which the archive already has)
            extra = [t for t in tars if t not in ("base.tar", "pg_wal.tar")]
            if extra or "base.tar" not in tars:
                raise ArchiveError(f"{path}: only the default tablespace (base.tar) is supported, found {tars}")
            path = path / "base.tar"
        else:
            if not (path / "backup_label").is_file():
                raise ArchiveError(f"{path} has no backup_label: give a pg_basebackup output, not a live data "
                                   "directory")
            tablespaces = path / "pg_tblspc"
            if tablespaces.is_dir() and any(tablespaces.iterdir()):
                raise ArchiveError(f"{path}: tablespaces besides the default one are not supported")
            yield from _tar_directory(path)
            return
    with path.open("rb") as handle:
        yield from _file_chunks(handle)


def _label_fields(label: bytes) -> dict[str, str]:
    fields = {}
    for line in label.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def base_push(archive: Archive, source: str, name: str | None = None) -> dict[str, Any]:
    """Seal a base backup's tar into base/<name>/; its info (also returned)."""
    name = name or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if not BASE_NAME.match(name):
        raise ArchiveError(f"{name!r}: a base backup name is letters, digits, '.', '_' and '-' (64 at most)")
    key = f"{BASE_PREFIX}{name}/base.tar.enc"
    _ensure_bucket(archive)
    if _exists(archive, f"{BASE_PREFIX}{name}/info.json") or _exists(archive, key):
        raise ArchiveError(f"base backup {name!r} already exists")
    tap = _LabelTap()
    size, sha = _upload(archive, key, (tap.feed(chunk) for chunk in _source_chunks(source)))
    problem = ("the tar ends early (did pg_basebackup fail? use `set -o pipefail`)" if not tap.ended else
               "the tar holds no backup_label: not a PostgreSQL base backup" if tap.label is None else None)
    if problem or tap.label is None:
        _remove_all_versions(archive, [key])
        raise ArchiveError(f"{problem}; nothing kept")
    fields = _label_fields(tap.label)
    match = re.search(r"\(file ([0-9A-F]{24})\)", fields.get("START WAL LOCATION", ""))
    info = {"name": name, "created_at": datetime.now(UTC).isoformat(), "label": fields.get("LABEL"),
            "start_time": fields.get("START TIME"), "start_wal": match.group(1) if match else None,
            "size": size, "sha256": sha}
    body = json.dumps(info, indent=1).encode()
    archive.client.put_object(archive.bucket, f"{BASE_PREFIX}{name}/info.json", io.BytesIO(body), len(body),
                              content_type="application/json")
    return info


def _ensure_bucket(archive: Archive) -> None:
    """As the app's Storage.ensure_bucket makes it (versioned; object lock where the store has it),
    so whichever of `flask backup create` and base-push runs first, the bucket is the same."""
    if archive.client.bucket_exists(archive.bucket):
        return
    try:
        archive.client.make_bucket(archive.bucket, object_lock=True)
    except S3Error:
        archive.client.make_bucket(archive.bucket)
    archive.client.set_bucket_versioning(archive.bucket, VersioningConfig(ENABLED))


def base_list(archive: Archive) -> list[dict[str, Any]]:
    """Every base backup's info, oldest first."""
    found = []
    for obj in archive.client.list_objects(archive.bucket, prefix=BASE_PREFIX, recursive=True):
        if (obj.object_name or "").endswith("/info.json"):
            response = archive.client.get_object(archive.bucket, obj.object_name or "")
            try:
                found.append(json.loads(response.read()))
            finally:
                response.close()
                response.release_conn()
    return sorted(found, key=lambda info: (info["created_at"], info["name"]))


def base_fetch(archive: Archive, name: str, dest: Path) -> str:
    """Unpack base backup `name` ("latest": the newest) into `dest` (absent or empty)."""
    if name == "latest":
        backups = base_list(archive)
        if not backups:
            raise ArchiveError(f"no base backup in bucket {archive.bucket}")
        name = backups[-1]["name"]
    if not BASE_NAME.match(name):
        raise ArchiveError(f"{name!r} is not a base backup name")
    if dest.exists() and any(dest.iterdir()):
        raise ArchiveError(f"{dest} is not empty: move the old data directory aside first")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest.chmod(0o700)  # PostgreSQL refuses a data directory others can read
    reader = backup_crypto.IteratorReader(_plain_chunks(archive, f"{BASE_PREFIX}{name}/base.tar.enc"))
    with tarfile.open(mode="r|", fileobj=reader) as tar:
        # The "data" filter refuses absolute names, links out of dest and device files.
        tar.extractall(dest, filter="data")
    # tarfile stops at the end marker: read the rest too, so the stream's last segment (and so its
    # completeness) is authenticated before we say the backup is good.
    reader.read()
    (dest / "pg_wal" / "archive_status").mkdir(parents=True, exist_ok=True)
    return f"base backup {name} unpacked into {dest}"


def prune(archive: Archive, keep: int, *, dry_run: bool = False) -> list[str]:
    """Remove all but the newest `keep` base backups, then every WAL segment older than the oldest
    kept one's first segment (as pg_archivecleanup does: by log and segment number, whatever the
    timeline, so a parent timeline's segments are never taken too early). Timeline history files
    are kept. Returns the object keys removed (or that would be)."""
    if keep < 1:
        raise ArchiveError("--keep must be at least 1 (WAL is useless without a base backup)")
    backups = base_list(archive)
    if len(backups) <= keep:
        return []
    kept = backups[-keep:]
    oldest = kept[0].get("start_wal")
    if not oldest:
        raise ArchiveError(f"base backup {kept[0]['name']} does not say its first WAL segment: nothing removed")
    doomed = [f"{BASE_PREFIX}{info['name']}/" for info in backups[:-keep]]
    keys = []
    for obj in archive.client.list_objects(archive.bucket, prefix=BASE_PREFIX, recursive=True):
        if any((obj.object_name or "").startswith(prefix) for prefix in doomed):
            keys.append(obj.object_name or "")
    for obj in archive.client.list_objects(archive.bucket, prefix=WAL_PREFIX, recursive=True):
        file_name = (obj.object_name or "")[len(WAL_PREFIX):].removesuffix(".enc")
        if WAL_NAME.match(file_name) and not file_name.endswith(".history") and file_name[8:24] < oldest[8:]:
            keys.append(obj.object_name or "")
    if not dry_run:
        _remove_all_versions(archive, keys)
    return keys


def _remove_all_versions(archive: Archive, keys: Sequence[str]) -> None:
    """Delete every version of each key (a versioned bucket would otherwise keep them all)."""
    objects = []
    for key in keys:
        for obj in archive.client.list_objects(archive.bucket, prefix=key, include_version=True):
            if obj.object_name == key:
                objects.append(DeleteObject(key, obj.version_id))
    for error in archive.client.remove_objects(archive.bucket, objects):
        raise ArchiveError(f"delete of {error.name}: {error.code}")


# --- command line -------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    usage_exit = 2

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit, f"wal_archive: {message}\n")


def _parser(usage_exit: int) -> argparse.ArgumentParser:
    _Parser.usage_exit = usage_exit
    parser = _Parser(prog="wal_archive.py", description="WAL archive and base backups in the backup bucket")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("push", help="archive_command: push %%p %%f")
    p.add_argument("path", type=Path)
    p.add_argument("name")
    f = sub.add_parser("fetch", help="restore_command: fetch %%f %%p")
    f.add_argument("name")
    f.add_argument("path", type=Path)
    b = sub.add_parser("base-push", help="store a base backup ('-': a tar on stdin)")
    b.add_argument("source")
    b.add_argument("--name")
    g = sub.add_parser("base-fetch", help="unpack a base backup into a new data directory")
    g.add_argument("name")
    g.add_argument("dest", type=Path)
    sub.add_parser("base-list", help="list the base backups")
    r = sub.add_parser("prune", help="keep the newest N base backups and the WAL they need")
    r.add_argument("--keep", type=int, required=True)
    r.add_argument("--dry-run", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    fetching = bool(args_list) and args_list[0] == "fetch"
    # A restore_command that exits 2 on a typo would read as "end of WAL": make it abort recovery.
    args = _parser(EXIT_ABORT if fetching else 2).parse_args(args_list)
    try:
        archive = archive_from_env(env)
        if args.command == "push":
            message = push(archive, args.path, args.name)
        elif args.command == "fetch":
            message = fetch(archive, args.name, args.path)
        elif args.command == "base-push":
            message = json.dumps(base_push(archive, args.source, args.name))
        elif args.command == "base-fetch":
            message = base_fetch(archive, args.name, args.dest)
        elif args.command == "base-list":
            message = "\n".join(json.dumps(info) for info in base_list(archive)) or "no base backups"
        else:
            removed = prune(archive, args.keep, dry_run=args.dry_run)
            verb = "would remove" if args.dry_run else "removed"
            message = f"{verb} {len(removed)} objects" + "".join(f"\n  {key}" for key in removed)
    except NotArchived as exc:
        print(f"wal_archive: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ArchiveError, backup_crypto.CryptoError, S3Error, urllib3.exceptions.HTTPError, OSError,
            tarfile.TarError) as exc:
        print(f"wal_archive: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ABORT if fetching else EXIT_FAILED
    print(f"wal_archive: {message}", file=sys.stderr if args.command in ("push", "fetch") else sys.stdout)
    return EXIT_OK
