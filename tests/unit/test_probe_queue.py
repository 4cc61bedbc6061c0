"""Probe runs executed by real procrastinate workers on the test database: results and latest
outcomes, errors, retries with backoff, the timeout, the per-probe lock, two workers sharing the
load, the scheduler under concurrency, and the Procfile's worker line.

These tests commit for real (workers are other connections), so they use clean_database and
delete the queue's jobs they caused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import procrastinate
import pytest
from procrastinate.worker import Worker
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from extensions import db
from governance import jobs, probes
from governance.models.enums import ProbeStatus, ResultOutcome, ScoreScope
from governance.models.frameworks import Control, Framework
from governance.models.probes import Check, CheckControl, Probe, ProbeRun, Result
from governance.models.scoring import CurrentScore
from governance.services import probe_runs

# --- test kinds ----------------------------------------------------------------------------------

CALLS: list[tuple[uuid.UUID, float, float]] = []  # (probe id, start, end) of every kind.run
FLAKY: Counter[uuid.UUID] = Counter()  # failed attempts per probe
_calls_lock = threading.Lock()


@dataclass
class StubKind:
    name: str
    behaviour: Callable[[probes.RunContext, Mapping[str, Any], list[probes.CheckSpec]], list[probes.Observation]]
    label: str = "Test kind"
    description: str = "A kind the queue tests control."
    config_fields: tuple[tuple[str, str, str, bool], ...] = ()
    parameter_fields: tuple[tuple[str, str, str, bool], ...] = ()
    calls: list[Any] = field(default_factory=list)

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(config)

    def validate_parameters(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        return dict(parameters)

    def run(self, ctx: probes.RunContext, config: Mapping[str, Any],
            checks: list[probes.CheckSpec]) -> list[probes.Observation]:
        start = time.monotonic()
        try:
            return self.behaviour(ctx, config, checks)
        finally:
            with _calls_lock:
                CALLS.append((ctx.probe_id, start, time.monotonic()))


def _outcomes(ctx: probes.RunContext, config: Mapping[str, Any],
              checks: list[probes.CheckSpec]) -> list[probes.Observation]:
    """Each check's parameters say its outcome (omit: leave it out); config.sleep: seconds to take."""
    time.sleep(float(config.get("sleep", 0)))
    return [probes.Observation(check_id=c.id, outcome=ResultOutcome(c.parameters.get("outcome", "compliant")),
                               observed=c.parameters.get("observed", Decimal("0.93")), expected={"min": 0.9},
                               message=f"{c.name} observed", resource=f"res://{c.name}")
            for c in checks if not c.parameters.get("omit")]


def _fails(ctx: probes.RunContext, config: Mapping[str, Any],
           checks: list[probes.CheckSpec]) -> list[probes.Observation]:
    raise probes.ProbeError("The credentials were refused (HTTP 401).")


def _flaky(ctx: probes.RunContext, config: Mapping[str, Any],
           checks: list[probes.CheckSpec]) -> list[probes.Observation]:
    with _calls_lock:
        failed = FLAKY[ctx.probe_id]
        if failed < int(config["fail_times"]):
            FLAKY[ctx.probe_id] += 1
            raise probes.TransientProbeError(f"The endpoint answered 503 (attempt {failed + 1}).")
    return _outcomes(ctx, {}, checks)


KINDS = [StubKind("test_q_outcomes", _outcomes), StubKind("test_q_fails", _fails), StubKind("test_q_flaky", _flaky)]


@pytest.fixture(scope="module", autouse=True)
def test_kinds() -> Iterator[None]:
    probes.kinds()  # load the built-in kinds first, so ours are additions
    for kind in KINDS:
        probes.register(kind)
    yield
    for kind in KINDS:
        probes._REGISTRY.pop(kind.name, None)


# --- fixtures and helpers ------------------------------------------------------------------------

