"""Probe runs on the job queue: requesting a run, executing it in a worker, and the cron scheduler.

A run is a probe_runs row plus one procrastinate job (`gov:run_probe`), created in the same
transaction: the job exists exactly when the row does. Two procrastinate locks carry the queue
rules across any number of workers and machines:
- queueing_lock "probe:<id>": at most one run of a probe waits in the queue. A request while one
  waits joins it (the same ProbeRun comes back, with a message saying so), which also makes the
  scheduler idempotent when several workers tick at once.
- lock "probe:<id>": two runs of one probe never execute at once (a run requested while another
  executes waits for it).

Executing a run (execute_run): the probe's active checks go to its kind, in a thread of its own
that the run stops waiting for after PROBE_RUN_TIMEOUT_S (status timed_out). Each observation
becomes a results row (results.run_id = probe_runs.id), the check keeps its latest outcome, and
scoring.on_checks_changed updates the scores, batch by batch, each batch committed with the run's
progress (checks_done, counts) that the run page polls. Failures of the probe itself become
`error` results, which never count as non-compliance: ProbeError at once, TransientProbeError
after the task's retries with exponential backoff (RETRY) are used up.

A worker that dies mid-run leaves its job "doing", holding the probe's lock: recover_stalled
(each scheduler tick) fails such runs so the probe runs again.

Manual runs are audited ("probe.run"); scheduled runs are not (they are data, on probe_runs).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# croniter ships no type stubs.
from croniter import (  # type: ignore[import-untyped]
    CroniterBadCronError,
    CroniterBadDateError,
    CroniterNotAlphaError,
    croniter,
)
from procrastinate import RetryStrategy, SyncPsycopgConnector
from procrastinate import exceptions as queue_exceptions
from procrastinate import jobs as queue_jobs
from procrastinate.manager import JobManager
from sqlalchemy import delete, insert, or_, select, text, update
from sqlalchemy.orm import Session

from governance import probes, read_only
from governance.models.enums import CheckStatus, ProbeStatus, ResultOutcome
from governance.models.probes import Check, CheckControl, Probe, ProbeRun, Result
from governance.services import alerts, audit, scoring

log = logging.getLogger(__name__)

RUN_PROBE = "gov:run_probe"
SCHEDULE_PROBES = "gov:schedule_probes"
# Probe runs have a queue of their own, so a deployment can give them dedicated workers
# (`flask jobs worker --queue probes`); a worker started without --queue runs every queue.
QUEUE = "probes"
TRIGGERS = ("manual", "schedule")
# Transient failures (a timeout, a 503, a refused connection) are retried after 5 s, 25 s and
# 125 s; the fourth failure in a row is recorded as error results.
RETRY = RetryStrategy(max_attempts=3, exponential_wait=5, retry_exceptions={probes.TransientProbeError})
BATCH = 500  # results written (and progress committed) per transaction
SCHEDULE_BATCH = 200  # due probes requested per scheduler transaction
STALE_AFTER_S = 120.0  # a running job's worker silent this long is gone (recover_stalled)
MESSAGE_MAX = 4000
RESOURCE_MAX = 1024

# ProbeRun.status values (the table's CHECK constraint lists them).
QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT = "queued", "running", "succeeded", "failed", "timed_out"


class RunRefused(ValueError):
    """A run cannot be requested; the message says why, for the page."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RunRequest:
    run: ProbeRun
    created: bool  # False: the request joined a run already waiting in the queue
    message: str


def lock_name(probe_id: uuid.UUID) -> str:
    return f"probe:{probe_id}"


# --- cron --------------------------------------------------------------------------------------

def validate_cron(expr: str) -> str:
    """The cleaned cron expression (five fields, minute first, UTC), or ConfigError beside "schedule"."""
    clean = " ".join((expr or "").split())
    if not clean:
        raise probes.ConfigError("schedule", "Enter a cron expression, e.g. 0 6 * * * (every day at 06:00 UTC).")
    if len(clean.split(" ")) != 5:
        raise probes.ConfigError("schedule", "A schedule has five fields: minute hour day-of-month month "
                                             "day-of-week, e.g. */15 * * * * (every 15 minutes).")
    try:
        if not croniter.is_valid(clean):
            raise ValueError(clean)
        croniter(clean, datetime.now(UTC)).get_next(datetime)
    except (ValueError, KeyError, CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError):
        raise probes.ConfigError("schedule", f"{clean!r} is not a valid cron expression (minute hour "
                                             "day-of-month month day-of-week, e.g. 0 6 * * 1-5).") from None
    return clean


