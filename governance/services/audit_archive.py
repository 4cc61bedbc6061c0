"""Archiving one audit_logs partition to cold storage (docs/retention.md), used by retention.execute.

Steps, on a connection of the schema's owner (settings.admin_database_url: the app's own role may
not run DDL):
1. DETACH PARTITION (its own short transaction: the parent's ACCESS EXCLUSIVE lock is held only
   for that), as expected DDL ("retention": audited, no schema-change alert);
2. re-check what the plan decided, on the now detached table (nobody can add rows to it);
3. COPY its rows in seq order (CSV, a header, every non-NULL value quoted so NULL and '' differ),
   gzip-compressed, streamed into the cold bucket at audit/<partition>.csv.gz, SHA-256 on the way;
   object-locked where the store supports it, like the anchors;
4. read the object back: its SHA-256, the rows decompress, their count is the table's, and they
   chain (each hash recomputed with audit_chain.canonical_bytes from the previous one, starting at
   the previous archive's last_hash or the zeros);
5. only then DROP TABLE, write the audit_archives row and the chained `retention.audit_archived`
   entry that vouches for the new start of the live chain (audit_chain.verify_chain's checkpoint),
   in one transaction.
Any failure before 5 re-attaches the partition: nothing is lost, and the failure is audited.
"""

from __future__ import annotations

import codecs
import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from governance.models.lifecycle import AuditArchive
from governance.services import audit, audit_chain
from governance.services.legal_holds import WITH_HELD
from governance.services.partitions import AUDIT_TABLE, expected_ddl
from governance.storage import Storage

KEY_PREFIX = "audit/"
CHUNK = 1024 * 1024
LOCK_TIMEOUT = "30s"


class ArchiveError(RuntimeError):
    """The partition could not be archived (it was re-attached); the message says why."""


@dataclass(frozen=True)
class Checkpoint:
    """Where the live chain starts: after seq `seq`, whose hash is `hash` (0 / zeros: the genesis)."""

    seq: int
    hash: bytes


@dataclass
class Exported:
    key: str
    version_id: str | None
    sha256: str
    size: int
    rows: int


@dataclass
class ArchivedPartition:
    name: str
    rows: int
    first_seq: int | None
    last_seq: int | None
    last_hash: bytes | None
    key: str
    sha256: str
    size: int


def object_key(partition: str) -> str:
    return f"{KEY_PREFIX}{partition}.csv.gz"


def checkpoint(conn: Connection | Session) -> Checkpoint:
    """The newest dropped archive's (last_seq, last_hash), or the genesis."""
    row = conn.execute(text("SELECT last_seq, last_hash FROM audit_archives WHERE dropped_at IS NOT NULL "
                            "AND last_seq IS NOT NULL ORDER BY last_seq DESC LIMIT 1")).first()
    return Checkpoint(int(row[0]), bytes(row[1])) if row is not None else Checkpoint(0, audit_chain.ZERO_HASH)


def bounds_sql(start: datetime, end: datetime) -> str:
    return f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"


def _immediate(conn: Connection) -> None:
    # A pending (deferred) head move would make PostgreSQL refuse the ALTER / DROP (docs/audit.md).
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'audit_logs_chain_head')")).scalar():
        conn.execute(text("SET CONSTRAINTS audit_logs_chain_head IMMEDIATE"))


def detach(conn: Connection, name: str) -> None:
    with conn.begin():
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        _immediate(conn)
        with expected_ddl(conn, "retention"):
            conn.execute(text(f"ALTER TABLE {AUDIT_TABLE} DETACH PARTITION {name}"))


def reattach(conn: Connection, name: str, start: datetime, end: datetime, why: str) -> None:
    """Put a detached partition back (its rows, seq and hashes unchanged) and audit the failure."""
    if conn.in_transaction():
        conn.rollback()
    with conn.begin():
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        _immediate(conn)
        with expected_ddl(conn, "retention"):
            conn.execute(text(f"ALTER TABLE {AUDIT_TABLE} ATTACH PARTITION {name} {bounds_sql(start, end)}"))
        session = Session(bind=conn, join_transaction_mode="rollback_only")
        audit.record(session, "retention.audit_archive_failed", object_type="audit_partition", object_id=name,
                     outcome="error", details={"partition": name, "reason": why, "reattached": True})
        session.flush()


def table_stats(conn: Connection, name: str) -> tuple[int, int | None, int | None]:
    row = conn.execute(text(f"SELECT count(*), min(seq), max(seq) FROM {name}")).one()  # noqa: S608
    return int(row[0]), (None if row[1] is None else int(row[1])), (None if row[2] is None else int(row[2]))


def range_filter(start: datetime, end: datetime) -> str:
    """The rows of one month through the parent table (the app's role may not read partitions
    directly; the planner prunes to the one partition)."""
    return f"created_at >= '{start.isoformat()}' AND created_at < '{end.isoformat()}'"


