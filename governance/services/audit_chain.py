"""The audit log's hash chain: canonical bytes, verification, anchors, the app role's privileges.

Public API (stable; docs/audit.md describes the rules behind it):

- ``canonical_bytes(id, seq, created_us, actor_id, actor_name, action, object_type, object_id,
  outcome, ip, user_agent, request_id, details)`` -> bytes: the canonical form of one entry, every
  argument in its *text form* (str, or None for NULL) except ``seq`` and ``created_us`` (int):
  id/actor_id as lowercase hyphenated UUIDs, created_us the UTC epoch in microseconds
  (``epoch_us(dt)``), outcome the enum value, ip as PostgreSQL's ``inet::text`` (``ip_text(v)``),
  details as PostgreSQL's ``jsonb::text`` (``jsonb_text(v)``). ``entry_hash(prev_hash, canonical)``
  -> the 32-byte sha256. ``ZERO_HASH`` is the first entry's prev_hash.
- ``CHAIN_SELECT``: the SQL select list that returns exactly canonical_bytes' arguments (then
  prev_hash, hash) for rows of audit_logs; ``canonical_of_row(row)`` takes such a row.
- ``verify_chain(conn, anchors=...)`` -> VerifyResult: inside conn's current transaction, recomputes
  every entry's hash in the database server from an expression written here (``canonical_sql``, not
  the stored function), walks the seq order for continuity and prev_hash linkage, explains the first
  flagged entry with the Python canonical_bytes, checks the head row and the given anchors.
  ``verify_database(database_url, ...)`` does the same on a fresh REPEATABLE READ READ ONLY
  connection. ``report_failure(session, result)`` raises the "audit.chain_broken" alert.
- Anchors: ``export_anchor(session, store)`` writes the head {seq, hash, exported_at} as JSON into the
  anchor bucket (object-locked where supported); ``latest_anchors(store, limit)`` reads the newest;
  ``anchor_store(settings)`` is the Storage of AUDIT_ANCHOR_BUCKET.
- ``grant_app_role(conn, role)``: the privileges an application role needs, with audit_logs limited
  to SELECT, INSERT (docs/audit.md). ``BREAK_GLASS_ROLE`` names the one role the append-only
  triggers let through.

The encoding (must match the SQL function audit_log_canonical of migration 0011):
``b"gov.audit.v1\\x00"`` then, for each of the 13 fields in the order above, ``b"\\x00"`` for NULL or
``b"\\x01" + len(utf8).to_bytes(4, "big") + utf8`` where utf8 is the field's text form in UTF-8 (seq and
created_us in decimal). hash = sha256(prev_hash + canonical).
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import Any

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from governance import context
from governance.models.audit_chain import AUDIT_CHAIN
from governance.services import audit
from governance.services.partitions import BREAK_GLASS_ROLE, expected_ddl
from governance.storage import Storage, StorageError

__all__ = [
    "BREAK_GLASS_ROLE",
    "CHAIN_SELECT",
    "HEADER",
    "ZERO_HASH",
    "Anchor",
    "Problem",
    "VerifyResult",
    "anchor_store",
    "canonical_bytes",
    "canonical_of_row",
    "canonical_sql",
    "entry_hash",
    "epoch_us",
    "export_anchor",
    "grant_app_role",
    "ip_text",
    "jsonb_text",
    "latest_anchors",
    "report_failure",
    "verify_chain",
    "verify_database",
]

HEADER = b"gov.audit.v1\x00"
ZERO_HASH = bytes(32)
ANCHOR_FORMAT = "gov.audit.anchor.v1"
ANCHOR_PREFIX = f"{AUDIT_CHAIN}/"
DEFAULT_ANCHORS = 24  # a day of hourly anchors

# Exactly canonical_bytes' arguments, in order, then the stored links. Text forms computed by the
# server so that nothing depends on the client's parsing (or the session TimeZone).
CHAIN_SELECT = (
    "id::text, seq, (extract(epoch FROM created_at) * 1000000)::bigint, actor_id::text, actor_name, "
    "action, object_type, object_id, outcome::text, ip::text, user_agent, request_id, details::text, "
    "prev_hash, hash"
)

_NULL = b"\x00"
_PRESENT = struct.Struct(">BI").pack
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch (UTC) of an aware datetime."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def ip_text(value: Any) -> str | None:
    """PostgreSQL's inet::text of an address (always with its prefix length: 10.0.0.1/32)."""
    if value is None:
        return None
    if isinstance(value, IPv4Address):
        return f"{value}/32"
    if isinstance(value, IPv6Address):
        return f"{value}/128"
    if isinstance(value, (IPv4Interface, IPv6Interface)):
        return f"{value.ip}/{value.network.prefixlen}"
    if isinstance(value, (IPv4Network, IPv6Network)):
        return f"{value.network_address}/{value.prefixlen}"
    return ip_text(_parse_ip(str(value)))


