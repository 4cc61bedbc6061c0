"""`flask --app app …` on the embedded services: started when needed, stopped if it started them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import embedded
from config import ROOT
from tests.web.test_make_run import SERVICE_VARS


def _flask(instance: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    env["INSTANCE_DIR"] = str(instance)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,
                          text=True, capture_output=True, timeout=180)


def test_a_flask_command_starts_what_is_missing_and_stops_it_at_exit(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    done = _flask(instance, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    postgres, s3 = embedded.services(instance)
    assert not postgres.is_running() and not s3.is_running()
    assert (instance / "postgres" / "PG_VERSION").exists()
    assert (instance / "secret_key").stat().st_mode & 0o077 == 0


def test_a_flask_command_uses_running_services_and_leaves_them_running(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    postgres, s3 = embedded.services(instance)
    postgres.start()
    s3.start()
    try:
        assert _flask(instance, "db", "upgrade").returncode == 0
        done = _flask(instance, "partitions", "create", "--months", "1")
        assert done.returncode == 0, done.stderr
        assert "partition" in done.stdout
        assert postgres.is_running() and s3.is_running()
    finally:
        postgres.stop()
        s3.stop()


def test_s3_credentials_are_generated_per_instance(tmp_path: Path) -> None:
    a, b = embedded.EmbeddedS3(tmp_path / "a"), embedded.EmbeddedS3(tmp_path / "b")
    tmp_path.joinpath("a").mkdir()
    tmp_path.joinpath("b").mkdir()
    assert a._credentials() != b._credentials()
    assert a._credentials() == a._credentials()
    assert a.credentials_file.stat().st_mode & 0o077 == 0