@pytest.fixture
def factory(app, clean_database) -> Iterator[sessionmaker[Session]]:
    """Sessions that commit for real; the queue's jobs this test caused are deleted after it."""
    with db.engine.connect() as conn:
        first_job = conn.execute(text("SELECT coalesce(max(id), 0) FROM procrastinate_jobs")).scalar_one()
    CALLS.clear()
    FLAKY.clear()
    yield sessionmaker(db.engine, expire_on_commit=False)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM procrastinate_periodic_defers WHERE job_id > :id"), {"id": first_job})
        conn.execute(text("DELETE FROM procrastinate_jobs WHERE id > :id"), {"id": first_job})


def job_app_for(app, factory, *, retry: procrastinate.RetryStrategy | None = None,
                **settings: Any) -> procrastinate.App:
    """A jobs App as create_app builds it (another one per worker: one per process in production)."""
    config = {"SETTINGS": dataclasses.replace(app.config["SETTINGS"], **settings)}
    return jobs.build_app(app.config["SETTINGS"].database_url, factory, config, probe_retry=retry)


class WorkerThread:
    """A procrastinate worker in a thread with its own event loop, as `flask jobs worker` runs."""

    def __init__(self, job_app: procrastinate.App, name: str) -> None:
        self.app = job_app
        self.worker = Worker(job_app, name=name, wait=True, install_signal_handlers=False,
                             fetch_job_polling_interval=0.1, update_heartbeat_interval=1.0)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            async with self.app.open_async():
                await self.worker.run()

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001  (surfaced when the test stops the worker)
            self.error = exc

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the worker did not stop"
        assert self.error is None, self.error


def make_probe(factory: sessionmaker[Session], kind: str, outcomes: list[str | dict[str, Any]], *,
               config: dict[str, Any] | None = None, schedule: str | None = None,
               next_run_at: datetime | None = None) -> uuid.UUID:
    """A committed probe with one check (on a control of its own) per outcome."""
    with factory() as session:
        framework = Framework(title=f"Queue framework {uuid.uuid4().hex[:6]}", version="1")
        session.add(framework)
        session.flush()
        probe = Probe(name=f"queue-{uuid.uuid4().hex[:8]}", kind=kind, config=config or {}, schedule=schedule,
                      next_run_at=next_run_at)
        session.add(probe)
        session.flush()
        for i, outcome in enumerate(outcomes):
            params = outcome if isinstance(outcome, dict) else {"outcome": outcome}
            control = Control(framework_id=framework.id, ref_id=f"Q-{i}", title=f"Queue control {i}")
            session.add(control)
            session.flush()
            check = Check(probe_id=probe.id, control_id=control.id, name=f"check {i}", parameters=params)
            session.add(check)
            session.flush()
            session.add(CheckControl(check_id=check.id, control_id=control.id))
        session.commit()
        return probe.id


def request(factory: sessionmaker[Session], probe_id: uuid.UUID, trigger: str = "manual") -> uuid.UUID:
    with factory() as session:
        run = probe_runs.request_run(session, session.get_one(Probe, probe_id), trigger=trigger,
                                     requested_by_id=None)
        session.commit()
        return run.id


def wait_for(factory: sessionmaker[Session], run_ids: list[uuid.UUID], statuses: tuple[str, ...] = (
        "succeeded", "failed", "timed_out"), timeout: float = 60) -> list[ProbeRun]:
    deadline = time.monotonic() + timeout
    while True:
        with factory() as session:
            runs = session.scalars(select(ProbeRun).where(ProbeRun.id.in_(run_ids))).all()
            if len(runs) == len(run_ids) and all(r.status in statuses for r in runs):
                by_id = {r.id: r for r in runs}
                return [by_id[i] for i in run_ids]
        assert time.monotonic() < deadline, f"runs not {statuses} in time: {[(r.id, r.status) for r in runs]}"
        time.sleep(0.1)


def results_of(factory: sessionmaker[Session], run_id: uuid.UUID) -> list[Result]:
    with factory() as session:
        return list(session.scalars(select(Result).where(Result.run_id == run_id).order_by(Result.resource)))


def checks_of(factory: sessionmaker[Session], probe_id: uuid.UUID) -> list[Check]:
    with factory() as session:
        return list(session.scalars(select(Check).where(Check.probe_id == probe_id).order_by(Check.name)))


