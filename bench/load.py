"""The benchmarks' load generator and measurement (bench/run.py, audit_log.py, probes_dashboard.py).

- one client process per client (no GIL shared between clients), each with a signed-in session of
  its own and one request at a time (`measure`); gunicorn's sync workers close the connection
  after every response;
- the CPU of the app's workers, PostgreSQL and the load generator per window (`Processes`);
- SQL statements per request from pg_stat_statements, reset before each window;
- several windows of a page combined (`combine`), the pages alternated over rounds (`alternate`).
"""

from __future__ import annotations

import http.client
import multiprocessing as mp
import time
from typing import Any

from _common import Browser, Stack, cpu_seconds, worker_pids

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


# --- the load generator: one process per client ---------------------------------------------------

def _client(port: int, path: str, cookie: str, start_at: float, duration: float, out: Any) -> None:
    """Request `path` one at a time from start_at for `duration` s; put (latencies, errors, cpu s) on out.

    gunicorn's sync workers close the connection after each response, so a connection is reused
    only when the server keeps it open."""
    latencies: list[float] = []
    errors = 0
    conn: http.client.HTTPConnection | None = None
    headers = {"Cookie": cookie}
    while time.monotonic() < start_at:
        time.sleep(0.001)
    cpu0 = time.process_time()
    end = start_at + duration
    while time.monotonic() < end:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t0 = time.perf_counter()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = None
            continue
        latencies.append(time.perf_counter() - t0)
        if response.status != 200:
            errors += 1
        if response.will_close:
            conn.close()
            conn = None
    out.put((latencies, errors, time.process_time() - cpu0))


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


