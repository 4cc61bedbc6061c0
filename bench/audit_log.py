"""Benchmark: the audit-log pages over 10,000,000 entries in 24 monthly partitions, against a page of the
same layout with no query of its own, and `flask audit verify` over the whole log.

    .venv/bin/python bench/audit_log.py [--scale 1.0] [--clients 4] [--duration 10] [--rounds 2] [--keep]

Starts its own embedded PostgreSQL (with pg_stat_statements) and SeaweedFS in a temporary directory (or
uses DATABASE_URL and S3_* when set), migrates, creates an auditor with the CLI and 50 actors, creates the
24 monthly partitions ending this month, and generates the entries in SQL (INSERT ... SELECT
generate_series, one transaction per month: nothing crosses the client), with a valid hash chain when
the database chains entries (see `generate`). Then, served by gunicorn (2 sync workers), each page by
--clients client processes (one signed-in session each, one request at a time) for --duration seconds,
alternating over --rounds rounds:
  baseline  /layout-baseline (same layout, navigation and sign-in checks, no query of its own)
  first     /audit                          the newest page
  deep      /audit?older=<cursor>            the page 100,000 entries down (the cursor an "older" link carries)
  actor     /audit?actor=<e-mail>            one person's activity
  denied    /audit?outcome=denied&action=... refusals of one action, 2,000 matching entries down
Prints requests/s and p50/p95/p99 of each, its ratio to the baseline, deep/first (target >= 0.7), and
SQL statements per request; then runs `flask audit verify` (when the command exists) and prints the
rows verified per second (target >= 200,000). Figures, never pass/fail. JSON goes to bench/results/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FLASK, ROOT, Stack, create_user, migrate, serve, start_stack, stop_server
from load import Processes, alternate, sign_in_clients

FULL_SIZE = 10_000_000
MONTHS = 24
DEEP = 100_000
TARGET_DEEP_RATIO = 0.7
TARGET_VERIFY_ROWS_PER_S = 200_000
ACTORS = 50
EMAIL = "bench-auditor@bench.example"
PASSWORD = secrets.token_urlsafe(16)
# A realistic mix: most entries are reads of the busy objects' lifecycle, a few are refusals.
ACTIONS = (
    "evidence.upload", "evidence.review", "evidence.link", "evidence.download", "control.update",
    "control.delete", "framework.import", "probe.run", "probe.update", "check.update", "task.create",
    "task.update", "alert.acknowledge", "alert.resolve", "auth.login", "auth.logout", "auth.login_failed",
    "user.create", "user.role_change", "access.denied",
)
OBJECT_TYPES = ("evidence", "control", "framework", "probe", "check", "task", "alert", "user", "endpoint")


# --- the dataset ----------------------------------------------------------------------------------

def _chained(conn: Any) -> bool:
    """Does this schema hash-chain its entries (migration 0011's seq/prev_hash/hash)?"""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'audit_logs'"
        " AND column_name = 'hash')").fetchone()
    return bool(row and row[0])