def probe_row(factory: sessionmaker[Session], probe_id: uuid.UUID) -> Probe:
    with factory() as session:
        return session.get_one(Probe, probe_id)


def job_rows(factory: sessionmaker[Session], probe_id: uuid.UUID) -> list[Any]:
    with factory() as session:
        return list(session.execute(text(
            "SELECT id, status, attempts, worker_id FROM procrastinate_jobs WHERE lock = :l ORDER BY id"),
            {"l": f"probe:{probe_id}"}).all())


# --- tests -----------------------------------------------------------------------------------------

def test_the_jobs_app_carries_the_probe_tasks(app) -> None:
    job_app = app.extensions["jobs"]
    assert job_app.tasks[jobs.RUN_PROBE].queue == "probes"
    [periodic] = [p for p in job_app.periodic_registry.periodic_tasks.values()
                  if p.task.name == jobs.SCHEDULE_PROBES]
    assert periodic.cron == "* * * * *"


def test_run_now_is_executed_by_a_worker_into_results_outcomes_scores_and_progress(
        app, factory, monkeypatch) -> None:
    monkeypatch.setattr(probe_runs, "BATCH", 2)  # four checks: written (and committed) two by two
    probe_id = make_probe(factory, "test_q_outcomes",
                          ["compliant", "non_compliant", {"outcome": "partial", "observed": {"rate": 0.5}},
                           {"omit": True}], schedule="0 6 * * *")
    run_id = request(factory, probe_id)
    before = datetime.now(UTC)
    with WorkerThread(job_app_for(app, factory), "w1"):
        [run] = wait_for(factory, [run_id])

    assert (run.status, run.attempts, run.error) == ("succeeded", 1, None)
    assert run.counts == {"compliant": 1, "non_compliant": 1, "partial": 1, "error": 1}
    assert run.checks_total == run.checks_done == 4
    assert run.started_at is not None and run.finished_at is not None and run.started_at <= run.finished_at

    results = results_of(factory, run_id)
    assert len(results) == 4
    by_check = {r.check_id: r for r in results}
    checks = checks_of(factory, probe_id)
    assert [c.last_outcome for c in checks] == [ResultOutcome.COMPLIANT, ResultOutcome.NON_COMPLIANT,
                                                ResultOutcome.PARTIAL, ResultOutcome.ERROR]
    first = by_check[checks[0].id]
    assert (first.observed, first.expected, first.message, first.resource) == (
        "0.93", {"min": 0.9}, "check 0 observed", "res://check 0")
    assert by_check[checks[2].id].observed == {"rate": 0.5}
    assert by_check[checks[3].id].message == "The probe returned no result for this check."
    for check in checks:
        assert check.last_result_at is not None and check.last_message == by_check[check.id].message

    probe = probe_row(factory, probe_id)
    assert probe.status == ProbeStatus.SUCCEEDED and probe.last_error is None
    assert probe.last_run_at == run.started_at
    assert probe.next_run_at == probe_runs.next_run("0 6 * * *", before) and probe.next_run_at > before
    [job] = job_rows(factory, probe_id)
    assert (job.id, job.status) == (run.job_id, "succeeded")

    # The scores moved with the outcomes: the compliant check's control is at 100 %, the errored
    # one is counted as an error, not as a failure.
    with factory() as session:
        scores = {s.control_id: s for s in session.scalars(select(CurrentScore).where(
            CurrentScore.scope == ScoreScope.CONTROL, CurrentScore.control_id.in_([c.control_id for c in checks])))}
    assert scores[checks[0].control_id].value == Decimal("100.00")
    assert scores[checks[1].control_id].value == Decimal("0.00")
    assert scores[checks[3].control_id].value is None and scores[checks[3].control_id].error == 1


