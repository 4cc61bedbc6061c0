"""The scale benchmark: one seeded dataset of size S, M or L, every main page against /layout-baseline.

    .venv/bin/python bench/run.py --size S|M|L [--clients 8] [--duration N] [--rounds N]
                                  [--pages a,b,c] [--variant LABEL:NAME=VALUE[,NAME=VALUE]]...
                                  [--prepared-compare] [--workers 2] [--keep] [--data DIR [--build-only]]
    make bench SIZE=M

Sizes (bench/sizes.py): S is CI-size (builds in well under a minute); M is 10,000 controls (one
framework of 1,200), 1,000,000 results, 50,000 evidence rows, 10,000,000 audit entries and 500 users;
L is five times M. Everything is loaded through COPY (bench/datagen.py for frameworks, controls,
checks, runs and results; bench/audit_log.py for the hash-chained audit log; evidence and the
remaining users here), never the ORM, from a fixed seed.

With --data DIR the dataset is built in DIR and kept (its services stopped after each run); a later
run with the same --data and size measures it again without building (after `flask db upgrade`), and
--build-only stops once it is built (build while the machine is busy, measure when it is quiet).

Then gunicorn (2 sync workers unless --workers) serves the app and, for each page, --clients client processes (one
signed-in admin session each, one request at a time) request it for --duration seconds, the pages
alternating over --rounds rounds. Printed per page: requests/s, p50/p95/p99, the ratio of its
requests/s to /layout-baseline's (same layout and sign-in checks, no query of its own) in the same
run, and SQL statements per request (pg_stat_statements). The targets are reported as met or not;
the benchmark never fails. With --prepared-compare, every page is measured twice: with psycopg's
default prepare threshold and with prepared statements off (DB_PREPARE_THRESHOLD=off); each --variant
adds a pass with its settings in the app's environment, compared with the default; --pages measures
a subset (the baseline always). Results go to
bench/results/run-<SIZE>-<UTC time>.json; at L, each page's ratio is compared with the newest M file.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import audit_log
from _common import ROOT, Stack, create_user, migrate, serve, start_stack, stop_server
from datagen import _copy, generate
from load import Processes, alternate, sign_in_clients
from sizes import SIZES, Size

WORKERS = 2  # gunicorn sync workers (--workers); the machine the targets are set for has 2 cores
EMAIL = "bench-admin@bench.example"
PASSWORD = secrets.token_urlsafe(16)
RESULTS = ROOT / "bench" / "results"
SEED = 10
# Targets (issue 10): list/detail pages >= 0.3x baseline with p95 < 25 ms; dashboard >= 0.5x;
# audit deep >= 0.7x audit first; at L no page's ratio more than 20 % below its M ratio.
LIST_RATIO, LIST_P95_MS, DASHBOARD_RATIO, DEEP_RATIO, L_DROP = 0.3, 25.0, 0.5, 0.7, 0.2
LIST_PAGES = ("frameworks", "framework_1200", "control", "evidence", "audit_first", "audit_deep",
              "audit_filtered", "search")


# --- the dataset ------------------------------------------------------------------------------------

def _evidence(dsn: str, size: Size, seed: int, now: datetime) -> dict[str, Any]:
    """size.evidence evidence rows, each with one revision and a link to the control it was collected
    for (controls of every framework, the 1,200-control framework's first ones first), a spread of
    review states; plus users up to size.users. COPY only."""
    import random

    import psycopg

    rnd = random.Random(seed)
    t0 = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute("SET synchronous_commit = off")
        pw_hash, role = conn.execute(
            "SELECT u.password_hash, (SELECT id FROM roles WHERE name = 'engineer') FROM users u "
            "ORDER BY u.created_at LIMIT 1").fetchone()  # type: ignore[misc]
        have = conn.execute("SELECT count(*) FROM users").fetchone()[0]  # type: ignore[index]
        extra = max(0, size.users - have)
        _copy(conn, "users", ("id", "email", "name", "password_hash", "role_id"),
              ((uuid.UUID(int=rnd.getrandbits(128), version=4), f"user{i}@bench.example", f"User {i}", pw_hash, role)
               for i in range(extra)))
        users = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY email")]
        controls = [r[0] for r in conn.execute(
            "SELECT c.id FROM controls c JOIN frameworks f ON f.id = c.framework_id"
            " WHERE c.assessable ORDER BY f.title, c.sort_order")]
        statuses = ("approved", "approved", "approved", "in_review", "draft", "rejected")
        bucket = "bench-evidence"
        ev_rows, rev_rows, link_rows = [], [], []
        for i in range(size.evidence):
            ev, rev = uuid.UUID(int=rnd.getrandbits(128), version=4), uuid.UUID(int=rnd.getrandbits(128), version=4)
            control = controls[i % len(controls)]
            user = users[rnd.randrange(len(users))]
            status = statuses[rnd.randrange(len(statuses))]
            digest = f"{rnd.getrandbits(256):064x}"
            created = now - timedelta(minutes=10 + i)
            key = f"evidence/{ev}/1"
            nbytes = 1000 + rnd.randrange(1_000_000)
            ev_rows.append((ev, f"Bench evidence {i:06d}", "Generated by bench/run.py", bucket, key, nbytes,
                            "application/pdf", digest, user, control, user, 1, "general", status, created, created))
            rev_rows.append((rev, ev, 1, bucket, key, nbytes, "application/pdf", digest, f"evidence-{i:06d}.pdf",
                             user, "in_review" if status == "draft" else status, created, created))
            link_rows.append((uuid.UUID(int=rnd.getrandbits(128), version=4), ev, control, created, created))
        _copy(conn, "evidence", ("id", "name", "description", "bucket", "object_key", "size_bytes", "content_type",
                                 "sha256", "uploaded_by_id", "control_id", "owner_id", "revision_number", "category",
                                 "status", "created_at", "updated_at"), ev_rows)
        _copy(conn, "evidence_revisions", ("id", "evidence_id", "number", "bucket", "object_key", "size_bytes",
                                           "content_type", "sha256", "filename", "uploaded_by_id", "status",
                                           "created_at", "updated_at"), rev_rows)
        _copy(conn, "evidence_links", ("id", "evidence_id", "control_id", "created_at", "updated_at"), link_rows)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE users")
        conn.execute("VACUUM ANALYZE evidence")
        conn.execute("VACUUM ANALYZE evidence_revisions")
        conn.execute("VACUUM ANALYZE evidence_links")
    return {"evidence": len(ev_rows), "users_added": extra, "seconds": time.perf_counter() - t0}


def prepare(stack: Stack, size: Size) -> dict[str, Any]:
    """Migrate, create the admin, the partitions, the dataset and the scores; the pages' URLs."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    migrate(stack)
    create_user(stack, EMAIL, "admin", PASSWORD)
    timings["migrate_and_user"] = time.perf_counter() - t0

    os.environ.update(stack.env)
    from app import create_app
    from extensions import db
    from governance.services import partitions, scoring

    now = datetime.now(UTC).replace(microsecond=0)
    app = create_app()
    months_back = max(size.result_months + 1, audit_log.MONTHS - 1)
    with app.app_context():
        first = partitions.add_months(partitions.month_start(now.date()), -months_back)
        partitions.ensure_partitions(db.session(), months_ahead=months_back + 3, start=first)
        db.session.commit()

    t0 = time.perf_counter()
    data = generate(stack.dsn, scale=size.scale, months=size.result_months, seed=SEED, now=now,
                    big_framework_controls=size.big_framework)
    timings["controls_checks_results"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with app.app_context():
        scoring.rebuild_all(db.session())
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    timings["scores"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    audit = audit_log.generate(stack.dsn, size.audit, audit_log.MONTHS, now)
    timings["audit_log"] = time.perf_counter() - t0
    evidence = _evidence(stack.dsn, size, SEED + 1, now)
    timings["evidence_users"] = evidence["seconds"]

    import psycopg

    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE current_scores")
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            statements = True
        except psycopg.Error:
            statements = False
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                  for t in ("frameworks", "controls", "checks", "results", "evidence", "audit_logs", "users")}
        big_id, big_n = conn.execute(
            "SELECT f.id, count(*) FROM frameworks f JOIN controls c ON c.framework_id = f.id"
            " GROUP BY f.id ORDER BY count(*) DESC, f.title LIMIT 1").fetchone()  # type: ignore[misc]
        # A control of that framework with checks and evidence (its details page has something to show).
        control_id = conn.execute(
            "SELECT c.id FROM controls c WHERE c.framework_id = %s AND c.assessable"
            " AND EXISTS (SELECT 1 FROM evidence e WHERE e.control_id = c.id)"
            " AND EXISTS (SELECT 1 FROM checks k WHERE k.control_id = c.id) ORDER BY c.sort_order LIMIT 1",
            (big_id,)).fetchone()[0]  # type: ignore[index]
        deep_at, deep_id = conn.execute(
            "SELECT created_at, id FROM audit_logs ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
            (min(audit_log.DEEP, counts["audit_logs"] // 2) - 1,)).fetchone()  # type: ignore[misc]
    pages = {
        "baseline": "/layout-baseline",
        "dashboard": "/",
        "frameworks": "/frameworks",
        "framework_1200": f"/frameworks/{big_id}",
        "control": f"/controls/{control_id}",
        "evidence": "/evidence",
        "audit_first": "/audit",
        "audit_deep": "/audit?" + urlencode({"older": f"{deep_at.isoformat()}_{deep_id}"}),
        "audit_filtered": "/audit?" + urlencode({"outcome": "denied", "action": "evidence.review"}),
        "search": "/frameworks?" + urlencode({"q": "B00-0042"}),
    }
    return {"rows": counts, "big_framework_controls": big_n, "timings_s": timings,
            "dataset": {"controls_results": {k: v for k, v in vars(data).items() if k != "seconds"},
                        "audit": audit, "evidence": evidence},
            "pg_stat_statements": statements, "pages": pages}


def migration_head(stack: Stack) -> str:
    import psycopg

    with psycopg.connect(stack.dsn) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])  # type: ignore[index]


def reuse(stack: Stack, saved: dict[str, Any]) -> dict[str, Any]:
    """A kept dataset: `flask db upgrade` and `flask setup` (both idempotent) bring it to the current
    code's schema; after a schema change, VACUUM ANALYZE so that the planner knows the new indexes."""
    t0 = time.perf_counter()
    migrate(stack)
    head = migration_head(stack)
    upgraded = head != saved["migration_head"]
    if upgraded:
        import psycopg

        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    return {"built": saved["built"], "migration_head_built": saved["migration_head"], "migration_head_now": head,
            "upgraded": upgraded, "seconds": round(time.perf_counter() - t0, 1)}


# --- measuring --------------------------------------------------------------------------------------

def measure_pages(stack: Stack, pages: dict[str, str], args: argparse.Namespace, statements: bool,
                  env: dict[str, str]) -> dict[str, Any]:
    """Serve the app with `env` added to its environment (a variant's settings) and measure every page."""
    base_env = {k: v for k, v in stack.env.items() if k not in env}
    server, port = serve(Stack(stack.work, base_env), workers=args.workers, env=env)
    try:
        processes = Processes(server.pid, stack, args.workers)
        browsers = sign_in_clients(port, args.clients, EMAIL, PASSWORD)
        sizes: dict[str, int] = {}
        for name, path in pages.items():
            status, body = browsers[0].get(path)
            if status != 200:
                raise RuntimeError(f"{name} {path} answered {status}")
            sizes[name] = len(body.encode())
        cookies = [b.cookie_header() for b in browsers]
        # The warm-up request of each page fills the dashboard's shared cache (not counted).
        results = alternate(port, pages, cookies, rounds=args.rounds, duration=args.duration, warmup=args.warmup,
                            processes=processes, dsn=stack.dsn, count_statements=statements)
    finally:
        stop_server(server)
    base = results["baseline"]["requests_per_s"]
    for name, p in results.items():
        p["ratio_to_baseline"] = p["requests_per_s"] / base if base else None
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            p[key.replace("_ms", "_ratio_to_baseline")] = (results["baseline"][key] / p[key]) if p[key] else None
        p["page_bytes"] = sizes[name]
    return results


def targets(pages: dict[str, Any], size: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in (n for n in LIST_PAGES if n in pages):
        p = pages[name]
        out[f"{name}: ratio >= {LIST_RATIO} and p95 < {LIST_P95_MS:g} ms"] = {
            "met": p["ratio_to_baseline"] >= LIST_RATIO and p["p95_ms"] < LIST_P95_MS,
            "ratio": round(p["ratio_to_baseline"], 3), "p95_ms": round(p["p95_ms"], 2)}
    if "dashboard" in pages:
        d = pages["dashboard"]
        out[f"dashboard: ratio >= {DASHBOARD_RATIO}"] = {"met": d["ratio_to_baseline"] >= DASHBOARD_RATIO,
                                                         "ratio": round(d["ratio_to_baseline"], 3)}
    if "audit_deep" in pages and "audit_first" in pages:
        deep = pages["audit_deep"]["requests_per_s"] / pages["audit_first"]["requests_per_s"]
        out[f"audit deep / audit first >= {DEEP_RATIO}"] = {"met": deep >= DEEP_RATIO, "ratio": round(deep, 3)}
    if size == "L":
        earlier = sorted(RESULTS.glob("run-M-*.json"))
        if not earlier:
            out["L vs M: no page's ratio more than 20 % below M"] = {"met": None, "why": "no M result in bench/results"}
        else:
            m = json.loads(earlier[-1].read_text())["runs"]["default"]["pages"]
            drops = {n: 1 - p["ratio_to_baseline"] / m[n]["ratio_to_baseline"] for n, p in pages.items()
                     if n != "baseline" and n in m and m[n]["ratio_to_baseline"]}
            out[f"L vs M ({earlier[-1].name}): no page's ratio more than 20 % below M"] = {
                "met": all(v <= L_DROP for v in drops.values()),
                "drop_by_page": {n: round(v, 3) for n, v in drops.items()}}
    return out


def print_table(label: str, pages: dict[str, Any]) -> None:
    print(f"\n{label}")
    print(f"  {'page':15s} {'req/s':>7s} {'ratio':>6s} {'p50 ms':>7s} {'p95 ms':>7s} {'p99 ms':>7s}"
          f" {'p95 x':>6s} {'SQL/req':>8s} {'SQL ms':>7s} {'errors':>6s}")
    for name, p in pages.items():
        sql = f"{p['sql_per_request']:8.1f}" if p.get("sql_per_request") is not None else "     n/a"
        sql_ms = f"{p['sql_execution_ms_per_request']:7.2f}" if p.get("sql_execution_ms_per_request") is not None \
            else "    n/a"
        print(f"  {name:15s} {p['requests_per_s']:7.1f} {p['ratio_to_baseline']:6.2f} {p['p50_ms']:7.1f}"
              f" {p['p95_ms']:7.1f} {p['p99_ms']:7.1f} {p['p95_ratio_to_baseline']:6.2f} {sql} {sql_ms}"
              f" {p['errors']:6d}")


PAGE_NAMES = ("dashboard", "frameworks", "framework_1200", "control", "evidence", "audit_first", "audit_deep",
              "audit_filtered", "search")
PREPARED_OFF = ("prepared_off", {"DB_PREPARE_THRESHOLD": "off"})


def parse_variant(raw: str) -> tuple[str, dict[str, str]]:
    """LABEL:NAME=VALUE[,NAME=VALUE] -> (label, environment)."""
    label, sep, rest = raw.partition(":")
    env: dict[str, str] = {}
    for item in rest.split(",") if rest else []:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise argparse.ArgumentTypeError(f"--variant {raw!r}: {item!r} is not NAME=VALUE")
        env[name.strip()] = value.strip()
    if not sep or not label.strip() or not env or label.strip() == "default":
        raise argparse.ArgumentTypeError(
            f"--variant {raw!r}: expected LABEL:NAME=VALUE[,NAME=VALUE] (LABEL not 'default')")
    return label.strip(), env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="S")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client processes (default 8)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per page per round (by size)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds of the pages (by size)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per page (default 1)")
    parser.add_argument("--prepared-compare", action="store_true",
                        help="shorthand for --variant prepared_off:DB_PREPARE_THRESHOLD=off")
    parser.add_argument("--variant", action="append", default=[], type=parse_variant, metavar="LABEL:NAME=VALUE[,...]",
                        help="another pass over the pages with these settings in the app's environment (repeatable)")
    parser.add_argument("--pages", type=lambda v: [p.strip() for p in v.split(",") if p.strip()], default=None,
                        help=f"measure only these pages (comma-separated; baseline always): {', '.join(PAGE_NAMES)}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="build the dataset in DIR and keep it; when DIR already holds one of this size, measure"
                             " against it (migrated to the current head first) instead of building again")
    parser.add_argument("--build-only", action="store_true", help="stop after the dataset is built (with --data)")
    parser.add_argument("--workers", type=int, default=WORKERS,
                        help=f"gunicorn sync workers (default {WORKERS}, one per core of the reference machine)")
    args = parser.parse_args()
    if args.build_only and args.data is None:
        parser.error("--build-only needs --data DIR (the dataset would be removed at once)")
    unknown = [name for name in args.pages or () if name not in PAGE_NAMES and name != "baseline"]
    if unknown:
        parser.error(f"--pages: unknown page {', '.join(unknown)} (known: {', '.join(PAGE_NAMES)})")
    size = SIZES[args.size]
    args.duration = args.duration if args.duration is not None else size.duration
    args.rounds = args.rounds if args.rounds is not None else size.rounds
    started = time.perf_counter()

    marker = args.data.resolve() / "dataset.json" if args.data else None
    saved = json.loads(marker.read_text()) if marker and marker.exists() else None
    if saved and saved["size"] != args.size:
        parser.error(f"--data {args.data} holds an {saved['size']} dataset, not {args.size}")
    stack = start_stack(f"bench-run-{args.size}-", "bench_run", keep=args.keep,
                        pg_settings={"shared_preload_libraries": "pg_stat_statements"},
                        work=args.data.resolve() if args.data else None)
    try:
        global PASSWORD
        if saved:
            print(f"size {args.size}: reusing the dataset in {args.data} (built {saved['built']},"
                  f" migration head {saved['migration_head']})", flush=True)
            PASSWORD = saved["password"]
            info = saved["info"]
            info["reused"] = reuse(stack, saved)
            if info["reused"]["upgraded"] and marker:
                marker.write_text(json.dumps({**saved, "migration_head": info["reused"]["migration_head_now"]},
                                             indent=2, default=str) + "\n")
        else:
            print(f"size {args.size}: building the dataset ({size.describe()}) ...", flush=True)
            info = prepare(stack, size)
            if marker:
                marker.touch(mode=0o600)
                marker.write_text(json.dumps({"size": args.size, "seed": SEED, "built": datetime.now(UTC).isoformat(
                    timespec="seconds"), "migration_head": migration_head(stack), "password": PASSWORD,
                    "info": info}, indent=2, default=str) + "\n")
        print("  rows: " + ", ".join(f"{k} {v:,}" for k, v in info["rows"].items())
              + f"; largest framework {info['big_framework_controls']:,} controls")
        print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in info["timings_s"].items())
              + f" (total {sum(info['timings_s'].values()):.0f})", flush=True)
        if args.build_only:
            print(f"dataset kept in {args.data}; measure it with --data {args.data}")
            return 0
        pages_to_measure = {name: path for name, path in info["pages"].items()
                            if args.pages is None or name == "baseline" or name in args.pages}
        variants: list[tuple[str, dict[str, str]]] = [("default", {})]
        if args.prepared_compare:
            variants.append(PREPARED_OFF)
        variants += [v for v in args.variant if v[0] not in {label for label, _ in variants}]
        runs: dict[str, Any] = {}
        for label, env in variants:
            settings = ", ".join(f"{k}={v}" for k, v in env.items()) or "the defaults"
            print(f"load ({label}: {settings}): {args.clients} clients, {args.duration:g} s per page per round,"
                  f" {args.rounds} rounds, gunicorn {args.workers} sync workers; load average {os.getloadavg()[0]:.2f}",
                  flush=True)
            pages = measure_pages(stack, pages_to_measure, args, info["pg_stat_statements"], env)
            runs[label] = {"env": env, "pages": pages, "targets": targets(pages, args.size)}
            print_table(f"{label}: ratio = req/s over /layout-baseline's; p95 x = baseline p95 / page p95", pages)
        for label, _env in variants[1:]:
            print(f"\n{label} against default: req/s default / {label}, SQL execution ms per request default vs"
                  f" {label}")
            for name, p in runs["default"]["pages"].items():
                other = runs[label]["pages"][name]
                ms = (f"{p['sql_execution_ms_per_request']:.2f} vs {other['sql_execution_ms_per_request']:.2f}"
                      if p.get("sql_execution_ms_per_request") is not None else "n/a")
                print(f"  {name:15s} {p['requests_per_s'] / other['requests_per_s']:5.2f}  {ms}")
        print("\ntargets (reported, never failing):")
        for name, t in runs["default"]["targets"].items():
            state = "n/a" if t["met"] is None else "met" if t["met"] else "NOT met"
            rest = ", ".join(f"{k} {v}" for k, v in t.items() if k != "met")
            print(f"  {state:8s} {name}  ({rest})")

        results = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "size": args.size,
            "size_spec": vars(size),
            "machine": {"cpus": os.cpu_count(), "load_average_after": os.getloadavg()},
            "args": vars(args),
            **info,
            "runs": runs,
            "total_seconds": time.perf_counter() - started,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        target = RESULTS / f"run-{args.size}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        target.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results written to {target.relative_to(ROOT)} (total {results['total_seconds']:.0f} s)")
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