def next_run(schedule: str, after: datetime) -> datetime:
    """The first time strictly after `after` that the cron expression names (UTC)."""
    start = after.astimezone(UTC) if after.tzinfo else after.replace(tzinfo=UTC)
    nxt: datetime = croniter(schedule, start).get_next(datetime)
    return nxt if nxt.tzinfo else nxt.replace(tzinfo=UTC)


# --- requesting runs ---------------------------------------------------------------------------

def _defer(session: Session, run: ProbeRun) -> int:
    """Insert the run's job on the session's own connection: it commits or rolls back with the run.

    A SyncPsycopgConnector used only with an external connection needs no pool of its own, and
    works the same in a web process (app never opened) and inside a worker (app opened async).
    """
    psycopg_conn = session.connection().connection.driver_connection
    job = queue_jobs.Job(
        queue=QUEUE, task_name=RUN_PROBE, lock=lock_name(run.probe_id), queueing_lock=lock_name(run.probe_id),
        task_kwargs={"run_id": str(run.id)},
    )
    deferred = JobManager(SyncPsycopgConnector()).defer_job(job, connection=psycopg_conn)
    read_only.mark_written(session)  # the job row went in through the raw connection
    assert deferred.id is not None
    return deferred.id


def _queued_run(session: Session, probe_id: uuid.UUID) -> ProbeRun | None:
    return session.scalars(
        select(ProbeRun).where(ProbeRun.probe_id == probe_id, ProbeRun.status == QUEUED)
        .order_by(ProbeRun.created_at.desc()).limit(1)
    ).first()