def test_a_probe_error_records_error_results_at_once(app, factory) -> None:
    probe_id = make_probe(factory, "test_q_fails", ["compliant", "compliant"])
    run_id = request(factory, probe_id)
    with WorkerThread(job_app_for(app, factory), "w1"):
        [run] = wait_for(factory, [run_id])
    assert (run.status, run.attempts) == ("failed", 1)
    assert run.error == "The credentials were refused (HTTP 401)."
    assert run.counts == {"error": 2}
    assert [(r.outcome, r.message) for r in results_of(factory, run_id)] == [
        (ResultOutcome.ERROR, "The credentials were refused (HTTP 401).")] * 2
    assert {c.last_outcome for c in checks_of(factory, probe_id)} == {ResultOutcome.ERROR}
    probe = probe_row(factory, probe_id)
    assert probe.status == ProbeStatus.FAILED and probe.last_error == run.error
    assert len(CALLS) == 1  # no retry for what a retry cannot fix


def test_transient_errors_are_retried_with_backoff_then_recorded_as_errors(app, factory) -> None:
    # Production waits 5, 25, 125 s (exponential); here 1 s each, two retries.
    retry = procrastinate.RetryStrategy(max_attempts=2, exponential_wait=1,
                                        retry_exceptions={probes.TransientProbeError})
    assert probe_runs.RETRY.max_attempts == 3 and probe_runs.RETRY.retry_exceptions == {probes.TransientProbeError}
    assert [probe_runs.RETRY.get_retry_decision(exception=probes.TransientProbeError(), job=_job(n)) is not None
            for n in range(4)] == [True, True, True, False]
    assert probe_runs.RETRY.get_retry_decision(exception=probes.ProbeError(), job=_job(0)) is None

    recovers = make_probe(factory, "test_q_flaky", ["compliant", "partial"], config={"fail_times": 1})
    never = make_probe(factory, "test_q_flaky", ["compliant", "partial"], config={"fail_times": 99})
    runs = [request(factory, recovers), request(factory, never)]
    with WorkerThread(job_app_for(app, factory, retry=retry), "w1"):
        ok, failed = wait_for(factory, runs)

    assert (ok.status, ok.attempts, ok.counts) == ("succeeded", 2, {"compliant": 1, "partial": 1})
    assert len(results_of(factory, ok.id)) == 2  # the failed attempt wrote nothing
    assert (failed.status, failed.attempts) == ("failed", 3)
    assert failed.error == "The endpoint answered 503 (attempt 3)."
    assert [r.outcome for r in results_of(factory, failed.id)] == [ResultOutcome.ERROR] * 2  # once, at the end
    assert dict(FLAKY) == {recovers: 1, never: 3}
    [job] = job_rows(factory, never)
    assert job.attempts == 3  # one job, fetched three times (procrastinate counts each start)
    # The attempts were spaced by the backoff.
    starts = sorted(start for probe_id, start, _ in CALLS if probe_id == never)
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(starts)), starts


def _job(attempts: int) -> procrastinate.jobs.Job:
    return procrastinate.jobs.Job(queue="probes", task_name=jobs.RUN_PROBE, lock=None, queueing_lock=None,
                                 attempts=attempts)


def test_a_run_past_its_timeout_is_timed_out_with_error_results(app, factory) -> None:
    probe_id = make_probe(factory, "test_q_outcomes", ["compliant", "compliant", "compliant"], config={"sleep": 4})
    run_id = request(factory, probe_id)
    with WorkerThread(job_app_for(app, factory, probe_run_timeout_s=1), "w1"):
        [run] = wait_for(factory, [run_id])
    assert run.status == "timed_out"
    assert run.error == "The probe did not finish within 1 s (PROBE_RUN_TIMEOUT_S)."
    assert run.finished_at - run.started_at < timedelta(seconds=3)  # it stopped waiting at the timeout
    assert [(r.outcome, r.message) for r in results_of(factory, run_id)] == [(ResultOutcome.ERROR, run.error)] * 3
    assert probe_row(factory, probe_id).status == ProbeStatus.FAILED