def _parse_ip(raw: str) -> Any:
    from ipaddress import ip_address, ip_interface

    return ip_interface(raw) if "/" in raw else ip_address(raw)


def _json_string(value: str) -> str:
    # PostgreSQL's escape_json: ", \\ and the C0 controls; everything else (non-ASCII too) as is.
    out = ['"']
    for char in value:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif code < 0x20:
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\u{code:04x}"))
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def jsonb_text(value: Any) -> str:
    """What PostgreSQL prints for `value` stored as jsonb (keys ordered by length, then bytes;
    duplicate keys keep the last): for generating entries with their hashes outside the database.
    Floats are refused (PostgreSQL's numeric output differs from Python's repr); use int or str."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, Mapping):
        items = {str(k): v for k, v in value.items()}
        keys = sorted(items, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{_json_string(k)}: {jsonb_text(items[k])}" for k in keys) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    raise TypeError(f"jsonb_text does not render {type(value).__name__}")


def canonical_bytes(id: str, seq: int, created_us: int, actor_id: str | None, actor_name: str | None,
                    action: str | None, object_type: str | None, object_id: str | None, outcome: str | None,
                    ip: str | None, user_agent: str | None, request_id: str | None, details: str | None) -> bytes:
    """The canonical bytes of one entry from its fields' text forms (see the module docstring)."""
    parts = [HEADER]
    for value in (id, str(seq), str(created_us), actor_id, actor_name, action, object_type, object_id,
                  outcome, ip, user_agent, request_id, details):
        if value is None:
            parts.append(_NULL)
        else:
            encoded = value.encode()
            parts.append(_PRESENT(1, len(encoded)))
            parts.append(encoded)
    return b"".join(parts)


def canonical_of_row(row: Sequence[Any]) -> bytes:
    """canonical_bytes of a row selected with CHAIN_SELECT."""
    return canonical_bytes(*row[:13])


def entry_hash(prev_hash: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(prev_hash + canonical).digest()


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """The first place where the chain does not hold: the entry (seq, id, created_at when it still
    exists) and what differs."""

    seq: int
    reason: str
    id: str | None = None
    created_at: datetime | None = None

    def describe(self) -> str:
        where = f"seq {self.seq}"
        if self.id:
            where += f" (id {self.id}"
            where += f", created_at {self.created_at.isoformat()})" if self.created_at else ")"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: bytes
    exported_at: datetime
    key: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"format": ANCHOR_FORMAT, "chain": AUDIT_CHAIN, "seq": self.seq,
                           "hash": self.hash.hex(), "exported_at": self.exported_at.isoformat()},
                          sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, key: str = "") -> Anchor:
        data = json.loads(raw)
        if data.get("format") != ANCHOR_FORMAT or data.get("chain") != AUDIT_CHAIN:
            raise ValueError(f"anchor {key!r} is not a {ANCHOR_FORMAT} anchor of {AUDIT_CHAIN}")
        return cls(int(data["seq"]), bytes.fromhex(data["hash"]), datetime.fromisoformat(data["exported_at"]), key)