def submit_run(session: Session, probe: Probe, *, trigger: str, requested_by_id: uuid.UUID | None) -> RunRequest:
    """Queue a run of `probe` (or join the one already queued); flushes, the caller commits."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}, got {trigger!r}")
    # The probe row lock serialises requests for one probe (two clicks, the scheduler on two
    # machines): the second sees the first's queued run instead of racing it to the queue.
    locked = session.scalars(
        select(Probe).where(Probe.id == probe.id).with_for_update().execution_options(populate_existing=True)
    ).one()
    if not locked.enabled:
        raise RunRefused(f"The probe {locked.name!r} is disabled: enable it before running it.")

    run = _queued_run(session, locked.id)
    created = run is None
    if run is None:
        run = ProbeRun(id=uuid.uuid4(), probe_id=locked.id, status=QUEUED, trigger=trigger,
                       requested_by_id=requested_by_id)
        session.add(run)
        try:
            with session.begin_nested():  # a refused insert must not abort the caller's transaction
                session.flush()
                run.job_id = _defer(session, run)
        except queue_exceptions.AlreadyEnqueued:
            # A job without a queued run (left by a run that died mid-retry): the queue still
            # holds one for this probe, which is what the request wanted.
            raise RunRefused(f"A run of {locked.name!r} is already waiting in the queue; "
                             "it starts as soon as a worker is free.") from None
        session.flush()
        message = f"Run of {locked.name!r} queued: it starts as soon as a worker is free."
    else:
        message = (f"A run of {locked.name!r} is already queued (since {run.created_at:%Y-%m-%d %H:%M} UTC); "
                   "this request joins it.")
    if trigger == "manual":
        audit.record(session, "probe.run", object_type="probe", object_id=locked.id,
                     details={"trigger": trigger, "run_id": run.id, "queued": created})
    return RunRequest(run=run, created=created, message=message)


def request_run(session: Session, probe: Probe, *, trigger: str, requested_by_id: uuid.UUID | None) -> ProbeRun:
    """The queued ProbeRun of `probe` (a new one, or the one already waiting); see submit_run."""
    return submit_run(session, probe, trigger=trigger, requested_by_id=requested_by_id).run


def request_runs_for_controls(session: Session, control_ids: Iterable[uuid.UUID], *, kind: str) -> list[ProbeRun]:
    """Queue a run of every enabled probe of `kind` with an active check on any of the controls
    (e.g. evidence_freshness after a review decision). One query finds them."""
    ids = list(dict.fromkeys(control_ids))
    if not ids:
        return []
    probe_rows = session.scalars(
        select(Probe)
        .where(Probe.kind == kind, Probe.enabled.is_(True),
               Probe.id.in_(select(Check.probe_id)
                            .join(CheckControl, CheckControl.check_id == Check.id)
                            .where(CheckControl.control_id.in_(ids), Check.status == CheckStatus.ACTIVE)))
        .order_by(Probe.id)
    ).all()
    return [request_run(session, p, trigger="schedule", requested_by_id=None) for p in probe_rows]


# --- the scheduler -----------------------------------------------------------------------------

def schedule_due(session_factory: Callable[[], Session], now: datetime | None = None) -> int:
    """Request a run of every enabled probe whose next_run_at has come and move next_run_at to
    the next cron time; give scheduled probes without a next_run_at one. Returns the runs requested.

    Safe to run on several workers at once: due probes are claimed with SKIP LOCKED, and a probe
    with a run already queued joins it (queueing lock) instead of queueing another.
    """
    now = now or datetime.now(UTC)
    requested = 0
    while True:
        with session_factory() as session:
            due = session.scalars(
                select(Probe)
                .where(Probe.enabled.is_(True), Probe.schedule.is_not(None),
                       or_(Probe.next_run_at <= now, Probe.next_run_at.is_(None)))
                .order_by(Probe.next_run_at.nulls_first(), Probe.id)
                .limit(SCHEDULE_BATCH)
                .with_for_update(skip_locked=True)
            ).all()
            if not due:
                return requested
            for probe in due:
                schedule = probe.schedule or ""
                try:
                    upcoming = next_run(schedule, now)
                except (ValueError, KeyError, CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError):
                    # Refused by validate_cron when saved; a bad row must not stop the others.
                    log.warning("probe %s has an invalid schedule %r: not scheduled", probe.id, schedule)
                    probe.schedule = None
                    probe.next_run_at = None
                    probe.last_error = f"The schedule {schedule!r} is not a valid cron expression; it was cleared."
                    continue
                if probe.next_run_at is not None:
                    request_run(session, probe, trigger="schedule", requested_by_id=None)
                    requested += 1
                probe.next_run_at = upcoming
            session.commit()
            if len(due) < SCHEDULE_BATCH:
                return requested


def recover_stalled(session_factory: Callable[[], Session], stale_after_s: float = STALE_AFTER_S) -> int:
    """Fail the runs whose worker died mid-run (killed, machine lost): their jobs stay "doing" and
    would hold the probe's lock for ever. A job is stalled when its worker no longer exists (other
    workers prune a silent one) or has not sent a heartbeat for stale_after_s (workers send one
    every 10 s, also while a probe runs). Returns the runs failed; the next run starts afresh.
    """
    with session_factory() as session:
        stalled = session.execute(text(
            "SELECT j.id, j.args->>'run_id' FROM procrastinate_jobs j "
            "LEFT JOIN procrastinate_workers w ON w.id = j.worker_id "
            "WHERE j.task_name = :task AND j.status = 'doing' "
            "AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => :stale)) "
            "FOR UPDATE OF j SKIP LOCKED"), {"task": RUN_PROBE, "stale": stale_after_s}).all()
        for job_id, run_id in stalled:
            session.execute(text("SELECT procrastinate_finish_job_v1(:id, 'failed', false)"), {"id": job_id})
            run = session.get(ProbeRun, uuid.UUID(run_id), with_for_update=True) if run_id else None
            if run is None or run.status not in (QUEUED, RUNNING):
                continue
            message = "The worker running this run stopped before it finished; the next run starts afresh."
            run.status, run.error, run.finished_at = FAILED, message, datetime.now(UTC)
            probe = session.get(Probe, run.probe_id, with_for_update=True)
            if probe is not None:
                probe.status, probe.last_error = ProbeStatus.FAILED, message
            log.warning("probe run %s (job %s) stalled: its worker is gone; marked failed", run_id, job_id)
        session.commit()
        return len(stalled)


# --- executing a run ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Loaded:
    probe_id: uuid.UUID
    name: str
    kind: str
    config: Mapping[str, Any]
    schedule: str | None
    checks: list[probes.CheckSpec]
    previous_status: ProbeStatus


def _jsonable(value: Any) -> Any:
    """What a kind observed, as JSON (Decimal, datetime, UUID become text)."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=str))


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _start(session_factory: Callable[[], Session], run_id: uuid.UUID, now: datetime) -> _Loaded | None:
    with session_factory() as session:
        run = session.scalars(select(ProbeRun).where(ProbeRun.id == run_id).with_for_update()).first()
        if run is None:
            log.warning("probe run %s does not exist (deleted?): nothing to do", run_id)
            return None
        if run.status not in (QUEUED, RUNNING):
            log.warning("probe run %s is already %s: not run again", run_id, run.status)
            return None
        if run.status == RUNNING or run.checks_done:
            # A worker died in the middle of this run: start it over, without its partial results.
            session.execute(delete(Result).where(Result.run_id == run_id))
        probe = session.scalars(select(Probe).where(Probe.id == run.probe_id).with_for_update()).one()
        checks = session.execute(
            select(Check.id, Check.name, Check.parameters)
            .where(Check.probe_id == probe.id, Check.status == CheckStatus.ACTIVE)
            .order_by(Check.id)
        ).all()
        controls: dict[uuid.UUID, list[uuid.UUID]] = {}
        for check_id, control_id in session.execute(
            select(CheckControl.check_id, CheckControl.control_id)
            .join(Check, Check.id == CheckControl.check_id)
            .where(Check.probe_id == probe.id, Check.status == CheckStatus.ACTIVE)
            .order_by(CheckControl.check_id, CheckControl.control_id)
        ):
            controls.setdefault(check_id, []).append(control_id)
        loaded = _Loaded(
            probe_id=probe.id, name=probe.name, kind=probe.kind, config=dict(probe.config or {}),
            schedule=probe.schedule, previous_status=ProbeStatus(probe.status),
            checks=[probes.CheckSpec(id=c.id, name=c.name, parameters=dict(c.parameters or {}),
                                     control_ids=tuple(controls.get(c.id, ()))) for c in checks],
        )
        run.status = RUNNING
        run.started_at = now
        run.finished_at = None
        run.attempts = (run.attempts or 0) + 1
        run.checks_total = len(loaded.checks)
        run.checks_done = 0
        run.counts = {}
        run.error = None
        probe.status = ProbeStatus.RUNNING
        session.commit()
        return loaded