def _months(now: datetime, months: int) -> list[tuple[datetime, datetime]]:
    """[start, end) of each of the `months` months ending with this one (this one ends a minute ago)."""
    this = now.year * 12 + now.month - 1
    out = []
    for k in range(this - months + 1, this + 1):
        start = datetime(k // 12, k % 12 + 1, 1, tzinfo=UTC)
        end = datetime((k + 1) // 12, (k + 1) % 12 + 1, 1, tzinfo=UTC)
        out.append((start, min(end, now - timedelta(minutes=1))))
    return out


def _fields(g: int, actor_ids: list[str], actor_emails: list[str]) -> tuple[Any, ...]:
    """Row g of the whole log: actor, action, object, outcome, ip, request id and details (a dict)."""
    system = g % 25 == 0
    a = (g * 7) % len(actor_ids)
    outcome = "denied" if g % 50 == 7 else "error" if g % 200 == 3 else "success"
    ip = f"10.{g % 250}.{(g // 250) % 250}.{g % 7 + 1}"
    if g % 3 == 0:
        details: dict[str, Any] = {
            "before": {"status": "draft", "title": f"Item {g % 1000}", "owner": {"id": g % 50}},
            "after": {"status": "in_review", "title": f"Item {g % 1000}", "owner": {"id": (g + 1) % 50}}}
    else:
        details = {"path": f"/bench/{g % 1000}", "method": "GET"}
    return (None if system else actor_ids[a], "system" if system else actor_emails[a],
            ACTIONS[(g * 13) % len(ACTIONS)], OBJECT_TYPES[(g * 13) % len(OBJECT_TYPES)], f"obj-{g % 100000}",
            outcome, ip, f"{g:032x}", details)


class _Pieces:
    """The parts of an entry that repeat with a pattern of g (see _fields), computed once: each as COPY
    text and as its canonical bytes (audit_chain.canonical_bytes' length-prefixed fields), the latter
    held as latin-1 str so that a row's canonical form is one f-string encoded once (latin-1 maps
    each of the 256 byte values to one character, so it round-trips any bytes exactly; the per-row
    parts, uuids, numbers and addresses, are ASCII)."""

    def __init__(self, actor_ids: list[str], actor_emails: list[str]) -> None:
        from governance.services import audit_chain as chain

        self.header = chain.HEADER.decode("latin-1")
        self.prefix = [chain._PRESENT(1, n).decode("latin-1") for n in range(64)]
        self.agent = self._canonical(AGENT)
        fields = [_fields(g, actor_ids, actor_emails) for g in range(_PERIOD_OBJECT)]
        # g % period -> (canonical, COPY text): actor_id, actor_name, action, object_type / object_id,
        # outcome / details (which follows user_agent and request_id).
        self.actor = [(self._canonical(*f[0:4]), self._text(*f[0:4])) for f in fields[:_period_actor(actor_ids)]]
        self.object = [(self._canonical(f[4], f[5]), self._text(f[4], f[5])) for f in fields]
        details = [chain.jsonb_text(f[8]) for f in fields[:_PERIOD_DETAILS]]
        self.details = [(self._canonical(d), d) for d in details]

    @staticmethod
    def _canonical(*values: str | None) -> str:
        from governance.services import audit_chain as chain

        out = []
        for value in values:
            if value is None:
                out.append(b"\x00")
            else:
                encoded = value.encode()
                out.append(chain._PRESENT(1, len(encoded)) + encoded)
        return b"".join(out).decode("latin-1")

    @staticmethod
    def _text(*values: str | None) -> str:
        return "\t".join("\\N" if v is None else v for v in values)


def _period_actor(actor_ids: list[str]) -> int:
    """The period in g of _fields' actor, action and object type."""
    return math.lcm(25, len(actor_ids), len(ACTIONS), len(OBJECT_TYPES))


_PERIOD_OBJECT = 100_000  # object_id (g % 100,000) and outcome (g % 50, g % 200)
_PERIOD_DETAILS = 3_000  # details: g % 3, g % 1000, g % 50
AGENT = "Mozilla/5.0 (bench)"
_DAY_US = 86_400_000_000
# uuid.UUID(int=n, version=4): the variant and version bits.
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)


def _copy_chained(conn: Any, total: int, spans: list[tuple[datetime, datetime]], actor_ids: list[str],
                  actor_emails: list[str]) -> None:
    """Entries with their seq, prev_hash and hash computed here (governance.services.audit_chain's
    canonical bytes, the same as the database's trigger), COPYed with triggers off
    (session_replication_role, a superuser's setting); the chain head is moved to the last entry in
    each month's transaction.

    The canonical form is built from _Pieces (the parts that repeat with g) and the per-row parts
    (id, seq, time, address, request id), timestamps are formatted arithmetically (a date string
    per day), ids formatted from the seeded generator's bits as uuid.UUID(version=4) would: the
    same rows and chain as calling _fields and audit_chain.canonical_bytes per row."""
    from psycopg.copy import QueuedLibpqWriter

    from governance.services import audit_chain as chain

    assert _period_actor(actor_ids) <= _PERIOD_OBJECT
    pieces = _Pieces(actor_ids, actor_emails)
    header, prefix, agent_c = pieces.header, pieces.prefix, pieces.agent
    actor, objects, details = pieces.actor, pieces.object, pieces.details
    n_actor = len(actor)
    p36, p32 = prefix[36], prefix[32]
    sha256 = hashlib.sha256

    conn.execute("SET session_replication_role = replica")
    seq, prev = conn.execute(
        "SELECT seq, hash FROM audit_chain_heads WHERE chain = 'audit_logs' FOR UPDATE").fetchone()
    prev = bytes(prev)
    prev_hex = prev.hex()
    columns = ("id", "seq", "prev_hash", "hash", "created_at", "actor_id", "actor_name", "action", "object_type",
               "object_id", "outcome", "ip", "user_agent", "request_id", "details")
    g = 0
    ids = random.Random(total)  # seeded entry ids: the same log for the same size
    per_month = total // len(spans)
    day, day_text = -1, ""
    for m, (start, end) in enumerate(spans):
        n = per_month if m < len(spans) - 1 else total - g
        first_us = chain.epoch_us(start)
        step = max(1, (chain.epoch_us(end) - first_us) // max(n, 1))
        # The queued writer sends from a thread of its own: PostgreSQL parses and indexes one batch while
        # the next is generated here (two cores: the two halves overlap).
        with conn.cursor() as cur, cur.copy(f"COPY audit_logs ({', '.join(columns)}) FROM STDIN",
                                            writer=QueuedLibpqWriter(cur)) as copy:
            lines: list[str] = []
            for i in range(n):
                seq += 1
                h = f"{(ids.getrandbits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
                entry_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
                created_us = first_us + i * step
                if created_us // _DAY_US != day:
                    day = created_us // _DAY_US
                    day_text = f"{datetime.fromtimestamp(day * 86_400, UTC):%Y-%m-%d} "
                seconds, micro = divmod(created_us - day * _DAY_US, 1_000_000)
                hours, seconds = divmod(seconds, 3600)
                minutes, seconds = divmod(seconds, 60)
                seq_s, created_s = str(seq), str(created_us)
                ip = f"10.{g % 250}.{(g // 250) % 250}.{g % 7 + 1}"
                request_id = f"{g:032x}"
                actor_c, actor_t = actor[g % n_actor]
                object_c, object_t = objects[g % _PERIOD_OBJECT]
                details_c, details_t = details[g % _PERIOD_DETAILS]
                canonical = (f"{header}{p36}{entry_id}{prefix[len(seq_s)]}{seq_s}{prefix[len(created_s)]}{created_s}"
                             f"{actor_c}{object_c}{prefix[len(ip) + 3]}{ip}/32{agent_c}{p32}{request_id}{details_c}")
                digest = sha256(prev + canonical.encode("latin-1")).digest()
                digest_hex = digest.hex()
                lines.append(f"{entry_id}\t{seq_s}\t\\\\x{prev_hex}\t\\\\x{digest_hex}\t{day_text}"
                             f"{hours:02d}:{minutes:02d}:{seconds:02d}.{micro:06d}+00\t{actor_t}\t{object_t}\t{ip}\t"
                             f"{AGENT}\t{request_id}\t{details_t}")
                prev, prev_hex = digest, digest_hex
                g += 1
                if len(lines) == 20_000:
                    lines.append("")
                    copy.write("\n".join(lines))
                    lines = []
            if lines:
                lines.append("")
                copy.write("\n".join(lines))
        conn.execute("UPDATE audit_chain_heads SET seq = %s, hash = %s WHERE chain = 'audit_logs'", (seq, prev))
        conn.commit()
    conn.execute("SET session_replication_role = origin")
    conn.commit()


def _insert_select(conn: Any, total: int, spans: list[tuple[datetime, datetime]], actor_ids: list[str],
                   actor_emails: list[str], batch: int) -> None:
    """Entries made by PostgreSQL (INSERT ... SELECT generate_series), chained by its trigger when the
    schema has one; `batch` rows per transaction (the chain head is one row updated per entry, and
    its dead versions pile up until the transaction ends)."""
    done = 0
    per_month = total // len(spans)
    for m, (start, end) in enumerate(spans):
        n = per_month if m < len(spans) - 1 else total - done
        step_us = max(1, int((end - start).total_seconds() * 1_000_000 / max(n, 1)))
        for lo in range(0, n, batch):
            conn.execute(
                """
                INSERT INTO audit_logs (created_at, actor_id, actor_name, action, object_type, object_id,
                                        outcome, ip, user_agent, request_id, details)
                SELECT %(start)s::timestamptz + (i::bigint * %(step)s::bigint) * interval '1 microsecond',
                       CASE WHEN g %% 25 = 0 THEN NULL ELSE (%(ids)s::uuid[])[1 + (g * 7) %% %(n_actors)s] END,
                       CASE WHEN g %% 25 = 0 THEN 'system' ELSE (%(emails)s::text[])[1 + (g * 7) %% %(n_actors)s] END,
                       (%(actions)s::text[])[1 + (g * 13) %% %(n_actions)s],
                       (%(types)s::text[])[1 + (g * 13) %% %(n_types)s],
                       'obj-' || (g %% 100000),
                       (CASE WHEN g %% 50 = 7 THEN 'denied' WHEN g %% 200 = 3 THEN 'error'
                             ELSE 'success' END)::audit_outcome,
                       ('10.' || (g %% 250) || '.' || ((g / 250) %% 250) || '.' || (g %% 7 + 1))::inet,
                       'Mozilla/5.0 (bench)', lpad(to_hex(g), 32, '0'),
                       CASE WHEN g %% 3 = 0 THEN jsonb_build_object(
                              'before', jsonb_build_object('status', 'draft', 'title', 'Item ' || (g %% 1000),
                                                           'owner', jsonb_build_object('id', g %% 50)),
                              'after', jsonb_build_object('status', 'in_review', 'title', 'Item ' || (g %% 1000),
                                                          'owner', jsonb_build_object('id', (g + 1) %% 50)))
                            ELSE jsonb_build_object('path', '/bench/' || (g %% 1000), 'method', 'GET') END
                FROM generate_series(%(lo)s, %(hi)s - 1) i, LATERAL (SELECT %(offset)s::bigint + i AS g) r
                """,
                {"start": start, "step": step_us, "ids": actor_ids, "emails": actor_emails,
                 "n_actors": len(actor_ids), "actions": list(ACTIONS), "n_actions": len(ACTIONS),
                 "types": list(OBJECT_TYPES), "n_types": len(OBJECT_TYPES), "lo": lo, "hi": min(n, lo + batch),
                 "offset": done},
            )
            conn.commit()
        done += n


def generate(dsn: str, total: int, months: int, now: datetime) -> dict[str, Any]:
    """`total` entries spread evenly over the `months` months ending with this one, oldest first.

    With the hash chain (migration 0011) and a superuser connection (the embedded server's), the
    entries and their hashes are computed here and COPYed with the trigger off: much faster than the
    trigger's one locked head-row update per entry, and the same chain (`flask audit verify` checks
    it). Otherwise PostgreSQL generates them (INSERT ... SELECT generate_series) in batches and its
    trigger, when there is one, chains them."""
    import psycopg

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute("SET synchronous_commit = off")
        pw_hash, role = conn.execute(
            "SELECT u.password_hash, (SELECT id FROM roles WHERE name = 'engineer') FROM users u "
            "ORDER BY u.created_at LIMIT 1").fetchone() or (None, None)
        actors = conn.execute(
            "INSERT INTO users (email, name, password_hash, role_id) "
            "SELECT 'actor' || g || '@bench.example', 'Actor ' || g, %s, %s FROM generate_series(1, %s) g "
            "RETURNING id, email", (pw_hash, role, ACTORS)).fetchall()
        conn.commit()
        chained = _chained(conn)
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        superuser = bool(row and row[0])
        actor_ids = [str(a[0]) for a in actors]
        actor_emails = [a[1] for a in actors]
        spans = _months(now, months)
        if chained and superuser:
            method = "python hashes + COPY"
            _copy_chained(conn, total, spans, actor_ids, actor_emails)
        else:
            method = "INSERT ... SELECT" + (" chained by the trigger" if chained else "")
            _insert_select(conn, total, spans, actor_ids, actor_emails, batch=2_000 if chained else 500_000)
        seconds["insert"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE audit_logs")
        seconds["vacuum_analyze"] = time.perf_counter() - t0
    # actor 1 (g * 7 % 50 == 0) falls on system entries: the second actor has a full share.
    return {"entries": total, "months": months, "actors": ACTORS, "chained": chained, "method": method,
            "actor_email": actor_emails[1], "seconds": seconds}


def prepare(stack: Stack, scale: float) -> dict[str, Any]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    migrate(stack)
    create_user(stack, EMAIL, "auditor", PASSWORD)
    timings["migrate_and_user"] = time.perf_counter() - t0

    os.environ.update(stack.env)
    from app import create_app
    from extensions import db
    from governance.services import partitions

    now = datetime.now(UTC)
    app = create_app()
    with app.app_context():
        first = partitions.add_months(partitions.month_start(now.date()), -(MONTHS - 1))
        partitions.ensure_partitions(db.session(), months_ahead=MONTHS + 1, start=first)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    data = generate(stack.dsn, max(MONTHS, round(FULL_SIZE * scale)), MONTHS, now)

    import psycopg

    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            statements = True
        except psycopg.Error:
            statements = False
        rows = conn.execute("SELECT count(*) FROM audit_logs").fetchone()[0]  # type: ignore[index]
        in_default = conn.execute("SELECT count(*) FROM audit_logs_default").fetchone()[0]  # type: ignore[index]
        parts = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass").fetchone()[0]  # type: ignore[index]
        # The cursor the page DEEP entries down carries (what its "older" link would hold).
        created_at, entry_id = conn.execute(
            "SELECT created_at, id FROM audit_logs ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
            (DEEP - 1,)).fetchone()  # type: ignore[misc]
        denied_at, denied_id = conn.execute(
            "SELECT created_at, id FROM audit_logs WHERE outcome = 'denied' AND action = 'evidence.review'"
            " ORDER BY created_at DESC, id DESC OFFSET 2000 LIMIT 1").fetchone() or (None, None)
        size = conn.execute("SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits"
                            " WHERE inhparent = 'audit_logs'::regclass").fetchone()
    deep_cursor = f"{created_at.isoformat()}_{entry_id}"
    denied = {"outcome": "denied", "action": "evidence.review"}
    if denied_at is not None:
        denied["older"] = f"{denied_at.isoformat()}_{denied_id}"
    pages = {
        "baseline": "/layout-baseline",
        "first": "/audit",
        "deep": "/audit?" + urlencode({"older": deep_cursor}),
        "actor": "/audit?" + urlencode({"actor": data["actor_email"]}),
        "denied": "/audit?" + urlencode(denied),
    }
    return {"dataset": data, "rows": rows, "rows_in_default_partition": in_default, "partitions": parts,
            "total_size": size[0] if size else None, "timings_s": timings, "pg_stat_statements": statements,
            "pages": pages}


def verify(stack: Stack, rows: int) -> dict[str, Any]:
    """`flask audit verify` over the whole log (h1's command), timed from outside."""
    t0 = time.perf_counter()
    done = subprocess.run([*FLASK, "audit", "verify"], env=stack.env, cwd=ROOT, capture_output=True)
    seconds = time.perf_counter() - t0
    out = (done.stdout + done.stderr).decode(errors="replace").strip()
    if done.returncode != 0 and "No such command" in out:
        return {"available": False, "output": out[-500:]}
    return {"available": True, "exit_code": done.returncode, "seconds": seconds, "rows": rows,
            "rows_per_s": rows / seconds if seconds else None, "output": out[-2000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 10,000,000 entries (default 1)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes (default 4)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per page per round (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the pages (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    started = time.perf_counter()

    stack = start_stack("bench-audit-", "bench_audit", keep=args.keep,
                        pg_settings={"shared_preload_libraries": "pg_stat_statements"})
    server = None
    try:
        print(f"generating the audit log (scale {args.scale}) ...", flush=True)
        info = prepare(stack, args.scale)
        d = info["dataset"]
        print(f"  {info['rows']:,} entries in {info['partitions']} partitions ({info['rows_in_default_partition']} in"
              f" the default one), {info['total_size']}; chained: {d['chained']} ({d['method']})")
        print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in {**info["timings_s"], **d["seconds"]}.items()),
              flush=True)

        server, port = serve(stack, workers=2)
        processes = Processes(server.pid, stack, 2)
        browsers = sign_in_clients(port, args.clients, EMAIL, PASSWORD)
        pages: dict[str, str] = info["pages"]
        for name, path in pages.items():
            status, body = browsers[0].get(path)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
            info.setdefault("page_rows", {})[name] = body.count('class="audit-entry')
        cookies = [b.cookie_header() for b in browsers]
        print(f"load: {args.clients} client processes, {args.duration:g} s per page per round, {args.rounds} rounds,"
              f" gunicorn 2 sync workers; load average before: {os.getloadavg()[0]:.2f}", flush=True)
        results = alternate(port, pages, cookies, rounds=args.rounds, duration=args.duration, warmup=1.0,
                            processes=processes, dsn=stack.dsn, count_statements=info["pg_stat_statements"])
        stop_server(server)
        server = None

        base = results["baseline"]["requests_per_s"]
        for name, p in results.items():
            sql = (f"{p['sql_per_request']:.1f} SQL/request ({p['sql_execution_ms_per_request']:.2f} ms executing)"
                   if p.get("sql_per_request") is not None else "SQL statements: n/a")
            print(f"{name:8s} {p['requests_per_s']:7.1f} req/s  ratio to baseline {p['requests_per_s'] / base:.2f}"
                  f"  p50 {p['p50_ms']:.1f} ms  p95 {p['p95_ms']:.1f} ms  p99 {p['p99_ms']:.1f} ms"
                  f"  {p['errors']} errors  {sql}  rows shown {info['page_rows'].get(name, 0)}")
        deep_ratio = results["deep"]["requests_per_s"] / results["first"]["requests_per_s"]
        print(f"deep / first throughput: {deep_ratio:.2f} (target >= {TARGET_DEEP_RATIO}:"
              f" {'met' if deep_ratio >= TARGET_DEEP_RATIO else 'NOT met'}); load average"
              f" {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)

        print("flask audit verify ...", flush=True)
        verified = verify(stack, info["rows"])
        if not verified["available"]:
            print("  flask audit verify is not available in this tree: no figure")
        else:
            rate = verified["rows_per_s"]
            print(f"  exit {verified['exit_code']} after {verified['seconds']:.1f} s: {rate:,.0f} rows/s (target >="
                  f" {TARGET_VERIFY_ROWS_PER_S:,}: {'met' if rate >= TARGET_VERIFY_ROWS_PER_S else 'NOT met'})")
            print("  " + verified["output"].splitlines()[-1] if verified["output"] else "")

        out_data = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "load_average_after": os.getloadavg()},
            "args": vars(args),
            **info,
            "results": results,
            "ratios_to_baseline": {name: p["requests_per_s"] / base for name, p in results.items()},
            "ratio_deep_to_first": deep_ratio,
            "verify": verified,
            "targets": {
                f"deep_to_first_at_least_{TARGET_DEEP_RATIO}": deep_ratio >= TARGET_DEEP_RATIO,
                f"verify_at_least_{TARGET_VERIFY_ROWS_PER_S}_rows_per_s": bool(
                    verified.get("rows_per_s") and verified["rows_per_s"] >= TARGET_VERIFY_ROWS_PER_S),
            },
            "total_seconds": time.perf_counter() - started,
        }
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"audit_log-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        target.write_text(json.dumps(out_data, indent=2, default=str) + "\n")
        print(f"results written to {target.relative_to(ROOT)} (total {out_data['total_seconds']:.0f} s)")
        return 0
    finally:
        stop_server(server)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