@dataclass
class VerifyResult:
    rows: int = 0
    last_seq: int = 0
    # Where the live chain starts: 1, or the seq after the newest vouched archive (docs/retention.md).
    first_seq: int = 1
    seconds: float = 0.0
    problem: Problem | None = None
    head_problem: str | None = None
    anchors_checked: int = 0
    anchor_problem: Problem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None and self.head_problem is None and self.anchor_problem is None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float(self.rows)

    def problems(self) -> list[str]:
        found = []
        if self.problem:
            found.append(self.problem.describe())
        if self.head_problem:
            found.append(self.head_problem)
        if self.anchor_problem:
            found.append(self.anchor_problem.describe())
        return found

    def summary(self) -> str:
        speed = f"{self.rows} entries in {self.seconds:.2f} s ({self.rows_per_second:,.0f} rows/s)"
        anchors = f"; {self.anchors_checked} anchor(s) checked" if self.anchors_checked else ""
        if self.ok:
            archived = f" (seq 1..{self.first_seq - 1} archived)" if self.first_seq > 1 else ""
            return f"audit chain OK: {speed}, seq {self.first_seq}..{self.last_seq}{archived}{anchors}"
        return f"audit chain BROKEN after {speed}{anchors}: " + "; ".join(self.problems())


def _created(created_us: int | None) -> datetime | None:
    return None if created_us is None else _EPOCH + timedelta(microseconds=created_us)


def canonical_sql(utf8_client: bool = True) -> str:
    """The SQL expression of an audit_logs row's canonical bytes, written out here rather than
    calling the database's audit_log_canonical (a changed stored function cannot make verify agree).
    textsend gives a text's bytes in the client encoding: with a UTF8 client that is convert_to(x,
    'UTF8') at less cost."""
    to_bytes = "textsend({})" if utf8_client else "convert_to({}, 'UTF8')"
    header = "'\\x" + HEADER.hex() + "'::bytea"
    fields = [f"coalesce('\\x01'::bytea || int4send(octet_length({expr})) || {to_bytes.format(expr)}, '\\x00'::bytea)"
              for expr in _CANONICAL_TEXT]
    return " || ".join([header, *fields])


# The 13 fields' text forms, in canonical_bytes' order.
_CANONICAL_TEXT = (
    "id::text", "seq::text", "((extract(epoch FROM created_at) * 1000000)::bigint)::text", "actor_id::text",
    "actor_name::text", "action::text", "object_type::text", "object_id::text", "outcome::text", "ip::text",
    "user_agent::text", "request_id::text", "details::text",
)
# The first seq whose entry does not follow the one before it (or, first, the checkpoint: seq 0
# and the zeros, or the newest vouched archive's last seq and hash).
_LINKS_SQL = (
    "SELECT min(seq) FILTER (WHERE seq IS DISTINCT FROM coalesce(before_seq, %s) + 1"
    " OR prev_hash IS DISTINCT FROM coalesce(before_hash, %s)) FROM ("
    " SELECT seq, prev_hash, lag(seq) OVER w AS before_seq, lag(hash) OVER w AS before_hash"
    " FROM audit_logs WINDOW w AS (ORDER BY seq)) links"
)