class _Timeout(Exception):
    pass


def _run_kind(session_factory: Callable[[], Session], storage: Any, settings: Any, loaded: _Loaded,
              now: datetime, timeout_s: float) -> list[probes.Observation]:
    """The kind's observations; raises what the kind raised, or _Timeout after timeout_s.

    The kind runs in a daemon thread with a session of its own: after the timeout the run stops
    waiting (a kind stuck in I/O cannot be interrupted from outside) and the thread's session is
    closed whenever the kind returns. Kinds get ctx.timeout_s to bound their own I/O.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            kind = probes.get(loaded.kind)
            with session_factory() as kind_session:
                ctx = probes.RunContext(session=kind_session, storage=storage, settings=settings, now=now,
                                        probe_id=loaded.probe_id, probe_name=loaded.name, timeout_s=timeout_s)
                try:
                    outcome["observations"] = list(kind.run(ctx, loaded.config, list(loaded.checks)))
                finally:
                    kind_session.rollback()  # a kind reads; it never writes
        except BaseException as exc:  # noqa: BLE001  (handed to the run, which records it)
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"probe-{loaded.probe_id}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise _Timeout
    if "error" in outcome:
        raise outcome["error"]
    return outcome["observations"]  # type: ignore[no-any-return]


def _error_observations(checks: Sequence[probes.CheckSpec], message: str) -> list[probes.Observation]:
    return [probes.Observation(check_id=c.id, outcome=ResultOutcome.ERROR, message=message) for c in checks]


def _complete(checks: Sequence[probes.CheckSpec], observations: list[probes.Observation],
              kind: str) -> list[probes.Observation]:
    """One observation per check, in the checks' order: a check the kind left out is an error."""
    by_check: dict[uuid.UUID, probes.Observation] = {}
    for obs in observations:
        by_check.setdefault(obs.check_id, obs)
    unknown = set(by_check) - {c.id for c in checks}
    if unknown:
        log.warning("probe kind %s returned results for %d unknown checks: ignored", kind, len(unknown))
    return [by_check.get(c.id) or probes.Observation(
        check_id=c.id, outcome=ResultOutcome.ERROR, message="The probe returned no result for this check.")
        for c in checks]


def _write(session_factory: Callable[[], Session], run_id: uuid.UUID,
           observations: list[probes.Observation], now: datetime) -> Counter[str]:
    counts: Counter[str] = Counter()
    for start in range(0, len(observations), BATCH):
        batch = observations[start:start + BATCH]
        rows = []
        for obs in batch:
            outcome = ResultOutcome(obs.outcome)
            rows.append({"check_id": obs.check_id, "run_id": run_id, "outcome": outcome,
                         "observed": _jsonable(obs.observed), "expected": _jsonable(obs.expected),
                         "message": _clip(obs.message, MESSAGE_MAX), "resource": _clip(obs.resource, RESOURCE_MAX)})
            counts[outcome.value] += 1
        with session_factory() as session:
            session.execute(insert(Result), rows)
            session.execute(update(Check), [
                {"id": r["check_id"], "last_outcome": r["outcome"], "last_result_at": now, "last_message": r["message"]}
                for r in rows])
            # Failing checks raise (or repeat) their alert, passing ones clear it: grouped per batch.
            alerts.on_check_results(session, [(r["check_id"], r["outcome"], r["message"]) for r in rows])
            scoring.on_checks_changed(session, [r["check_id"] for r in rows])
            session.execute(update(ProbeRun).where(ProbeRun.id == run_id)
                            .values(checks_done=start + len(batch), counts=dict(counts)))
            session.commit()
    return counts


