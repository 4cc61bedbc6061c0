"""Benchmark: the dashboard at 10,000 controls / 1,000,000 results / 50 frameworks against a page of the same
layout with no query of its own, and a probe run of 1,000 checks until its scores are updated.

    .venv/bin/python bench/probes_dashboard.py [--scale 1.0] [--clients 4] [--duration 15] [--rounds 2] [--keep]

Starts its own embedded PostgreSQL (with pg_stat_statements) and SeaweedFS in a temporary directory (or
uses DATABASE_URL and S3_* when set), migrates, creates an admin with the CLI, creates the monthly
partitions of the past months, loads the dataset through COPY (bench/datagen.py; --scale 0.1 for a
tenth of it), builds the current scores with scoring.rebuild_all, and serves the app with gunicorn
(2 sync workers). Then:
  1. GET / (dashboard) and GET /layout-baseline (same layout, navigation and sign-in checks, no query of
     its own), each by --clients client processes (one signed-in session each, one request at a time)
     for --duration seconds, alternating pages over --rounds rounds. Prints requests/s, p50/p95/p99,
     the ratio dashboard/baseline (target >= 0.5), SQL statements per request from pg_stat_statements,
     and the CPU the app workers, PostgreSQL and the load generator used (the generator should be
     far from a core per process, or it is what is measured).
  2. One run of the probe "bench-run" (kind bench_fixed, registered here: fixed outcomes, so the time
     is the run engine's and scoring's, not a collector's) over its 1,000 active checks spread over
     every framework, through probe_runs.execute_run in this process with the app's session factory.
     Prints the time until the last affected current_scores row was written (target < 5 s), and
     whether the incremental scores equal a full rebuild_all.
Figures, never pass/fail. Results are also written as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Stack, create_user, migrate, serve, start_stack, stop_server
from datagen import RUN_KIND, RUN_PROBE, generate
from load import Processes, alternate, sign_in_clients

TARGET_RATIO = 0.5
TARGET_RUN_SECONDS = 5.0
WORKERS = 2
EMAIL = "bench-admin@bench.example"
PASSWORD = secrets.token_urlsafe(16)
PAGES = {"baseline": "/layout-baseline", "dashboard": "/"}


# --- the probe run of 1,000 checks ------------------------------------------------------------------

class FixedKind:
    """A benchmark kind: fixed outcomes from the check id (no I/O), so a run measures the engine."""

    name = RUN_KIND
    label = "Benchmark (fixed outcomes)"
    description = "Returns a fixed outcome per check; used by bench/probes_dashboard.py."
    config_fields: tuple[tuple[str, str, str, bool], ...] = ()
    parameter_fields: tuple[tuple[str, str, str, bool], ...] = ()

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        return dict(parameters)

    def run(self, ctx: Any, config: Mapping[str, Any], checks: list[Any]) -> list[Any]:
        from governance.models.enums import ResultOutcome
        from governance.probes import Observation

        cycle = (ResultOutcome.NON_COMPLIANT, ResultOutcome.PARTIAL, ResultOutcome.COMPLIANT)
        return [Observation(check_id=c.id, outcome=cycle[c.id.int % 3], observed=c.id.int % 100,
                            expected=">= 50", message="Fixed benchmark outcome", resource="bench://fixed")
                for c in checks]


def probe_run(app: Any) -> dict[str, Any]:
    from sqlalchemy import select, text
    from sqlalchemy.orm import sessionmaker

    from extensions import db
    from governance import probes
    from governance.models.probes import Probe
    from governance.services import probe_runs, scoring

    probes.register(FixedKind())
    with app.app_context():
        session_factory = sessionmaker(db.engine)
        with session_factory() as session:
            probe = session.scalars(select(Probe).where(Probe.name == RUN_PROBE)).one()
            run = probe_runs.request_run(session, probe, trigger="schedule", requested_by_id=None)
            run_id = run.id
            session.commit()
            before: dict[Any, Any] = dict(session.execute(text(
                "SELECT framework_id, value FROM current_scores WHERE scope = 'framework'")).all())
            db_start = session.execute(text("SELECT clock_timestamp()")).scalar_one()
            session.commit()

        t0 = time.perf_counter()
        status = probe_runs.execute_run(session_factory, app.extensions["storage"], app.config["SETTINGS"], run_id)
        seconds = time.perf_counter() - t0

        with session_factory() as session:
            checks_total, counts = session.execute(text(
                "SELECT checks_total, counts FROM probe_runs WHERE id = :id"), {"id": run_id}).one()
            row = session.execute(text(
                "SELECT count(*) FILTER (WHERE scope = 'control'), count(*) FILTER (WHERE scope = 'framework'),"
                " count(*) FILTER (WHERE scope = 'user'), max(updated_at) FROM current_scores"
                " WHERE updated_at >= :start"), {"start": db_start}).one()
            after: dict[Any, Any] = dict(session.execute(text(
                "SELECT framework_id, value FROM current_scores WHERE scope = 'framework'")).all())
            # The incremental upkeep against a full recomputation, rolled back.
            scoring.rebuild_all(session)
            session.flush()
            rebuilt = {
                (r.scope, r.subject): (r.value, r.weight_counted, r.weighted_points)
                for r in session.execute(text(
                    "SELECT scope, coalesce(framework_id, control_id, user_id) AS subject, value, weight_counted,"
                    " weighted_points FROM current_scores"))
            }
            session.rollback()
            incremental = {
                (r.scope, r.subject): (r.value, r.weight_counted, r.weighted_points)
                for r in session.execute(text(
                    "SELECT scope, coalesce(framework_id, control_id, user_id) AS subject, value, weight_counted,"
                    " weighted_points FROM current_scores"))
            }
            session.rollback()
    last_write = row[3]
    return {
        "status": status,
        "checks": checks_total,
        "counts": counts,
        "execute_run_seconds": seconds,
        "scores_updated_after_seconds": (last_write - db_start).total_seconds() if last_write else None,
        "rows_updated": {"control": row[0], "framework": row[1], "user": row[2]},
        "frameworks_whose_score_changed": len([k for k, v in after.items() if before.get(k) != v]),
        "incremental_equals_rebuild": rebuilt == incremental,
        "rows_differing_from_rebuild": sum(1 for k in rebuilt.keys() | incremental.keys()
                                           if rebuilt.get(k) != incremental.get(k)),
    }


# --- main --------------------------------------------------------------------------------------------

def prepare(stack: Stack, scale: float, months: int) -> tuple[Any, dict[str, Any]]:
    """Migrate, create the admin and the past months' partitions, load the data, build the scores."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    migrate(stack)
    create_user(stack, EMAIL, "admin", PASSWORD)
    timings["migrate_and_user"] = time.perf_counter() - t0

    os.environ.update(stack.env)
    from app import create_app
    from extensions import db
    from governance.services import partitions, scoring

    app = create_app()
    with app.app_context():
        first = partitions.add_months(partitions.month_start(datetime.now(UTC).date()), -(months + 1))
        partitions.ensure_partitions(db.session(), months_ahead=months + 3, start=first)
        db.session.commit()

    t0 = time.perf_counter()
    data = generate(stack.dsn, scale=scale, months=months)
    timings["generate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with app.app_context():
        rebuilt = scoring.rebuild_all(db.session())
        db.session.commit()
    timings["rebuild_all"] = time.perf_counter() - t0

    import psycopg

    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE current_scores")
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
            statements = True
        except psycopg.Error:
            statements = False
        sizes = dict(conn.execute(
            "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE relname IN "
            "('frameworks','controls','checks','check_controls','probes','probe_runs','current_scores','users')"
        ).fetchall())
        sizes["results"] = conn.execute("SELECT count(*) FROM results").fetchone()[0]  # type: ignore[index]
        # Every month has its partition: nothing should land in the default one.
        sizes["results_in_default_partition"] = conn.execute(
            "SELECT count(*) FROM results_default").fetchone()[0]  # type: ignore[index]
        sizes["results_partitions"] = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'results'::regclass").fetchone()[0]  # type: ignore[index]
    info = {"dataset": asdict(data), "rows": sizes, "rebuild_all": rebuilt, "timings_s": timings,
            "pg_stat_statements": statements}
    return app, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full dataset (default 1)")
    parser.add_argument("--months", type=int, default=4, help="months of results (default 4)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes (default 4)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per page per round (default 15)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both pages (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    started = time.perf_counter()

    stack = start_stack("bench-dashboard-", "bench_dashboard", keep=args.keep,
                        pg_settings={"shared_preload_libraries": "pg_stat_statements"})
    server = None
    try:
        print(f"loading the dataset (scale {args.scale}) ...", flush=True)
        app, info = prepare(stack, args.scale, args.months)
        d = info["dataset"]
        print(f"  {d['frameworks']} frameworks, {d['controls']} controls, {d['checks']} checks, {d['probes']} probes,"
              f" {d['runs']} runs, {d['results']} results; {info['rows'].get('current_scores')} current scores")
        print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in {**info["timings_s"], **d["seconds"]}.items()))

        server, port = serve(stack, workers=WORKERS)
        processes = Processes(server.pid, stack, WORKERS)
        browsers = sign_in_clients(port, args.clients, EMAIL, PASSWORD)
        for name, path in PAGES.items():
            status, body = browsers[0].get(path)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
            info.setdefault("page_bytes", {})[name] = len(body.encode())
        cookies = [b.cookie_header() for b in browsers]

        print(f"load: {args.clients} client processes, {args.duration:g} s per page per round, {args.rounds} rounds,"
              f" gunicorn {WORKERS} sync workers; load average before: {os.getloadavg()[0]:.2f}", flush=True)
        pages = alternate(port, PAGES, cookies, rounds=args.rounds, duration=args.duration, warmup=2.0,
                          processes=processes, dsn=stack.dsn, count_statements=info["pg_stat_statements"])
        ratio = pages["dashboard"]["requests_per_s"] / pages["baseline"]["requests_per_s"]
        stop_server(server)
        server = None

        for name, p in pages.items():
            cpu = p["cpu_cores"]
            sql = (f"{p['sql_per_request']:.1f} SQL statements/request"
                   f" ({p['sql_per_request_excluding_transaction_control']:.1f} without BEGIN/COMMIT/ROLLBACK,"
                   f" executing {p['sql_execution_ms_per_request']:.2f} ms)"
                   if p.get("sql_per_request") is not None else "SQL statements: pg_stat_statements unavailable")
            print(f"{name:9s} {PAGES[name]:17s} {p['requests_per_s']:7.1f} req/s  p50 {p['p50_ms']:.1f} ms"
                  f"  p95 {p['p95_ms']:.1f} ms  p99 {p['p99_ms']:.1f} ms  {p['errors']} errors  {sql};"
                  f" CPU cores: app {cpu['app_workers']:.2f}, postgres {cpu['postgres']:.2f},"
                  f" generator {cpu['load_generator']:.2f} (busiest process"
                  f" {cpu['load_generator_busiest_process']:.2f});"
                  f" CPU ms/request: app {p['app_cpu_ms_per_request']:.1f},"
                  f" postgres {p['postgres_cpu_ms_per_request']:.1f}")
        cpu_ratio = pages["baseline"]["app_cpu_ms_per_request"] / pages["dashboard"]["app_cpu_ms_per_request"]
        print(f"dashboard / baseline throughput: {ratio:.2f} (target >= {TARGET_RATIO}:"
              f" {'met' if ratio >= TARGET_RATIO else 'NOT met'}); app CPU per request, baseline / dashboard:"
              f" {cpu_ratio:.2f}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)

        print("probe run ...", flush=True)
        run = probe_run(app)
        took = run["scores_updated_after_seconds"]
        met = "met" if took is not None and took < TARGET_RUN_SECONDS else "NOT met"
        print(f"probe run of {run['checks']} checks ({run['status']}, {run['counts']}): execute_run"
              f" {run['execute_run_seconds']:.2f} s; last affected score written {took:.2f} s after the start"
              f" (target < {TARGET_RUN_SECONDS:g} s: {met});"
              f" rows updated {run['rows_updated']}, {run['frameworks_whose_score_changed']} framework scores changed;"
              f" incremental scores equal a full rebuild: {run['incremental_equals_rebuild']}"
              f" ({run['rows_differing_from_rebuild']} rows differ)")

        results = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "load_average_after": os.getloadavg()},
            "args": vars(args),
            **info,
            "pages": pages,
            "ratio_dashboard_to_baseline": ratio,
            "app_cpu_ratio_baseline_to_dashboard": cpu_ratio,
            "probe_run": run,
            "targets": {
                f"ratio_at_least_{TARGET_RATIO}": ratio >= TARGET_RATIO,
                f"run_under_{TARGET_RUN_SECONDS:g}_s": took is not None and took < TARGET_RUN_SECONDS,
            },
            "total_seconds": time.perf_counter() - started,
        }
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"probes_dashboard-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        target.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results written to {target.relative_to(ROOT)} (total {results['total_seconds']:.0f} s)")
        return 0
    finally:
        stop_server(server)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
