"""Scores: hand-computed cases of the formula, the incremental upkeep against a full recompute after
seeded random sequences of changes, and two concurrent workers on one framework losing nothing."""

from __future__ import annotations

import random
import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from extensions import db
from governance.models.enums import CheckStatus, ControlStatus, ResultOutcome, ScoreScope
from governance.models.frameworks import Control, Framework
from governance.models.probes import Check, CheckControl, Probe
from governance.models.scoring import CurrentScore, Score
from governance.services import scoring

C, P, N, E, NA = (ResultOutcome.COMPLIANT, ResultOutcome.PARTIAL, ResultOutcome.NON_COMPLIANT,
                  ResultOutcome.ERROR, ResultOutcome.NOT_APPLICABLE)


class World:
    """Frameworks, controls and checks built directly (the services that create them are tested elsewhere)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.probe = Probe(name=f"probe {uuid.uuid4().hex[:8]}", kind="manual_attestation")
        session.add(self.probe)
        session.flush()

    def framework(self, title: str = "FW") -> Framework:
        fw = Framework(title=f"{title} {uuid.uuid4().hex[:6]}", version="1")
        self.session.add(fw)
        self.session.flush()
        return fw

    def control(self, fw: Framework, *, weight: str = "1", owner: Any = None, assessable: bool = True) -> Control:
        control = Control(framework_id=fw.id, ref_id=uuid.uuid4().hex[:8], title="c", weight=Decimal(weight),
                          assessable=assessable, owner_id=owner.id if owner is not None else None)
        self.session.add(control)
        self.session.flush()
        return control

    def check(self, *controls: Control, outcome: ResultOutcome | None = None) -> Check:
        check = Check(probe_id=self.probe.id, control_id=controls[0].id, name=uuid.uuid4().hex,
                      last_outcome=outcome)
        self.session.add(check)
        self.session.flush()
        for control in controls:
            self.session.add(CheckControl(check_id=check.id, control_id=control.id))
        self.session.flush()
        return check

    def set(self, check: Check, outcome: ResultOutcome | None) -> None:
        check.last_outcome = outcome
        self.session.flush()
        scoring.on_checks_changed(self.session, [check.id])


def current(session: Session, **subject: uuid.UUID) -> CurrentScore:
    (column, value), = subject.items()
    row = session.execute(select(CurrentScore).where(getattr(CurrentScore, column) == value)
                          .execution_options(populate_existing=True)).scalar_one()
    return row


@pytest.fixture
def world(db_session: Any) -> World:
    return World(db_session())


def test_weighted_average_of_controls_with_partial_and_excluded_outcomes(world: World) -> None:
    fw = world.framework()
    heavy, light, half, only_error, _no_checks = (world.control(fw, weight=w) for w in ("3", "1", "2", "1", "1"))
    checks = [world.check(heavy, outcome=C), world.check(light, outcome=N), world.check(half, outcome=P),
              world.check(half, outcome=NA), world.check(only_error, outcome=E)]
    scoring.on_checks_changed(world.session, [c.id for c in checks])

    score = current(world.session, framework_id=fw.id)
    # (3*1 + 1*0 + 2*0.5) / (3 + 1 + 2) = 4/6
    assert score.value == Decimal("66.67")
    assert (score.weight_counted, score.weighted_points) == (Decimal(6), Decimal(4))
    assert (score.compliant, score.partial, score.non_compliant) == (1, 1, 1)
    # only_error and no_checks have no counted outcome: unassessed, not 0.
    assert score.unassessed == 2
    assert (score.error, score.not_applicable) == (1, 1)
    assert current(world.session, control_id=half.id).value == Decimal("50.00")
    assert current(world.session, control_id=only_error.id).value is None
    history = world.session.execute(select(Score).where(Score.framework_id == fw.id)).scalars().all()
    assert [h.value for h in history] == [Decimal("66.67")]


def test_several_checks_on_one_control_score_their_mean(world: World) -> None:
    fw = world.framework()
    control = world.control(fw, weight="2")
    checks = [world.check(control, outcome=o) for o in (C, C, N, E)]
    scoring.on_checks_changed(world.session, [c.id for c in checks])
    # mean of 1, 1, 0 (error left out) = 2/3
    assert current(world.session, control_id=control.id).value == Decimal("66.67")
    fw_score = current(world.session, framework_id=fw.id)
    assert fw_score.value == Decimal("66.65")  # weight 2 * 0.6667 = 1.333 (three decimals) over 2
    assert (fw_score.partial, fw_score.error) == (1, 1)


def test_a_check_on_controls_of_two_frameworks_moves_both(world: World) -> None:
    fw_a, fw_b = world.framework("A"), world.framework("B")
    a, b = world.control(fw_a), world.control(fw_b)
    other_b = world.control(fw_b)
    shared = world.check(a, b, outcome=C)
    world.check(other_b, outcome=N)
    scoring.on_checks_changed(world.session, [shared.id])
    assert current(world.session, framework_id=fw_a.id).value == Decimal("100.00")
    # fw_b's row was created from all its controls, so other_b's non-compliance is in it.
    assert current(world.session, framework_id=fw_b.id).value == Decimal("50.00")

    world.set(shared, N)
    assert current(world.session, framework_id=fw_a.id).value == Decimal("0.00")
    assert current(world.session, framework_id=fw_b.id).value == Decimal("0.00")


def test_owner_scores_follow_owned_controls_and_owner_changes(world: World, make_user: Any) -> None:
    alice, bob = make_user("engineer"), make_user("engineer")
    fw = world.framework()
    mine = world.control(fw, owner=alice, weight="1")
    theirs = world.control(fw, owner=bob, weight="1")
    c1, c2 = world.check(mine, outcome=C), world.check(theirs, outcome=P)
    scoring.on_checks_changed(world.session, [c1.id, c2.id])
    assert current(world.session, user_id=alice.id).value == Decimal("100.00")
    assert current(world.session, user_id=bob.id).value == Decimal("50.00")
    assert current(world.session, framework_id=fw.id).value == Decimal("75.00")

    mine.owner_id = bob.id
    world.session.flush()
    scoring.on_control_changed(world.session, mine.id)
    alice_score = current(world.session, user_id=alice.id)
    assert alice_score.value is None and alice_score.weight_counted == 0 and alice_score.compliant == 0
    assert current(world.session, user_id=bob.id).value == Decimal("75.00")


def test_weight_assessable_and_deletion_changes(world: World) -> None:
    fw = world.framework()
    good, bad = world.control(fw), world.control(fw)
    checks = [world.check(good, outcome=C), world.check(bad, outcome=N)]
    scoring.on_checks_changed(world.session, [c.id for c in checks])
    assert current(world.session, framework_id=fw.id).value == Decimal("50.00")

    bad.weight = Decimal(3)
    world.session.flush()
    scoring.on_control_changed(world.session, bad.id)
    assert current(world.session, framework_id=fw.id).value == Decimal("25.00")

    bad.assessable = False
    world.session.flush()
    scoring.on_control_changed(world.session, bad.id)
    score = current(world.session, framework_id=fw.id)
    assert score.value == Decimal("100.00") and score.non_compliant == 0

    bad.assessable = True
    bad.deleted_at = func.now()
    world.session.flush()
    scoring.on_control_changed(world.session, bad.id)
    assert current(world.session, framework_id=fw.id).value == Decimal("100.00")

    bad.deleted_at = None
    world.session.flush()
    scoring.on_control_changed(world.session, bad.id)
    assert current(world.session, framework_id=fw.id).value == Decimal("25.00")

    good.status = ControlStatus.WITHDRAWN
    world.session.flush()
    scoring.on_control_changed(world.session, good.id)
    score = current(world.session, framework_id=fw.id)
    assert score.value == Decimal("0.00") and (score.compliant, score.non_compliant) == (0, 1)
    values = world.session.execute(select(Score.value).where(Score.framework_id == fw.id)
                                   .order_by(Score.created_at, Score.value)).scalars().all()
    assert sorted(values) == sorted([Decimal("50.00"), Decimal("25.00"), Decimal("100.00"),
                                     Decimal("25.00"), Decimal("0.00")])


def test_disabled_checks_and_clearing_outcomes_leave_controls_unassessed(world: World) -> None:
    fw = world.framework()
    control = world.control(fw)
    check = world.check(control, outcome=C)
    scoring.on_checks_changed(world.session, [check.id])
    check.status = CheckStatus.DISABLED
    world.session.flush()
    scoring.on_checks_changed(world.session, [check.id])
    score = current(world.session, framework_id=fw.id)
    assert score.value is None and score.unassessed == 1 and score.compliant == 0


# ---- incremental == full recompute -------------------------------------------------------------

FIELDS = ("value", "weight_counted", "weighted_points", *scoring.COUNTERS)


def snapshot(session: Session, scope: ScoreScope) -> dict[uuid.UUID, tuple[Any, ...]]:
    column = {ScoreScope.FRAMEWORK: CurrentScore.framework_id, ScoreScope.USER: CurrentScore.user_id,
              ScoreScope.CONTROL: CurrentScore.control_id}[scope]
    rows = session.execute(select(column, *(getattr(CurrentScore, f) for f in FIELDS))
                           .where(CurrentScore.scope == scope).execution_options(populate_existing=True)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_incremental_equals_full_recompute_after_random_changes(world: World, make_user: Any, seed: int) -> None:
    rng = random.Random(seed)
    users = [make_user("engineer") for _ in range(3)]
    frameworks = [world.framework(f"F{i}") for i in range(3)]
    controls = [world.control(rng.choice(frameworks), weight=rng.choice(["0", "0.5", "1", "2", "3.25"]),
                              owner=rng.choice([None, *users])) for _ in range(14)]
    checks = [world.check(*rng.sample(controls, rng.choice([1, 1, 2, 3]))) for _ in range(20)]
    outcomes = [None, *ResultOutcome]
    for _ in range(120):
        action = rng.random()
        if action < 0.55:
            batch = rng.sample(checks, rng.randint(1, 4))
            for check in batch:
                check.last_outcome = rng.choice(outcomes)
            world.session.flush()
            scoring.on_checks_changed(world.session, [c.id for c in batch])
        elif action < 0.62:
            check = rng.choice(checks)
            check.status = rng.choice(list(CheckStatus))
            world.session.flush()
            scoring.on_checks_changed(world.session, [check.id])
        else:
            control = rng.choice(controls)
            change = rng.choice(["weight", "assessable", "owner", "deleted", "status"])
            if change == "weight":
                control.weight = Decimal(rng.choice(["0", "1", "1.5", "4"]))
            elif change == "assessable":
                control.assessable = not control.assessable
            elif change == "owner":
                control.owner_id = rng.choice([None, *[u.id for u in users]])
            elif change == "deleted":
                control.deleted_at = None if control.deleted_at is not None else func.now()
            else:
                control.status = rng.choice(list(ControlStatus))
            world.session.flush()
            scoring.on_control_changed(world.session, control.id)
    # Touch every framework and user once so each has a row (rows are created on first use).
    scoring.on_controls_changed(world.session, [c.id for c in controls])

    incremental = {scope: snapshot(world.session, scope) for scope in ScoreScope}
    assert incremental[ScoreScope.FRAMEWORK] and incremental[ScoreScope.USER]
    history_count = select(func.count()).select_from(Score).where(
        Score.framework_id.in_([f.id for f in frameworks]))
    history_before = world.session.scalar(history_count)
    scoring.rebuild_all(world.session)
    full = {scope: snapshot(world.session, scope) for scope in ScoreScope}
    for scope in ScoreScope:
        assert set(incremental[scope]) <= set(full[scope]), scope
        assert incremental[scope] == {k: v for k, v in full[scope].items() if k in incremental[scope]}, scope
    # The rebuild found nothing to repair, so it appended no history either.
    assert world.session.scalar(history_count) == history_before


def test_rebuild_all_repairs_rows_and_records_history(world: World) -> None:
    fw = world.framework()
    control = world.control(fw)
    world.check(control, outcome=P)  # no hook called: the rows do not know yet
    result = scoring.rebuild_all(world.session)
    assert result["controls"] >= 1
    assert current(world.session, framework_id=fw.id).value == Decimal("50.00")
    assert world.session.scalar(select(Score.value).where(Score.framework_id == fw.id)) == Decimal("50.00")
    scoring.rebuild_all(world.session)
    assert world.session.scalar(select(func.count()).select_from(Score).where(Score.framework_id == fw.id)) == 1


# ---- concurrency: real transactions on two connections ------------------------------------------

def test_two_workers_on_one_framework_lose_no_update(app: Any, clean_database: None) -> None:
    with app.app_context():
        with Session(db.engine) as setup:
            world = World(setup)
            fw = world.framework()
            first, second = world.control(fw), world.control(fw)
            check_a, check_b = world.check(first), world.check(second)
            scoring.on_checks_changed(setup, [check_a.id, check_b.id])
            setup.commit()
            ids = (fw.id, check_a.id, check_b.id)
        fw_id, a_id, b_id = ids

        holding = threading.Event()
        errors: list[BaseException] = []

        def worker_b() -> None:
            try:
                with app.app_context(), Session(db.engine) as session:
                    session.execute(text("SET lock_timeout = '20s'"))
                    holding.wait(10)
                    session.get(Check, b_id).last_outcome = ResultOutcome.NON_COMPLIANT  # type: ignore[union-attr]
                    session.flush()
                    scoring.on_checks_changed(session, [b_id])  # waits for worker A's lock
                    session.commit()
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        with Session(db.engine) as session_a:
            session_a.get(Check, a_id).last_outcome = ResultOutcome.COMPLIANT  # type: ignore[union-attr]
            session_a.flush()
            scoring.on_checks_changed(session_a, [a_id])
            thread = threading.Thread(target=worker_b)
            thread.start()
            holding.set()
            thread.join(1.0)
            assert thread.is_alive(), "worker B should wait for the framework row worker A holds"
            session_a.commit()
        thread.join(20)
        assert not errors, errors

        with Session(db.engine) as check_session:
            score = check_session.execute(select(CurrentScore).where(CurrentScore.framework_id == fw_id)).scalar_one()
            assert (score.compliant, score.non_compliant, score.unassessed) == (1, 1, 0)
            assert score.value == Decimal("50.00")


# ---- the hooks in the control service and the repair CLI -----------------------------------------

def test_the_control_service_moves_scores_on_edit_delete_and_restore(world: World) -> None:
    from governance.services import controls

    fw = world.framework()
    parent, other = world.control(fw), world.control(fw)
    child = world.control(fw)
    child.parent_id = parent.id
    checks = [world.check(parent, outcome=N), world.check(child, outcome=N), world.check(other, outcome=C)]
    scoring.on_checks_changed(world.session, [c.id for c in checks])
    assert current(world.session, framework_id=fw.id).value == Decimal("33.33")

    controls.update_control(world.session, other, weight="4")
    assert current(world.session, framework_id=fw.id).value == Decimal("66.67")  # 4 / 6
    controls.soft_delete_control(world.session, parent)  # takes its child with it
    assert current(world.session, framework_id=fw.id).value == Decimal("100.00")
    controls.restore_control(world.session, parent)
    assert current(world.session, framework_id=fw.id).value == Decimal("66.67")
    controls.update_control(world.session, other, assessable=False)
    score = current(world.session, framework_id=fw.id)
    assert score.value == Decimal("0.00") and score.compliant == 0 and score.non_compliant == 2


def test_flask_scores_rebuild(app: Any, world: World) -> None:
    fw = world.framework()
    world.check(world.control(fw), outcome=C)
    world.session.commit()
    result = app.test_cli_runner().invoke(args=["scores", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "framework" in result.output
    assert current(world.session, framework_id=fw.id).value == Decimal("100.00")