def _finish(session_factory: Callable[[], Session], loaded: _Loaded, run_id: uuid.UUID, *, status: str,
            error: str | None, counts: Mapping[str, int] | None, started: datetime) -> None:
    finished = datetime.now(UTC)
    with session_factory() as session:
        run = session.get(ProbeRun, run_id, with_for_update=True)
        probe = session.get(Probe, loaded.probe_id, with_for_update=True)
        if run is None or probe is None:
            return
        run.status = status
        run.finished_at = finished
        run.error = _clip(error, MESSAGE_MAX)
        if counts is not None:
            run.counts = dict(counts)
            run.checks_done = sum(counts.values())
        probe.status = ProbeStatus.SUCCEEDED if status == SUCCEEDED else ProbeStatus.FAILED
        probe.last_run_at = started
        probe.last_error = run.error
        if probe.schedule:
            try:
                probe.next_run_at = next_run(probe.schedule, finished)
            except (ValueError, KeyError, CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError):
                probe.next_run_at = None
        session.commit()


def _back_to_queue(session_factory: Callable[[], Session], loaded: _Loaded, run_id: uuid.UUID, error: str) -> None:
    """A transient failure with retries left: the run waits in the queue again (a request now
    joins it), the probe shows what it showed before this attempt."""
    with session_factory() as session:
        run = session.get(ProbeRun, run_id, with_for_update=True)
        probe = session.get(Probe, loaded.probe_id, with_for_update=True)
        if run is not None:
            run.status = QUEUED
            run.error = _clip(f"Attempt {run.attempts} failed, retrying: {error}", MESSAGE_MAX)
        if probe is not None:
            probe.status = loaded.previous_status
        session.commit()


def execute_run(session_factory: Callable[[], Session], storage: Any, settings: Any, run_id: uuid.UUID, *,
                final_attempt: bool = True) -> str | None:
    """Run one queued probe run to its end; returns its final status (None when there was nothing
    to run). Raises TransientProbeError when the kind failed transiently and `final_attempt` is
    False, after putting the run back in the queue: the task's RetryStrategy runs it again."""
    started = datetime.now(UTC)
    loaded = _start(session_factory, run_id, started)
    if loaded is None:
        return None
    timeout_s = float(getattr(settings, "probe_run_timeout_s", 120))
    status, error = SUCCEEDED, None
    try:
        observations = _complete(loaded.checks, _run_kind(session_factory, storage, settings, loaded, started,
                                                          timeout_s), loaded.kind)
    except _Timeout:
        status, error = TIMED_OUT, f"The probe did not finish within {timeout_s:g} s (PROBE_RUN_TIMEOUT_S)."
        observations = _error_observations(loaded.checks, error)
    except probes.TransientProbeError as exc:
        if not final_attempt:
            _back_to_queue(session_factory, loaded, run_id, str(exc))
            raise
        status, error = FAILED, str(exc) or type(exc).__name__
        observations = _error_observations(loaded.checks, error)
    except (probes.ProbeError, probes.ConfigError) as exc:
        status, error = FAILED, str(exc) or type(exc).__name__
        observations = _error_observations(loaded.checks, error)
    except Exception as exc:  # a bug in a kind: the run records it, the worker goes on
        log.exception("probe kind %s failed on probe %s", loaded.kind, loaded.probe_id)
        status, error = FAILED, f"The probe kind {loaded.kind!r} failed unexpectedly: {type(exc).__name__}: {exc}"
        observations = _error_observations(loaded.checks, error)

    try:
        counts = _write(session_factory, run_id, observations, started)
    except Exception as exc:
        log.exception("results of probe run %s could not be written", run_id)
        _finish(session_factory, loaded, run_id, status=FAILED, counts=None, started=started,
                error=f"The results could not be saved: {type(exc).__name__}: {exc}")
        raise
    _finish(session_factory, loaded, run_id, status=status, error=error, counts=counts, started=started)
    return status
