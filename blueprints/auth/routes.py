"""Sign in and out, the second factor, and the signed-in user's own password.

The browser's signed cookie holds only a random session id (`sid`); who is signed in, and whether
that is still true, is read from PostgreSQL on every request (governance/services/sessions.py), so
logout, deactivation, a role or password change and "sign out everywhere" end a session on its
very next request in every worker.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from blueprints.access import public, requires
from blueprints.auth.forms import ChangePasswordForm, LoginForm, MfaEnrolForm, MfaVerifyForm
from blueprints.web import render
from extensions import db, login_manager
from governance.models.identity import User, UserSession
from governance.services import audit, identity, mfa, sessions, throttle

bp = Blueprint("auth", __name__)

login_manager.login_view = "auth.login"
login_manager.login_message = "Please sign in to see that page."
login_manager.login_message_category = "info"
# The server-side session is the protection; Flask-Login's IP/user-agent fingerprint would only
# rewrite the cookie on every request.
login_manager.session_protection = None

SID = "sid"
NEXT_AFTER_MFA = "next_after_mfa"
# Reachable while a session still owes its second factor (enforced in one place: require_mfa).
MFA_PENDING_ENDPOINTS = frozenset({"static", "auth.login", "auth.logout", "auth.mfa_verify", "auth.mfa_setup"})
# Flask-Login's own keys: the sid is the only identity the cookie carries.
_FLASK_LOGIN_KEYS = ("_user_id", "_fresh", "_id", "_remember", "_remember_seconds")


def _settings() -> Any:
    return current_app.config["SETTINGS"]


def _lifetimes() -> sessions.Lifetimes:
    return sessions.Lifetimes.from_settings(_settings())


def _limits() -> throttle.Limits:
    return throttle.Limits.from_settings(_settings())


def _mfa_roles() -> tuple[str, ...]:
    return tuple(_settings().mfa_required_roles)


@login_manager.request_loader
def load_user_from_session(_request: Any) -> User | None:
    """The user of the live server-side session named by the cookie's sid, or None (anonymous)."""
    token = session.get(SID)
    if not token:
        return None
    row = sessions.load(db.session, str(token), _lifetimes())
    if row is None:
        session.pop(SID, None)
        return None
    if row in db.session.dirty:  # last_seen_at moved (at most once a minute)
        db.session.commit()
    g.user_session = row
    return row.user


def current_session_row() -> UserSession | None:
    if not current_user.is_authenticated:
        return None
    row: UserSession | None = g.get("user_session")
    return row


def _mfa_pending() -> bool:
    row = current_session_row()
    return row is not None and row.mfa_verified_at is None and mfa.required_for(current_user, _mfa_roles())


@bp.app_context_processor
def mfa_state() -> dict[str, Any]:
    """Templates offer no page a session that still owes its second factor could not open."""
    return {"mfa_pending": _mfa_pending}


@bp.before_app_request
def require_mfa() -> Response | None:
    """A session that owes its second factor reaches only the MFA pages and logout."""
    if request.endpoint is None or request.endpoint in MFA_PENDING_ENDPOINTS:
        return None
    if not _mfa_pending():
        return None
    target = "auth.mfa_verify" if mfa.is_enrolled(current_user) else "auth.mfa_setup"
    return redirect(url_for(target))


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if target:
        parts = urlsplit(target)
        if (not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//")
                and "\\" not in target):
            return target
    return url_for("main.dashboard")


def _start_session(user: User, *, mfa_verified: bool) -> UserSession:
    """A brand-new server session and session id for this browser (flushed; caller commits)."""
    token, row = sessions.start(db.session, user, _lifetimes(), ip=request.remote_addr,
                                user_agent=request.user_agent.string, mfa_verified=mfa_verified)
    session[SID] = token
    login_user(user)
    for key in _FLASK_LOGIN_KEYS:
        session.pop(key, None)
    g.user_session = row
    return row


def _rotate_session(user: User, reason: str, *, mfa_verified: bool) -> UserSession:
    """Replace the current session with a new one (new id), e.g. after the second factor."""
    old = current_session_row()
    if old is not None:
        sessions.revoke(db.session, old.id, reason)
    keep = {k: session[k] for k in (NEXT_AFTER_MFA,) if k in session}
    session.clear()
    session.update(keep)
    return _start_session(user, mfa_verified=mfa_verified)


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Response:
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
        return render("auth/login.html", form=form)
    if not form.validate_on_submit():
        return render("auth/login.html", form=form, status=422)
    result = identity.attempt_login(db.session, form.email.data or "", form.password.data or "",
                                    ip=request.remote_addr, limits=_limits(), mfa_required_roles=_mfa_roles())
    if result.lockout is not None:
        db.session.commit()
        form.form_errors.append(result.lockout.message)
        response = render("auth/login.html", form=form, status=429)
        response.headers["Retry-After"] = str(result.lockout.minutes_left * 60)
        return response
    if result.user is None:
        db.session.commit()
        form.password.errors = [identity.GENERIC_LOGIN_ERROR]
        return render("auth/login.html", form=form, status=422)
    user = result.user
    previous = session.get(SID)
    if previous:  # signing in again in the same browser: the earlier session ends, not lingers
        sessions.revoke_token(db.session, str(previous), "replaced")
    session.clear()  # nothing of the anonymous session survives; a new session id follows
    _start_session(user, mfa_verified=False)
    db.session.commit()
    if result.mfa_pending:
        session[NEXT_AFTER_MFA] = _safe_next(form.next.data)
        target = "auth.mfa_verify" if mfa.is_enrolled(user) else "auth.mfa_setup"
        return redirect(url_for(target), code=303)
    return redirect(_safe_next(form.next.data), code=303)