class Processes:
    """CPU seconds of the app's workers and of our PostgreSQL (postmaster and its backends)."""

    def __init__(self, gunicorn_master: int, stack: Stack, workers: int = 2) -> None:
        self.workers = worker_pids(gunicorn_master, workers)
        pid_file = stack.work / "pg" / "data" / "postmaster.pid"
        self.postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else None

    def _postgres(self) -> float:
        if self.postmaster is None:
            return float("nan")
        import psutil  # type: ignore[import-untyped]

        total = 0.0
        master = psutil.Process(self.postmaster)
        for proc in [master, *master.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def snapshot(self) -> dict[str, float]:
        return {"app": sum(cpu_seconds(p) for p in self.workers), "postgres": self._postgres()}


def _statements(dsn: str, reset: bool = False) -> dict[str, tuple[int, float]]:
    """pg_stat_statements (calls, total execution ms) per statement text in this database (our own
    queries left out)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        if reset:
            conn.execute("SELECT pg_stat_statements_reset()")
            return {}
        rows = conn.execute(
            "SELECT s.query, sum(s.calls)::bigint, sum(s.total_exec_time) FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
            "AND s.query NOT ILIKE '%pg_stat_statements%' GROUP BY s.query").fetchall()
    return {query: (int(calls), float(ms)) for query, calls, ms in rows}


def measure(port: int, path: str, cookies: list[str], duration: float, processes: Processes,
            dsn: str, count_statements: bool) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    if count_statements:
        _statements(dsn, reset=True)
    start_at = time.monotonic() + 0.5
    clients = [ctx.Process(target=_client, args=(port, path, cookie, start_at, duration, out)) for cookie in cookies]
    for c in clients:
        c.start()
    while time.monotonic() < start_at:
        time.sleep(0.001)
    before = processes.snapshot()
    wall0 = time.monotonic()
    collected = [out.get(timeout=duration + 120) for _ in clients]
    wall = time.monotonic() - wall0
    after = processes.snapshot()
    for c in clients:
        c.join()
    latencies = sorted(x for lat, _e, _c in collected for x in lat)
    errors = sum(e for _l, e, _c in collected)
    generator_cpu = sum(c for _l, _e, c in collected)
    n = len(latencies)
    result: dict[str, Any] = {
        "path": path,
        "requests": n,
        "errors": errors,
        "seconds": round(wall, 2),
        "requests_per_s": n / wall,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p95_ms": _percentile(latencies, 0.95) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "cpu_cores": {
            "app_workers": (after["app"] - before["app"]) / wall,
            "postgres": (after["postgres"] - before["postgres"]) / wall,
            "load_generator": generator_cpu / wall,
            "load_generator_busiest_process": max(c for _l, _e, c in collected) / wall,
        },
        # CPU per request is what other work on a shared machine disturbs least.
        "app_cpu_ms_per_request": (after["app"] - before["app"]) / n * 1000 if n else None,
        "postgres_cpu_ms_per_request": (after["postgres"] - before["postgres"]) / n * 1000 if n else None,
    }
    if count_statements:
        stats = _statements(dsn)
        total = sum(c for c, _ms in stats.values())
        tc = sum(c for q, (c, _ms) in stats.items() if q.strip().upper().startswith(TRANSACTION_CONTROL))
        result["sql_per_request"] = total / n if n else None
        result["sql_per_request_excluding_transaction_control"] = (total - tc) / n if n else None
        result["sql_execution_ms_per_request"] = sum(ms for _c, ms in stats.values()) / n if n else None
        result["top_statements_per_request"] = [
            {"per_request": round(c / n, 3), "mean_exec_ms": round(ms / c, 3), "query": q[:300]}
            for q, (c, ms) in sorted(stats.items(), key=lambda kv: -kv[1][1])[:12]
        ] if n else []
    return result


def combine(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Several windows of one page: totals and the throughput over all of them; the percentiles of
    the window with the median throughput (latencies are not kept across windows)."""
    requests = sum(w["requests"] for w in windows)
    seconds = sum(w["seconds"] for w in windows)
    mid = sorted(windows, key=lambda w: w["requests_per_s"])[len(windows) // 2]
    combined = dict(mid)
    for key in ("app_cpu_ms_per_request", "postgres_cpu_ms_per_request", "sql_execution_ms_per_request"):
        if mid.get(key) is not None:
            combined[key] = sum(w[key] * w["requests"] for w in windows) / requests
    combined.update(requests=requests, seconds=round(seconds, 2), errors=sum(w["errors"] for w in windows),
                    requests_per_s=requests / seconds,
                    per_window_requests_per_s=[round(w["requests_per_s"], 1) for w in windows])
    return combined


def sign_in_clients(port: int, count: int, email: str, password: str) -> list[Browser]:
    """`count` signed-in sessions of one user (one per client process)."""
    browsers = []
    for _ in range(count):
        browser = Browser(port)
        browser.sign_in(email, password)
        browsers.append(browser)
    return browsers


def alternate(port: int, pages: dict[str, str], cookies: list[str], *, rounds: int, duration: float, warmup: float,
              processes: Processes, dsn: str, count_statements: bool) -> dict[str, dict[str, Any]]:
    """Warm every page up (not counted), then measure each for `duration` s per round, the order of the
    pages reversed every other round so that drift in the machine's load falls on all of them; each
    page's windows combined."""
    for path in pages.values():
        measure(port, path, cookies, warmup, processes, dsn, False)
    windows: dict[str, list[dict[str, Any]]] = {name: [] for name in pages}
    width = max(len(name) for name in pages)
    for r in range(rounds):
        order = list(pages) if r % 2 == 0 else list(reversed(pages))
        for name in order:
            w = measure(port, pages[name], cookies, duration, processes, dsn, count_statements)
            windows[name].append(w)
            print(f"  round {r + 1} {name:{width}s} {w['requests_per_s']:7.1f} req/s  p50 {w['p50_ms']:6.1f} ms"
                  f"  p95 {w['p95_ms']:6.1f}  p99 {w['p99_ms']:6.1f}  errors {w['errors']}", flush=True)
    return {name: combine(ws) for name, ws in windows.items()}