def verify_chain(conn: psycopg.Connection[Any], *, anchors: Iterable[Anchor] = ()) -> VerifyResult:
    """Verify the whole chain inside conn's current transaction (open it REPEATABLE READ for a
    snapshot in which the head and the entries agree: verify_database does).

    Two passes, both in the database server (the rows never cross to the client):
    1. content: every entry's hash recomputed from its prev_hash and canonical bytes (canonical_sql);
       each row stands alone, so PostgreSQL may scan the partitions with parallel workers;
    2. links: in seq order, each entry's seq is the previous one's plus one (the first is 1) and its
       prev_hash the previous entry's hash (the first's the 32 zero bytes): a walk of three narrow
       columns along the seq indexes.
    The first entry either pass flags is then read and explained here (_diagnose, with the Python
    canonical_bytes: a second, independent computation). The head and the anchors are checked
    whatever the passes found."""
    result = VerifyResult()
    started = time.perf_counter()
    utf8 = conn.info.encoding.replace("-", "").lower() == "utf8"
    total, last_seq, content_bad = conn.execute(
        f"SELECT count(*), max(seq), min(seq) FILTER (WHERE sha256(prev_hash || {canonical_sql(utf8)})"  # noqa: S608
        " IS DISTINCT FROM hash) FROM audit_logs").fetchone() or (0, None, None)
    start_seq, start_hash, start_problem = _checkpoint(conn)
    result.first_seq = start_seq + 1
    link_row = conn.execute(_LINKS_SQL, (start_seq, start_hash)).fetchone()
    link_bad = link_row[0] if link_row else None
    flagged = [seq for seq in (content_bad, link_bad) if seq is not None]
    if start_problem is not None:
        result.problem = _first_entry_problem(conn, start_problem)
        result.last_seq = result.rows = 0
    elif flagged:
        first = min(flagged)
        result.problem = _locate(conn, first, start_seq, start_hash)
        result.rows = max(0, result.problem.seq - 1 - start_seq)
        result.last_seq = result.problem.seq - 1
    else:
        result.rows = int(total)
        result.last_seq = int(last_seq or 0)
        # The head moves at commit (a deferred trigger): move it now for entries this transaction
        # wrote itself (a no-op in verify_database's read-only transaction; for the rest of a
        # caller's transaction the head then moves after each statement).
        conn.execute("SET CONSTRAINTS audit_logs_chain_head IMMEDIATE")
        last = conn.execute("SELECT hash FROM audit_logs WHERE seq = %s", (result.last_seq,)).fetchone()
        result.head_problem = _check_head(conn, result.last_seq, bytes(last[0]) if last else ZERO_HASH)
    for anchor in anchors:
        result.anchors_checked += 1
        result.anchor_problem = _check_anchor(conn, anchor, start_seq, start_hash)
        if result.anchor_problem is not None:
            break
    result.seconds = time.perf_counter() - started
    return result


def _checkpoint(conn: psycopg.Connection[Any]) -> tuple[int, bytes, str | None]:
    """(seq, hash) after which the live chain starts, and what is wrong with it. Dropped archives
    (audit_archives) move the start to the newest one's (last_seq, last_hash), but only when a
    chained `retention.audit_archived` entry of the live log vouches for exactly that pair: a row
    of audit_archives alone proves nothing (anyone with write access could add or change one)."""
    present = conn.execute("SELECT to_regclass('audit_archives') IS NOT NULL").fetchone()
    if not present or not present[0]:
        return 0, ZERO_HASH, None
    row = conn.execute("SELECT last_seq, last_hash, partition_name FROM audit_archives WHERE dropped_at IS NOT NULL"
                       " AND last_seq IS NOT NULL ORDER BY last_seq DESC LIMIT 1").fetchone()
    if row is None:
        return 0, ZERO_HASH, None
    seq, digest, name = int(row[0]), bytes(row[1] or b""), row[2]
    vouched = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM audit_logs WHERE action = 'retention.audit_archived'"
        " AND object_type = 'audit_partition' AND details->>'last_seq' = %s AND details->>'last_hash' = %s)",
        (str(seq), digest.hex())).fetchone()
    if vouched and vouched[0]:
        return seq, digest, None
    return 0, ZERO_HASH, (f"audit_archives says the log up to seq {seq} was archived ({name}) with last hash "
                          f"{digest.hex()[:16]}…, but no retention.audit_archived entry in the live log vouches "
                          "for that seq and hash: the archive record was forged or changed, or its entry removed "
                          "(a removed beginning)")


def _first_entry_problem(conn: psycopg.Connection[Any], reason: str) -> Problem:
    first = conn.execute("SELECT seq, id::text, (extract(epoch FROM created_at) * 1000000)::bigint FROM audit_logs "
                         "ORDER BY seq LIMIT 1").fetchone()
    if first is None:
        return Problem(1, reason)
    return Problem(int(first[0]), reason, first[1], _created(first[2]))


