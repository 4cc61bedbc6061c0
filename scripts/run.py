"""`make run`: start what is missing, migrate, load demo data, serve with one queue worker beside
gunicorn (scheduled and "run now" probe runs, periodic jobs), and clean up on Ctrl-C.

Without DATABASE_URL / S3_ENDPOINT it starts the embedded PostgreSQL and S3 server (data under
instance/, kept between runs). Services that were already running (say, started by another
command) are used and left running; the ones this script started are stopped on exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import config  # noqa: E402
import embedded  # noqa: E402

BIND = os.environ.get("BIND", "127.0.0.1:5000")
# How long Ctrl-C waits for the worker's running job (a probe run is bounded by PROBE_RUN_TIMEOUT_S).
PROBE_GRACE_S = 30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stop", action="store_true", help="stop the embedded services and exit")
    args = parser.parse_args()
    settings = config.load_settings()
    postgres, s3 = embedded.services(settings.instance_dir)
    if args.stop:
        postgres.stop()
        s3.stop()
        print("embedded services stopped")
        return 0

    started: list[object] = []
    worker: subprocess.Popen[bytes] | None = None
    try:
        if settings.uses_embedded_database and not settings.production:
            print("starting the embedded PostgreSQL (data in instance/postgres) ...", flush=True)
            if postgres.start():
                started.append(postgres)
        if settings.uses_embedded_s3 and not settings.production:
            print("starting the embedded S3 server (data in instance/s3) ...", flush=True)
            if s3.start():
                started.append(s3)
        settings = embedded.resolve(settings, stop_at_exit=False)
        env = dict(os.environ, **embedded.environment_for(settings))

        flask = [sys.executable, "-m", "flask", "--app", "app"]
        for step in (["db", "upgrade"], ["setup"], ["demo", "load"]):
            subprocess.run(flask + step, env=env, cwd=ROOT, check=True)

        workers = os.environ.get("WEB_CONCURRENCY", "2")
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", BIND, "--workers", workers,
             "--no-control-socket", "--access-logfile", "-", "app:create_app()"],
            env=env, cwd=ROOT,
        )
        # In a process group of its own, so Ctrl-C reaches it once, from _wait (a second signal
        # would make procrastinate abandon the running job instead of finishing it).
        worker = subprocess.Popen([*flask, "jobs", "worker"], env=env, cwd=ROOT, process_group=0)
        print(f"\nServing on http://{BIND} with a job queue worker  (Ctrl-C stops them and the services "
              "it started)\n", flush=True)
        return _wait(server, worker)
    except subprocess.CalledProcessError as exc:
        print(f"\n`{' '.join(exc.cmd[3:])}` failed (exit {exc.returncode}); see above.", file=sys.stderr)
        return exc.returncode or 1
    finally:
        if worker is not None and worker.poll() is None:  # not reached by Ctrl-C (own process group)
            worker.terminate()
            worker.wait(timeout=PROBE_GRACE_S)
        for service in reversed(started):
            name = "PostgreSQL" if service is postgres else "S3 server"
            print(f"stopping the embedded {name} ...", flush=True)
            service.stop()  # type: ignore[attr-defined]


def _wait(server: subprocess.Popen[bytes], worker: subprocess.Popen[bytes]) -> int:
    """Until gunicorn ends or Ctrl-C: then stop both (the worker finishes its running job first)."""
    stopping = False

    def stop(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:  # a second signal must not turn the worker's graceful stop into a kill
            stopping = True
            stop(server)
            stop(worker)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    warned = False
    while server.poll() is None:
        if worker.poll() is not None and not warned and not stopping:
            warned = True
            print(f"\nThe job queue worker stopped (exit {worker.returncode}): probe runs and periodic jobs "
                  "wait until `flask --app app jobs worker` runs.\n", file=sys.stderr, flush=True)
        time.sleep(0.2)
    stop(worker)
    try:
        worker.wait(timeout=PROBE_GRACE_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    return 0 if stopping else (server.returncode or 0)


if __name__ == "__main__":
    sys.exit(main())
