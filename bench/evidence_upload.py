"""Benchmark: stream a large evidence upload through the app under gunicorn, and compare it with a
direct SDK upload of the same file to the same store in the same run.

    .venv/bin/python bench/evidence_upload.py [--size-mib 1024] [--keep]

Starts its own embedded PostgreSQL and SeaweedFS in a temporary directory (or uses DATABASE_URL and
S3_ENDPOINT / S3_ACCESS_KEY / S3_SECRET_KEY when set), migrates, creates an engineer, serves the app
with one gunicorn sync worker, signs in, and POSTs a multipart form with a file of --size-mib MiB
(a PDF header followed by random bytes) streamed from disk. It prints:
  - the worker's resident memory before the upload and its peak (VmHWM) after, and the growth;
  - the app's throughput and the direct SDK upload's (minio put_object, same part size, same
    bucket), and their ratio;
  - whether the targets are met (RSS growth < 64 MiB, ratio >= 0.7). It never fails on them.
Results are also written as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Browser, create_user, csrf, migrate, serve, start_stack, stop_server, worker_pid

from governance.services.evidence_upload import PART_SIZE

MIB = 1024 * 1024
TARGET_RSS_GROWTH_MIB = 64
TARGET_RATIO = 0.7
PASSWORD = secrets.token_urlsafe(16)
EMAIL = "bench-engineer@bench.example"


def make_file(path: Path, size: int) -> str:
    """A PDF header then random bytes (incompressible, like a real scanned report); returns its sha256."""
    digest = hashlib.sha256()
    block = os.urandom(4 * MIB)
    with path.open("wb") as f:
        head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
        f.write(head)
        digest.update(head)
        written = len(head)
        while written < size:
            chunk = block[: min(len(block), size - written)]
            f.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    return digest.hexdigest()


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def multipart(fields: dict[str, str], file_path: Path, filename: str) -> tuple[list[bytes], bytes, int, str]:
    boundary = "bench" + uuid.uuid4().hex
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ) + (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
         f"Content-Type: application/pdf\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + file_path.stat().st_size + len(tail)
    return [head], tail, length, f"multipart/form-data; boundary={boundary}"


def file_chunks(head: list[bytes], path: Path, tail: bytes) -> Iterator[bytes]:
    yield from head
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            yield chunk
    yield tail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    size = args.size_mib * MIB

    stack = start_stack("bench-evidence-", "bench_evidence", keep=args.keep)
    env = stack.env
    server = None
    try:
        bucket = env["S3_EVIDENCE_BUCKET"]
        env["EVIDENCE_MAX_BYTES"] = str(size + 64 * MIB)
        migrate(stack)
        create_user(stack, EMAIL, "engineer", PASSWORD)
        work = stack.work

        print(f"making a {args.size_mib} MiB file ...", flush=True)
        path = work / "report.pdf"
        expected_sha = make_file(path, size)

        server, port = serve(stack, workers=1, timeout=3600)
        browser = Browser(port)
        worker = worker_pid(server.pid)
        browser.sign_in(EMAIL, PASSWORD)

        def upload(file_path: Path, name: str) -> tuple[int, str, float]:
            status, form = browser.get("/evidence/new")
            assert status == 200, status
            token = csrf(form)
            head, tail, length, ctype = multipart({"csrf_token": token, "name": name}, file_path, file_path.name)
            t0 = time.perf_counter()
            code, text = browser.post_stream("/evidence/new", file_chunks(head, file_path, tail), length, ctype,
                                             {"X-CSRFToken": token})
            return code, text, time.perf_counter() - t0

        # Warm up the worker (imports, connection pools) with a small upload first.
        small = work / "warmup.pdf"
        make_file(small, 64 * 1024)
        code, text, _ = upload(small, "warm-up")
        assert code in (200, 303), (code, text[:500])

        # Reset the worker's peak (VmHWM) to its current RSS so the peak read after is this upload's.
        Path(f"/proc/{worker}/clear_refs").write_text("5")
        rss_before = rss_kib(worker, "VmRSS")
        code, text, app_seconds = upload(path, "1 GiB benchmark")
        assert code in (200, 303), (code, text[:500])
        peak = rss_kib(worker, "VmHWM")
        growth_mib = (peak - rss_before) / 1024

        from minio import Minio

        client = Minio(env["S3_ENDPOINT"], access_key=env["S3_ACCESS_KEY"], secret_key=env["S3_SECRET_KEY"],
                       secure=env.get("S3_SECURE") == "true")
        # The app's object really is the file (its hash was recorded while streaming).
        import psycopg

        dsn = env["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT sha256, size_bytes FROM evidence_revisions WHERE size_bytes = %s",
                               (size,)).fetchone()
        assert row is not None and row[0] == expected_sha, (row, expected_sha)

        t0 = time.perf_counter()
        with path.open("rb") as f:
            client.put_object(bucket, f"direct/{uuid.uuid4()}", f, size, part_size=PART_SIZE,
                              content_type="application/pdf")
        sdk_seconds = time.perf_counter() - t0

        app_mib_s = size / MIB / app_seconds
        sdk_mib_s = size / MIB / sdk_seconds
        ratio = app_mib_s / sdk_mib_s
        results = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "file_mib": args.size_mib,
            "part_size_mib": PART_SIZE / MIB,
            "worker_rss_before_mib": round(rss_before / 1024, 1),
            "worker_rss_peak_mib": round(peak / 1024, 1),
            "worker_rss_growth_mib": round(growth_mib, 1),
            "app_seconds": round(app_seconds, 2),
            "app_mib_per_s": round(app_mib_s, 1),
            "sdk_seconds": round(sdk_seconds, 2),
            "sdk_mib_per_s": round(sdk_mib_s, 1),
            "ratio_app_to_sdk": round(ratio, 3),
            "sha256_verified": True,
            "targets": {
                f"rss_growth_under_{TARGET_RSS_GROWTH_MIB}_mib": growth_mib < TARGET_RSS_GROWTH_MIB,
                f"ratio_at_least_{TARGET_RATIO}": ratio >= TARGET_RATIO,
            },
        }
        print(f"worker RSS before: {results['worker_rss_before_mib']} MiB, peak: {results['worker_rss_peak_mib']} MiB,"
              f" growth: {results['worker_rss_growth_mib']} MiB (target < {TARGET_RSS_GROWTH_MIB}:"
              f" {'met' if growth_mib < TARGET_RSS_GROWTH_MIB else 'NOT met'})")
        print(f"through the app: {app_seconds:.1f} s = {app_mib_s:.1f} MiB/s; direct SDK: {sdk_seconds:.1f} s ="
              f" {sdk_mib_s:.1f} MiB/s; ratio {ratio:.2f} (target >= {TARGET_RATIO}:"
              f" {'met' if ratio >= TARGET_RATIO else 'NOT met'})")
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"evidence_upload-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
        target.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {target.relative_to(ROOT)}")
        return 0
    finally:
        stop_server(server)
        stack.stop()

if __name__ == "__main__":
    sys.exit(main())