def _locate(conn: psycopg.Connection[Any], seq: int, start_seq: int = 0, start_hash: bytes = ZERO_HASH) -> Problem:
    """Explain the first flagged entry, seq: read it, the entry before and the one after."""
    select = f"SELECT {CHAIN_SELECT} FROM audit_logs"  # noqa: S608
    with conn.cursor(binary=True) as cur:
        here = cur.execute(f"{select} WHERE seq = %s ORDER BY created_at, id", (seq,)).fetchall()
        before = cur.execute(f"{select} WHERE seq < %s ORDER BY seq DESC LIMIT 1", (seq,)).fetchone()
        after = cur.execute(f"{select} WHERE seq > %s ORDER BY seq LIMIT 1", (seq,)).fetchone()
    if len(here) > 1:
        again = here[1]
        return Problem(seq, f"seq {seq} appears {len(here)} times (a duplicated or re-inserted entry)",
                       again[0], _created(again[2]))
    row = here[0]
    expected_seq = before[1] + 1 if before is not None else start_seq + 1
    prev = before[14] if before is not None else start_hash
    found = _diagnose(row, expected_seq, prev, canonical_of_row(row), after)
    if found is not None:
        return found
    return Problem(seq, "the database's recomputation of this entry's hash disagrees with the verifier's "
                        "(canonical form mismatch: report this as a bug)", row[0], _created(row[2]))


def _diagnose(row: Sequence[Any], expected_seq: int, prev: bytes, canonical: bytes,
              following: Sequence[Any] | None) -> Problem | None:
    entry_id, seq, created = row[0], row[1], _created(row[2])
    if seq > expected_seq:
        missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq}..{seq - 1}"
        return Problem(expected_seq, f"entry missing ({missing} deleted; the next present is seq {seq}, "
                                     f"id {entry_id}, created_at {created.isoformat() if created else '?'})")
    if seq < expected_seq:
        return Problem(seq, f"seq {seq} appears again after seq {expected_seq - 1} (a duplicated or "
                            "re-inserted entry)", entry_id, created)
    if row[13] != prev:
        what = ("prev_hash is not the 32 zero bytes of the first entry" if seq == 1 else
                f"prev_hash does not match the hash of seq {seq - 1} (that entry's hash, or this link, was "
                "rewritten)")
        return Problem(seq, what, entry_id, created)
    recomputed = entry_hash(prev, canonical)
    if recomputed == row[14]:
        return None
    if following is not None and following[13] == row[14]:
        what = ("content does not match its hash: a field was changed after the entry was written "
                f"(stored {row[14].hex()[:16]}…, content hashes to {recomputed.hex()[:16]}…)")
    elif following is not None and following[13] == recomputed:
        what = "the stored hash was changed (the content and the next entry's link agree with each other)"
    else:
        what = (f"content does not match its hash (stored {row[14].hex()[:16]}…, content hashes to "
                f"{recomputed.hex()[:16]}…)")
    return Problem(seq, what, entry_id, created)


def _check_head(conn: psycopg.Connection[Any], last_seq: int, last_hash: bytes) -> str | None:
    row = conn.execute("SELECT seq, hash FROM audit_chain_heads WHERE chain = %s", (AUDIT_CHAIN,)).fetchone()
    if row is None:
        return None if last_seq == 0 else f"the chain head row is missing (the log ends at seq {last_seq})"
    head_seq, head_hash = row[0], bytes(row[1])
    if head_seq != last_seq:
        if head_seq > last_seq:
            return (f"entries after seq {last_seq} are missing: the chain head says the last entry is seq "
                    f"{head_seq}")
        return f"the chain head (seq {head_seq}) is behind the last entry (seq {last_seq}): the head was reset"
    if head_hash != last_hash:
        return f"the chain head's hash differs from the hash of the last entry (seq {last_seq})"
    return None