@bp.route("/login/mfa", methods=["GET", "POST"])
@public
def mfa_verify() -> Response:
    """The second step of signing in: a TOTP code or a recovery code."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"), code=303)
    if not _mfa_pending():
        return redirect(url_for("main.dashboard"), code=303)
    user: User = current_user._get_current_object()  # type: ignore[attr-defined]
    if not mfa.is_enrolled(user):
        return redirect(url_for("auth.mfa_setup"), code=303)
    form = MfaVerifyForm()
    if request.method == "GET":
        return render("auth/mfa_verify.html", form=form)
    if not form.validate_on_submit():
        return render("auth/mfa_verify.html", form=form, status=422)
    lock = throttle.lockout(db.session, user.email, request.remote_addr, _limits())
    if lock is not None:
        audit.record(db.session, mfa.VERIFY_ACTION, object_type="user", object_id=user.id,
                     outcome="denied", details={"reason": "locked", "scope": lock.scope})
        db.session.commit()
        form.form_errors.append(lock.message)
        return render("auth/mfa_verify.html", form=form, status=429)
    method = mfa.verify(db.session, user, form.code.data or "", current_session_row())
    if method is None:
        throttle.record(db.session, user.email, request.remote_addr, succeeded=False)
        db.session.commit()
        form.code.errors = ["That code is not right (or was used already)."]
        return render("auth/mfa_verify.html", form=form, status=422)
    identity.complete_second_factor(db.session, user, request.remote_addr)
    _rotate_session(user, "mfa_verified", mfa_verified=True)
    db.session.commit()
    if method == "recovery_code":
        left = mfa.remaining_recovery_codes(db.session, user)
        flash(f"You used a recovery code; {left} left. Each works only once.", "warning")
    return redirect(_safe_next(session.pop(NEXT_AFTER_MFA, None)), code=303)


@bp.route("/account/mfa/setup", methods=["GET", "POST"])
@requires("account", "update")
def mfa_setup() -> Response:
    """Enrol in TOTP: scan the QR code (or type the secret), confirm with a code, get recovery codes."""
    user: User = current_user._get_current_object()  # type: ignore[attr-defined]
    if mfa.is_enrolled(user):
        return render("auth/mfa_enrolled.html", remaining=mfa.remaining_recovery_codes(db.session, user))
    form = MfaEnrolForm()
    secret = mfa.begin_enrolment(db.session, user)
    db.session.commit()
    uri = mfa.provisioning_uri(user)
    page: dict[str, Any] = {"form": form, "secret": secret, "qr_svg": mfa.qr_svg(uri), "required": _mfa_pending()}
    if request.method == "GET":
        return render("auth/mfa_enrol.html", **page)
    if not form.validate_on_submit():
        return render("auth/mfa_enrol.html", status=422, **page)
    was_pending = _mfa_pending()
    if was_pending:
        lock = throttle.lockout(db.session, user.email, request.remote_addr, _limits())
        if lock is not None:
            db.session.commit()
            form.form_errors.append(lock.message)
            return render("auth/mfa_enrol.html", status=429, **page)
    codes = mfa.confirm_enrolment(db.session, user, form.code.data or "")
    if codes is None:
        if was_pending:
            throttle.record(db.session, user.email, request.remote_addr, succeeded=False)
        db.session.commit()
        form.code.errors = ["That code is not right. Check the time on your phone and try the next code."]
        return render("auth/mfa_enrol.html", status=422, **page)
    if was_pending:
        identity.complete_second_factor(db.session, user, request.remote_addr)
    _rotate_session(user, "mfa_enrolled", mfa_verified=True)
    db.session.commit()
    # The codes exist in clear only in this response: never stored, never cached.
    response = render("auth/recovery_codes.html", codes=codes,
                      next_url=_safe_next(session.pop(NEXT_AFTER_MFA, None)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/account/password", methods=["GET", "POST"])
@requires("account", "update")
def change_password() -> Response:
    user: User = current_user._get_current_object()  # type: ignore[attr-defined]
    form = ChangePasswordForm()
    if request.method == "GET":
        return render("auth/change_password.html", form=form)
    if not form.validate_on_submit():
        return render("auth/change_password.html", form=form, status=422)
    row = current_session_row()
    mfa_verified = row is not None and row.mfa_verified_at is not None
    try:
        identity.change_password(db.session, user, current_password=form.current_password.data or "",
                                 new_password=form.new_password.data or "", ip=request.remote_addr,
                                 limits=_limits())
    except identity.IdentityError as exc:
        db.session.commit()  # the refusal's audit entry and attempt record
        getattr(form, exc.field, form.new_password).errors = [exc.message]
        return render("auth/change_password.html", form=form, status=422)
    # Every session of the user ended with the change; this browser continues in a new one.
    session.clear()
    _start_session(user, mfa_verified=mfa_verified)
    db.session.commit()
    flash("Your password is changed. Any other browser signed in as you was signed out.", "success")
    return redirect(url_for("main.dashboard"), code=303)


@bp.route("/logout", methods=["POST"])
@requires("session", "delete")
def logout() -> Response:
    row = current_session_row()
    if row is not None:
        sessions.revoke(db.session, row.id, "logout")
    audit.record(db.session, "auth.logout", object_type="user", object_id=current_user.id)
    db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"), code=303)