def hold_in(conn: Connection | Session, name: str, where: str = "TRUE") -> tuple[Any, str, str] | None:
    """(hold id, object_type, object_id) of one entry in the table about something a hold covers."""
    row = conn.execute(text(f"{WITH_HELD} SELECT h.hold_id, a.object_type, a.object_id FROM {name} a "  # noqa: S608
                            "JOIN held_objects h ON h.object_type = a.object_type AND h.object_id = a.object_id "
                            f"WHERE {where} LIMIT 1")).first()
    return None if row is None else (row[0], str(row[1]), str(row[2]))


# --- export -------------------------------------------------------------------------------------


class _Reader:
    """A read()-able file over an iterator of byte chunks (what the SDK's multipart upload reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def _copy_sql(name: str) -> str:
    return (f"COPY (SELECT * FROM {name} ORDER BY seq) TO STDOUT "  # noqa: S608
            "WITH (FORMAT csv, HEADER true, FORCE_QUOTE *)")


def export(conn: Connection, name: str, cold: Storage) -> Exported:
    """Stream the table's rows (seq order) gzip-compressed into the cold bucket; hash on the way."""
    raw = conn.connection.driver_connection
    assert raw is not None
    digest = hashlib.sha256()
    counted = {"size": 0}

    def compressed() -> Iterator[bytes]:
        packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip format
        # Text forms independent of the session (docs/audit.md "Canonical form").
        raw.execute("SET TimeZone = 'UTC'")
        raw.execute("SET DateStyle = 'ISO, YMD'")
        raw.execute("SET bytea_output = 'hex'")
        with raw.cursor() as cur, cur.copy(_copy_sql(name)) as copy:
            for data in copy:
                out = packer.compress(bytes(data))
                if out:
                    digest.update(out)
                    counted["size"] += len(out)
                    yield out
        tail = packer.flush()
        digest.update(tail)
        counted["size"] += len(tail)
        yield tail

    key = object_key(name)
    with conn.begin():
        stored = cold.put(key, _Reader(compressed()), content_type="application/gzip")  # type: ignore[arg-type]
    return Exported(key, stored.version_id, digest.hexdigest(), counted["size"], rows=-1)


# --- verification of the object -----------------------------------------------------------------


def _records(lines: Iterator[str]) -> Iterator[str]:
    """CSV records from text lines: a record whose quotes are unbalanced goes on to the next line."""
    pending = ""
    for line in lines:
        pending += line
        if pending.count('"') % 2 == 0:
            yield pending[:-1] if pending.endswith("\n") else pending
            pending = ""
    if pending:
        yield pending


def parse_record(record: str) -> list[str | None]:
    """The fields of one CSV record written with FORCE_QUOTE *: a quoted field is a value ("" is a
    quote inside it), an unquoted empty one is NULL (the csv module cannot tell the two apart)."""
    out: list[str | None] = []
    i, n = 0, len(record)
    while True:
        if i < n and record[i] == '"':
            j, parts = i + 1, []
            while True:
                k = record.index('"', j)
                if k + 1 < n and record[k + 1] == '"':
                    parts.append(record[j:k + 1])
                    j = k + 2
                    continue
                parts.append(record[j:k])
                i = k + 1
                break
            out.append("".join(parts))
        else:
            k = record.find(",", i)
            value = record[i:] if k < 0 else record[i:k]
            out.append(value or None)
            i = n if k < 0 else k
        if i >= n:
            return out
        if record[i] != ",":
            raise ValueError(f"malformed CSV record near character {i}")
        i += 1
        if i == n:
            out.append(None)
            return out


def _lines(chunks: Iterator[bytes], digest: Any) -> Iterator[str]:
    unpack = zlib.decompressobj(31)
    decode = codecs.getincrementaldecoder("utf-8")()
    rest = ""
    for chunk in chunks:
        digest.update(chunk)
        rest += decode.decode(unpack.decompress(chunk))
        *complete, rest = rest.split("\n")
        for line in complete:
            yield line + "\n"
    rest += decode.decode(unpack.flush(), final=True)
    if not unpack.eof:
        raise ValueError("the gzip stream is truncated")
    if rest:
        yield rest


def _canonical(row: dict[str, str | None]) -> tuple[int, bytes, bytes, bytes]:
    """(seq, prev_hash, hash, canonical bytes) of one exported row."""
    created = datetime.fromisoformat(row["created_at"] or "")
    ip = row["ip"]
    canonical = audit_chain.canonical_bytes(
        row["id"] or "", int(row["seq"] or 0), audit_chain.epoch_us(created), row["actor_id"], row["actor_name"],
        row["action"], row["object_type"], row["object_id"], row["outcome"],
        None if ip is None else audit_chain.ip_text(ip), row["user_agent"], row["request_id"], row["details"])
    return (int(row["seq"] or 0), bytes.fromhex((row["prev_hash"] or "")[2:]),
            bytes.fromhex((row["hash"] or "")[2:]), canonical)