def _check_anchor(conn: psycopg.Connection[Any], anchor: Anchor, start_seq: int = 0,
                  start_hash: bytes = ZERO_HASH) -> Problem | None:
    if anchor.seq == 0:
        return None
    if anchor.seq <= start_seq:
        # Archived: only the checkpoint's own hash is still known here.
        if anchor.seq == start_seq and anchor.hash != start_hash:
            return Problem(anchor.seq, f"rewrite detected: the archived checkpoint's hash differs from the anchor "
                                       f"exported at {anchor.exported_at.isoformat()} ({anchor.key})")
        return None
    rows = conn.execute(
        "SELECT id::text, (extract(epoch FROM created_at) * 1000000)::bigint, hash FROM audit_logs WHERE seq = %s",
        (anchor.seq,),
    ).fetchall()
    exported = anchor.exported_at.isoformat()
    if not rows:
        return Problem(anchor.seq, f"rewrite detected: the anchor exported at {exported} ({anchor.key}) names "
                                   f"seq {anchor.seq}, which the log no longer holds")
    if all(bytes(row[2]) != anchor.hash for row in rows):
        entry_id, created = rows[0][0], _created(rows[0][1])
        return Problem(anchor.seq, f"rewrite detected: the hash differs from the anchor exported at {exported} "
                                   f"({anchor.key}): the chain up to here was recomputed", entry_id, created)
    return None