def test_the_lock_keeps_two_runs_of_one_probe_from_overlapping(app, factory) -> None:
    probe_id = make_probe(factory, "test_q_outcomes", ["compliant"], config={"sleep": 1.5})
    other_id = make_probe(factory, "test_q_outcomes", ["compliant"], config={"sleep": 0})
    with WorkerThread(job_app_for(app, factory), "w1"), WorkerThread(job_app_for(app, factory), "w2"):
        first = request(factory, probe_id)
        wait_for(factory, [first], statuses=("running",))
        second = request(factory, probe_id)  # the first executes: this one queues behind it
        assert second != first
        other = request(factory, other_id)  # another probe is not held up by the lock
        a, b, c = wait_for(factory, [first, second, other])
    assert a.status == b.status == c.status == "succeeded"
    assert b.started_at >= a.finished_at, "the second run started before the first finished"
    assert c.finished_at < a.finished_at  # the idle worker ran the other probe meanwhile
    spans = sorted((start, end) for pid, start, end in CALLS if pid == probe_id)
    assert len(spans) == 2 and spans[1][0] >= spans[0][1]


def test_two_workers_share_the_runs_and_no_request_runs_twice(app, factory) -> None:
    probe_ids = [make_probe(factory, "test_q_outcomes", ["compliant", "partial", "non_compliant"],
                            config={"sleep": 0.3}) for _ in range(6)]
    with WorkerThread(job_app_for(app, factory), "w1"), WorkerThread(job_app_for(app, factory), "w2"):
        run_ids = [request(factory, p) for p in probe_ids]
        # "Run now" again while they wait (or run): a waiting run is joined, never doubled.
        again = [request(factory, p) for p in probe_ids]
        runs = wait_for(factory, list(dict.fromkeys(run_ids + again)))
        with factory() as session:  # which worker ran each job (cleared when a worker stops)
            worker_ids = set(session.execute(text(
                "SELECT worker_id FROM procrastinate_jobs WHERE task_name = :t AND id = ANY(:ids)"),
                {"t": jobs.RUN_PROBE, "ids": [r.job_id for r in runs]}).scalars())

    assert len(worker_ids) == 2 and None not in worker_ids, "both workers took part"
    runs_per_probe = Counter(r.probe_id for r in runs)
    # A re-request either joined the queued run or (after it started) queued one more: never more.
    assert all(1 <= n <= 2 for n in runs_per_probe.values())
    with factory() as session:
        per_run = dict(session.execute(select(Result.run_id, func.count()).where(
            Result.run_id.in_([r.id for r in runs])).group_by(Result.run_id)).all())
    for run in runs:
        assert (run.status, run.attempts, run.checks_done) == ("succeeded", 1, 3)
        assert per_run[run.id] == 3, "a run's checks were written more than once"
    calls_per_probe = Counter(pid for pid, _, _ in CALLS)
    assert calls_per_probe == runs_per_probe  # each run executed its kind exactly once
    for probe_id in probe_ids:
        assert {j.status for j in job_rows(factory, probe_id)} == {"succeeded"}


def test_schedulers_on_two_workers_queue_each_due_probe_once(app, factory) -> None:
    now = datetime.now(UTC)
    due = [make_probe(factory, "test_q_outcomes", ["compliant"], schedule="*/10 * * * *",
                      next_run_at=now - timedelta(minutes=1)) for _ in range(5)]
    later = make_probe(factory, "test_q_outcomes", ["compliant"], schedule="*/10 * * * *",
                       next_run_at=now + timedelta(hours=1))
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def tick() -> None:
        barrier.wait()
        counts.append(probe_runs.schedule_due(factory, now=now))

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sum(counts) == 5
    with factory() as session:
        runs = session.scalars(select(ProbeRun).where(ProbeRun.probe_id.in_([*due, later]))).all()
    assert sorted(str(r.probe_id) for r in runs) == sorted(str(p) for p in due)
    assert all(len(job_rows(factory, p)) == 1 for p in due) and job_rows(factory, later) == []
    for p in due:
        assert probe_row(factory, p).next_run_at == probe_runs.next_run("*/10 * * * *", now)

    with WorkerThread(job_app_for(app, factory), "w1"):
        done = wait_for(factory, [r.id for r in runs])
    assert {(r.status, r.trigger) for r in done} == {("succeeded", "schedule")}


