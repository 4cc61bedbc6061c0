"""`make run`'s script on a fresh instance directory: embedded services, migrate, demo, serve, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import embedded
from config import ROOT

SERVICE_VARS = ("DATABASE_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "SECRET_KEY", "APP_ENV",
                "TEST_DATABASE_URL")


def _start(instance: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    env.update(INSTANCE_DIR=str(instance), BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1")
    return subprocess.Popen([sys.executable, "scripts/run.py"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_healthy(process: subprocess.Popen[str], port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the portal did not become healthy in time")


def _interrupt(process: subprocess.Popen[str]) -> str:
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_run_serves_with_demo_data_and_ctrl_c_stops_what_it_started(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    port = embedded.free_port()
    first = _start(instance, port)
    _wait_healthy(first, port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as response:
        assert response.status == 200
    output = _interrupt(first)
    assert "Sign in with one of these accounts" in output
    for email in ("admin@demo.example", "officer@demo.example", "engineer@demo.example", "auditor@demo.example"):
        assert email in output
    assert "NIST AI RMF 1.0 loaded with 95 controls" in output
    postgres, s3 = embedded.services(instance)
    assert not postgres.is_running() and not s3.is_running()

    second = _start(instance, port)  # the data survives a restart; no new passwords
    _wait_healthy(second, port)
    output = _interrupt(second)
    assert "Demo accounts already exist" in output and "Sign in with one of these" not in output
    assert not postgres.is_running() and not s3.is_running()


def test_run_leaves_running_services_it_did_not_start(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    postgres, s3 = embedded.services(instance)
    postgres.start()
    s3.start()
    try:
        port = embedded.free_port()
        process = _start(instance, port)
        _wait_healthy(process, port)
        _interrupt(process)
        assert postgres.is_running() and s3.is_running()
    finally:
        postgres.stop()
        s3.stop()