def libpq_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def verify_database(database_url: str, *, anchors: Iterable[Anchor] = ()) -> VerifyResult:
    """verify_chain on a connection of its own, in one REPEATABLE READ READ ONLY transaction."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        conn.execute("SET statement_timeout = 0")
        try:
            return verify_chain(conn, anchors=anchors)
        finally:
            conn.rollback()


def report_failure(session: Session, result: VerifyResult) -> Any:
    """Raise (or repeat) the critical "audit.chain_broken" alert for a failed verification.
    Flushes, never commits."""
    from governance.models.enums import Severity
    from governance.services import alerts

    first = result.problem or result.anchor_problem
    details: dict[str, Any] = {"problems": result.problems(), "rows_verified": result.rows}
    if first is not None:
        details.update({"seq": first.seq, "id": first.id,
                        "created_at": first.created_at.isoformat() if first.created_at else None,
                        "reason": first.reason})
    where = f" at seq {first.seq}" if first is not None else ""
    return alerts.raise_alert(session, rule="audit.chain_broken", subject_type="audit_log", subject_id="chain",
                              title=f"The audit log's hash chain is broken{where}", severity=Severity.CRITICAL,
                              details=details)


# --- anchors ------------------------------------------------------------------------------------


def anchor_store(settings: Any) -> Storage:
    """The object store of AUDIT_ANCHOR_BUCKET (created with object lock where supported)."""
    store = Storage(settings.s3_endpoint or "", settings.s3_access_key or "", settings.s3_secret_key or "",
                    bucket=settings.audit_anchor_bucket, secure=settings.s3_secure, region=settings.s3_region)
    store.ensure_bucket(object_lock=True)
    return store


def _anchor_key(anchor: Anchor) -> str:
    return f"{ANCHOR_PREFIX}{anchor.exported_at:%Y/%m/%d/%H%M%S%f}-{anchor.seq:020d}.json"


def export_anchor(session: Session, store: Storage, *, lock_days: int = 400, lock_mode: str = "GOVERNANCE",
                  now: datetime | None = None) -> Anchor:
    """Write the chain head as an anchor into `store`'s bucket and lock it; audit the export.
    Flushes, never commits (the object is written either way: an anchor of a head is true)."""
    row = session.execute(text("SELECT seq, hash FROM audit_chain_heads WHERE chain = :chain"),
                          {"chain": AUDIT_CHAIN}).one_or_none()
    seq, head = (int(row[0]), bytes(row[1])) if row is not None else (0, ZERO_HASH)
    moment = now or datetime.now(UTC)
    anchor = Anchor(seq, head, moment)
    key = _anchor_key(anchor)
    stored = store.put(key, anchor.to_json(), content_type="application/json")
    locked = lock_days > 0 and store.lock(key, stored.version_id, moment + timedelta(days=lock_days), lock_mode)
    audit.record(session, "audit.anchor_export", object_type="audit_chain", object_id=key,
                 details={"seq": seq, "hash": head.hex(), "bucket": store.bucket, "locked": locked})
    return Anchor(seq, head, moment, key)


def _month_prefixes(now: datetime) -> list[str]:
    this = now.replace(day=1)
    previous = (this - timedelta(days=1)).replace(day=1)
    return [f"{ANCHOR_PREFIX}{previous:%Y/%m}/", f"{ANCHOR_PREFIX}{this:%Y/%m}/"]


def latest_anchors(store: Storage, limit: int = DEFAULT_ANCHORS, *, now: datetime | None = None) -> list[Anchor]:
    """The newest `limit` anchors, newest first (this and last month's first; all if too few)."""
    keys = sorted(obj.key for prefix in _month_prefixes(now or datetime.now(UTC))
                  for obj in store.list_objects(prefix))
    if len(keys) < limit:
        keys = sorted(obj.key for obj in store.list_objects(ANCHOR_PREFIX))
    newest = list(reversed(keys[-limit:])) if limit > 0 else []
    return [Anchor.from_json(b"".join(store.open(key)), key) for key in newest]


# --- jobs and the CLI ---------------------------------------------------------------------------


def export_anchor_now(session_factory: Callable[[], Session], settings: Any) -> Anchor:
    with context.acting_as(context.ActionContext(actor_name="job:audit_anchor")), session_factory() as session:
        anchor = export_anchor(session, anchor_store(settings), lock_days=settings.audit_anchor_lock_days,
                               lock_mode=settings.evidence_lock_mode)
        session.commit()
    return anchor


def verify_now(database_url: str, session_factory: Callable[[], Session], settings: Any, *,
               actor_name: str = "job:audit_verify", use_anchors: bool = True) -> VerifyResult:
    """Verify against the newest anchors (when the object store answers); on failure raise the
    alert and commit it."""
    anchors: list[Anchor] = []
    note = None
    if use_anchors:
        try:
            anchors = latest_anchors(anchor_store(settings))
        except StorageError as exc:
            note = f"anchors not checked: {exc}"
    result = verify_database(database_url, anchors=anchors)
    if note:
        result.notes.append(note)
    if not result.ok:
        with context.acting_as(context.ActionContext(actor_name=actor_name)), session_factory() as session:
            report_failure(session, result)
            session.commit()
    return result


# --- privileges ---------------------------------------------------------------------------------

# Tables the app reads but never writes; audit_logs it reads and appends to.
READ_ONLY_TABLES = frozenset({"alembic_version", "audit_chain_heads"})


def grant_app_role(conn: Connection | Session, role: str) -> list[str]:
    """Grant `role` what the application needs: SELECT, INSERT, UPDATE, DELETE on every table of
    the public schema and the use of its sequences, except audit_logs (SELECT, INSERT only, and
    nothing on its partitions directly) and the read-only tables. Re-run after migrations that add
    tables. Runs as the tables' owner; the GRANTs are audited as expected DDL. Returns the
    statements run."""
    quoted = conn.execute(text("SELECT quote_ident(:role)"), {"role": role}).scalar_one()
    tables = [str(name) for name in conn.execute(text(
        "SELECT quote_ident(relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY relname")).scalars()]
    partitions = [str(name) for name in conn.execute(text(
        "SELECT quote_ident(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'audit_logs'::regclass ORDER BY c.relname")).scalars()]
    writable = [t for t in tables if t != AUDIT_CHAIN and t not in READ_ONLY_TABLES]
    read_only = [t for t in tables if t in READ_ONLY_TABLES]
    statements = [f"GRANT USAGE ON SCHEMA public TO {quoted}",
                  f"REVOKE ALL ON {', '.join([*tables, *partitions])} FROM {quoted}",
                  f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(writable)} TO {quoted}",
                  f"GRANT SELECT, INSERT ON {AUDIT_CHAIN} TO {quoted}",
                  f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {quoted}"]
    if read_only:
        statements.append(f"GRANT SELECT ON {', '.join(read_only)} TO {quoted}")
    with expected_ddl(conn, "grants"):
        for statement in statements:
            conn.execute(text(statement))
    return statements