def verify_object(cold: Storage, exported: Exported, *, rows: int,
                  start: Checkpoint) -> tuple[int | None, bytes | None]:
    """Read the archive back and check it (see the module docstring); (last seq, last hash), or
    (None, None) for an empty partition. ArchiveError names the first difference."""
    digest = hashlib.sha256()
    records = _records(_lines(cold.open(exported.key, exported.version_id, chunk_size=CHUNK), digest))
    header = next(records, None)
    if header is None:
        raise ArchiveError("the archive is empty (no header)")
    names = header.split(",")
    missing = {"id", "seq", "created_at", "prev_hash", "hash"} - set(names)
    if missing:
        raise ArchiveError(f"the archive's header lacks {', '.join(sorted(missing))}")
    count, prev_seq, prev_hash = 0, start.seq, start.hash
    for record in records:
        values = parse_record(record)
        if len(values) != len(names):
            raise ArchiveError(f"row {count + 1} has {len(values)} fields, the header {len(names)}")
        seq, stored_prev, stored_hash, canonical = _canonical(dict(zip(names, values, strict=True)))
        if seq != prev_seq + 1:
            raise ArchiveError(f"seq {seq} follows seq {prev_seq} in the archive (expected {prev_seq + 1})")
        if stored_prev != prev_hash:
            raise ArchiveError(f"seq {seq}: prev_hash does not match the hash of seq {prev_seq}")
        if audit_chain.entry_hash(stored_prev, canonical) != stored_hash:
            raise ArchiveError(f"seq {seq}: its content does not hash to its stored hash")
        count, prev_seq, prev_hash = count + 1, seq, stored_hash
    if digest.hexdigest() != exported.sha256:
        raise ArchiveError(f"the object read back hashes to {digest.hexdigest()}, {exported.sha256} was written")
    if count != rows:
        raise ArchiveError(f"the archive holds {count} rows, the partition {rows}")
    return (prev_seq, prev_hash) if count else (None, None)


# --- one partition, end to end ------------------------------------------------------------------


def archive_partition(conn: Connection, cold: Storage, name: str, start: datetime, end: datetime, *,
                      lock_days: int, lock_mode: str, now: datetime | None = None) -> ArchivedPartition:
    """Detach, re-check, export, verify, drop and record one partition (module docstring).
    Raises ArchiveError after re-attaching it when anything before the drop fails."""
    moment = now or datetime.now(UTC)
    detach(conn, name)
    try:
        with conn.begin():
            rows, first_seq, last_seq = table_stats(conn, name)
            held = hold_in(conn, name)
            begin = checkpoint(conn)
            live_min = conn.execute(text(f"SELECT min(seq) FROM {AUDIT_TABLE}")).scalar()  # noqa: S608
        if held is not None:
            raise ArchiveError(f"entries about {held[1]} {held[2]} are under legal hold {held[0]}")
        if rows and (first_seq != begin.seq + 1 or last_seq != begin.seq + rows):
            raise ArchiveError(f"its entries (seq {first_seq}..{last_seq}, {rows} rows) do not continue the chain "
                               f"from seq {begin.seq} without a gap")
        if rows and live_min is not None and int(live_min) != (last_seq or 0) + 1:
            raise ArchiveError(f"the live log would then start at seq {live_min}, not {(last_seq or 0) + 1}: "
                               "entries of this month interleave with later ones")
        exported = export(conn, name, cold)
        exported.rows = rows
        got_seq, got_hash = verify_object(cold, exported, rows=rows, start=begin)
        if lock_days > 0:
            cold.lock(exported.key, exported.version_id, moment + timedelta(days=lock_days), lock_mode)
    except Exception as exc:
        reattach(conn, name, start, end, str(exc))
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"{type(exc).__name__}: {exc}") from exc
    with conn.begin():
        _immediate(conn)
        with expected_ddl(conn, "retention"):
            conn.execute(text(f"DROP TABLE {name}"))
        session = Session(bind=conn, join_transaction_mode="rollback_only")
        dropped = datetime.now(UTC)
        session.add(AuditArchive(partition_name=name, range_start=start, range_end=end, first_seq=first_seq,
                                 last_seq=got_seq, last_hash=got_hash, rows=rows, bucket=cold.bucket,
                                 object_key=exported.key, sha256=exported.sha256, size_bytes=exported.size,
                                 verified_at=dropped, dropped_at=dropped))
        audit.record(session, "retention.audit_archived", object_type="audit_partition", object_id=name,
                     details={"partition": name, "first_seq": first_seq, "last_seq": got_seq,
                              "last_hash": got_hash.hex() if got_hash else None, "rows": rows,
                              "bucket": cold.bucket, "object_key": exported.key, "sha256": exported.sha256,
                              "size_bytes": exported.size})
        session.flush()
    return ArchivedPartition(name, rows, first_seq, got_seq, got_hash, exported.key, exported.sha256, exported.size)


def archives(session: Session, limit: int = 100) -> list[AuditArchive]:
    return list(session.scalars(select(AuditArchive).order_by(AuditArchive.range_start.desc()).limit(limit)))