def test_a_finished_or_missing_run_is_not_run_again(app, factory) -> None:
    probe_id = make_probe(factory, "test_q_outcomes", ["compliant"])
    run_id = request(factory, probe_id)
    settings = app.config["SETTINGS"]
    assert probe_runs.execute_run(factory, None, settings, run_id) == "succeeded"
    assert probe_runs.execute_run(factory, None, settings, run_id) is None  # a duplicate delivery
    assert probe_runs.execute_run(factory, None, settings, uuid.uuid4()) is None  # deleted meanwhile
    assert len(results_of(factory, run_id)) == 1 and len(CALLS) == 1


def test_the_procfile_worker_runs_probe_runs(app, factory, test_settings, repo_root) -> None:
    [line] = [ln for ln in (repo_root / "Procfile").read_text().splitlines() if ln.startswith("worker:")]
    command = shlex.split(line.split(":", 1)[1])
    assert command[:2] == ["flask", "--app"] and "--queue" not in command  # every queue, "probes" included
    probe_id = make_probe(factory, "test_q_outcomes", ["compliant"])
    run_id = request(factory, probe_id)
    env = dict(os.environ, APP_ENV="test", DATABASE_URL=test_settings.database_url,
               S3_ENDPOINT=test_settings.s3_endpoint, S3_ACCESS_KEY=test_settings.s3_access_key,
               S3_SECRET_KEY=test_settings.s3_secret_key, SECRET_KEY=test_settings.secret_key,
               S3_EVIDENCE_BUCKET=test_settings.s3_evidence_bucket, MFA_REQUIRED_ROLES="")
    # The test kinds are registered in this process only, so the worker process finds the job, runs
    # it, and records the unknown kind as an error result: the queue, not the kind, is under test.
    done = subprocess.run([sys.executable, "-m", *command[:1], *command[1:], "--once"], env=env,
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [run] = wait_for(factory, [run_id], timeout=5)
    assert run.status == "failed" and run.attempts == 1
    assert "Unknown probe kind 'test_q_outcomes'" in (run.error or "")
    assert [r.outcome for r in results_of(factory, run_id)] == [ResultOutcome.ERROR]


def test_a_run_whose_worker_died_is_failed_and_frees_the_probe(app, factory) -> None:
    probe_id = make_probe(factory, "test_q_outcomes", ["compliant"])
    dead = request(factory, probe_id)
    alive = make_probe(factory, "test_q_outcomes", ["compliant"])
    busy = request(factory, alive)
    with factory() as session:  # two runs taken by workers: one gone (pruned), one still beating
        worker_id = session.execute(text("INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")).scalar()
        for run_id, worker in ((dead, None), (busy, worker_id)):
            run = session.get_one(ProbeRun, run_id)
            run.status = "running"
            session.execute(text("UPDATE procrastinate_jobs SET status = 'doing', worker_id = :w WHERE id = :id"),
                            {"w": worker, "id": run.job_id})
        session.commit()
    try:
        assert probe_runs.recover_stalled(factory) == 1
        [run] = wait_for(factory, [dead], statuses=("failed",), timeout=1)
        assert "worker running this run stopped" in (run.error or "")
        assert [j.status for j in job_rows(factory, probe_id)] == ["failed"]
        assert probe_row(factory, probe_id).status == ProbeStatus.FAILED
        assert [j.status for j in job_rows(factory, alive)] == ["doing"]  # a live worker's run is left alone
        # The probe's lock is free again: the next run executes.
        again = request(factory, probe_id)
        with WorkerThread(job_app_for(app, factory), "w1"):
            [next_run] = wait_for(factory, [again])
        assert next_run.status == "succeeded"
    finally:
        with factory() as session:
            session.execute(text("UPDATE procrastinate_jobs SET status = 'failed', worker_id = NULL "
                                 "WHERE status = 'doing' AND lock = :l"), {"l": f"probe:{alive}"})
            session.execute(text("DELETE FROM procrastinate_workers WHERE id = :id"), {"id": worker_id})
            session.commit()
