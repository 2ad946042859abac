"""Sichtung: the evidence office's web console (``bodycam-evidence serve``).

Server-rendered Flask pages; nothing visible without a login; every form carries a CSRF
token (Flask-WTF); every action is checked against the user's role on the server and
recorded in the audit trail with the user. Footage is decrypted on this machine with the
office's identity and remuxed (not re-encoded) to MP4 for the ``<video>`` element, served
with HTTP range requests so it seeks. Bound to 127.0.0.1 by default; put a TLS reverse
proxy in front to serve it further (docs/console.md).

Roles (:mod:`evidence.users`): clerk — review, hold, release, export; supervisor — review,
approve early deletion; officer — own recordings, request their early deletion; dpo — the
audit trail, read-only.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask, abort, g, redirect, render_template, request, send_file, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from evidence import audit, events
from evidence.console.i18n import LANGS, text
from evidence.errors import LockedError, StoreUnavailable
from evidence.export import export as run_export
from evidence.export import receipts_of, render
from evidence.office import Office, Refused
from evidence.recordings import Recording, index, iso
from evidence.state import HOLD_REASONS, State
from evidence.store import EvidenceStore
from evidence.users import Users
from evidence.verify import verify

LOCAL_PATH = re.compile(r"/(?:[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*)?")
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ROLES_REVIEW = ("clerk", "supervisor", "officer")
FAILS_ALLOWED, FAIL_WINDOW_S = 5, 900
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _lang() -> str:
    """The user's language; also in error pages raised before the request was set up."""
    return g.get("lang") or session.get("lang", "de")


class Throttle:
    """At most ``FAILS_ALLOWED`` failed logins per user id and per address in the window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = self.clock()
        with self._lock:
            for k in keys:
                q = self._fails[k]
                while q and now - q[0] > FAIL_WINDOW_S:
                    q.popleft()
                if len(q) >= FAILS_ALLOWED:
                    return True
        return False

    def fail(self, *keys: str) -> None:
        with self._lock:
            now = self.clock()
            if len(self._fails) > 10_000:  # made-up user ids must not grow this without bound
                for k in [k for k, q in self._fails.items() if not q or now - q[-1] > FAIL_WINDOW_S]:
                    del self._fails[k]
            for k in keys:
                self._fails[k].append(now)

    def clear(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._fails.pop(k, None)


def create_app(store: EvidenceStore, key: Ed25519PrivateKey, identity: bytes, *,
               cache_dir: Path | None = None, secret: bytes | None = None,
               now_us: Callable[[], int] = lambda: time.time_ns() // 1000) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret or secrets.token_bytes(32), SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", WTF_CSRF_TIME_LIMIT=8 * 3600,
                      PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=8), MAX_CONTENT_LENGTH=64 * 1024)
    CSRFProtect(app)
    office = Office(store, key, now_us)
    office.check_key()
    users = Users(store)
    throttle = Throttle()
    cache = Path(cache_dir or tempfile.mkdtemp(prefix="bodycam-console-"))
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    render_lock = threading.Lock()
    app.extensions["bodycam"] = {"office": office, "cache": cache, "throttle": throttle}

    # ------------------------------------------------------------------ plumbing
    @app.before_request
    def load_user() -> None:
        g.lang = session.get("lang", "de")
        if request.args.get("lang") in LANGS:
            g.lang = session["lang"] = request.args["lang"]
        g.user = session.get("user")
        g.role = session.get("role")
        if g.user is not None:  # a role changed or a user removed takes effect at once
            current = users.get(g.user)
            if current is None or current.role != g.role:
                session.clear()
                g.user = g.role = None

    @app.after_request
    def headers(resp: Any) -> Any:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.context_processor
    def helpers() -> dict[str, Any]:
        return {"t": lambda k, **kw: text(k, _lang(), **kw), "user": g.get("user"), "role": g.get("role"),
                "lang": g.get("lang", "de"), "iso": iso, "reasons": list(HOLD_REASONS)}

    @app.errorhandler(CSRFError)
    def csrf_error(_: Any) -> Any:
        return render_template("message.html", message=text("csrf", _lang())), 400

    @app.errorhandler(403)
    def forbidden(_: Any) -> Any:
        return render_template("message.html", message=text("forbidden", _lang())), 403

    @app.errorhandler(404)
    def not_found(_: Any) -> Any:
        return render_template("message.html", message=text("not_found", _lang())), 404

    def login_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(view)
            def inner(*args: Any, **kw: Any) -> Any:
                if g.user is None:
                    return redirect(url_for("login", next=request.path))
                if roles and g.role not in roles:
                    abort(403)
                return view(*args, **kw)
            return inner
        return wrap

    def recording(rid: str) -> tuple[Recording, State]:
        if not SAFE_ID.fullmatch(rid):
            abort(404)
        recs, state = index(store), office.state()
        rec = recs.get(rid)
        if rec is None or (g.role == "officer" and rec.officer_id != g.user):
            abort(404)  # an officer does not learn that others' recordings exist
        return rec, state

    def record(action: str, rec: Recording | None = None, **details: Any) -> None:
        audit.append(store, key, action, by=g.user, device=rec.device_id if rec else None,
                     recording=rec.id if rec else None, details=details, now_us=now_us())

    def drop_cache(rid: str) -> None:
        for p in cache.glob(f"{hashlib.sha256(rid.encode()).hexdigest()[:32]}*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ login
    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = None
        if request.method == "POST":
            uid, pw = request.form.get("user", ""), request.form.get("password", "")
            addr = f"addr:{request.remote_addr}"
            if throttle.blocked(f"user:{uid}", addr):
                return render_template("login.html", error=text("login_throttled", g.lang)), 429
            found = users.check(uid, pw)
            if found is None:
                throttle.fail(f"user:{uid}", addr)
                error = text("login_failed", g.lang)
            else:
                throttle.clear(f"user:{uid}")
                lang = session.get("lang", "de")
                session.clear()
                session.update(user=found.id, role=found.role, lang=lang, seen=[])
                session.permanent = True
                target = request.args.get("next", "")
                return redirect(target if LOCAL_PATH.fullmatch(target) else "/")  # never off-site
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        return redirect(url_for("login"))

    # ------------------------------------------------------------------ recordings
    @app.get("/")
    @login_required(*ROLES_REVIEW)
    def recordings() -> Any:
        state = office.state()
        now = now_us()
        f = {k: request.args.get(k, "").strip() for k in ("officer", "device", "date", "held", "due")}
        rows = []
        loaded: dict[str, Any] = {}  # each device's event log read once per page
        for rec in index(store).values():
            if g.role == "officer" and rec.officer_id != g.user:
                continue
            expires = rec.expires_utc_us(state.retention_days)
            days = max(0, int((expires - now) // 86_400_000_000))  # whole days left
            row = {"rec": rec, "deleted": rec.id in state.deleted, "holds": state.holds.get(rec.id, []),
                   "days": days, "markers": None}
            if f["officer"] and rec.officer_id != f["officer"]:
                continue
            if f["device"] and rec.device_id != f["device"]:
                continue
            if f["date"] and iso(rec.start_utc_us)[:10] != f["date"]:
                continue
            if f["held"] in ("yes", "no") and bool(row["holds"]) != (f["held"] == "yes"):
                continue
            if f["due"].isdigit() and (row["holds"] or row["deleted"] or days > int(f["due"])):
                continue
            if rec.device_id not in loaded:
                loaded[rec.device_id] = events.device_events(store, rec.device_id)
            row["markers"] = len(events.for_recording(store, rec, loaded[rec.device_id]).markers)
            rows.append(row)
        return render_template("recordings.html", rows=rows, f=f)

    @app.get("/recordings/<rid>")
    @login_required(*ROLES_REVIEW)
    def recording_page(rid: str) -> Any:
        rec, state = recording(rid)
        record("view", rec, what="page")
        ev = events.for_recording(store, rec)
        check = verify(store, state, rec.id)["recordings"][0]
        flagged = {int(m) for p in check["problems"] for m in re.findall(r"^segments? (\d+)", p)}
        trail = [e for e in audit.entries(store) if e.recording == rec.id]
        receipts = receipts_of(store, rec.device_id)
        return render_template("recording.html", rec=rec, state=state, ev=ev, check=check, trail=trail,
                               receipts=receipts, flagged=flagged, deleted=state.deleted.get(rec.id),
                               holds=state.holds.get(rec.id, []), approvals=state.approvals.get(rec.id, {}),
                               days=max(0, int((rec.expires_utc_us(state.retention_days) - now_us())
                                                // 86_400_000_000)),
                               message=request.args.get("msg"))

    @app.get("/recordings/<rid>/video.mp4")
    @login_required(*ROLES_REVIEW)
    def video(rid: str) -> Any:
        rec, state = recording(rid)
        if rec.id in state.deleted:
            abort(404)
        name = hashlib.sha256(rid.encode()).hexdigest()[:32] + "-" + hashlib.sha256(
            b"".join(s.record for s in rec.segments)).hexdigest()[:16] + ".mp4"
        path = cache / name
        with render_lock:
            if not path.exists():
                tmp = cache / f".{name}.tmp.mp4"
                try:
                    render(store, rec, identity, tmp)
                except Refused:
                    abort(404)
                tmp.replace(path)
        seen = session.get("seen", [])
        if rec.id not in seen:  # once per session and recording, not per range request
            record("view", rec, what="playback")
            session["seen"] = [*seen, rec.id]
        resp = send_file(path, mimetype="video/mp4", conditional=True, max_age=0)
        resp.headers["Cache-Control"] = "private, no-store"
        return resp

    def act(rid: str, fn: Callable[[Recording], Any]) -> Any:
        rec, _ = recording(rid)
        try:
            fn(rec)
        except Refused as exc:
            return redirect(url_for("recording_page", rid=rid, msg=str(exc)))
        except (LockedError, StoreUnavailable) as exc:
            return redirect(url_for("recording_page", rid=rid, msg=str(exc)))
        return redirect(url_for("recording_page", rid=rid, msg=text("done", g.lang)))

    @app.post("/recordings/<rid>/hold")
    @login_required("clerk")
    def hold(rid: str) -> Any:
        return act(rid, lambda rec: office.hold(rec.id, request.form.get("reason", ""),
                                                request.form.get("case", ""), g.user))

    @app.post("/recordings/<rid>/release")
    @login_required("clerk")
    def release(rid: str) -> Any:
        return act(rid, lambda rec: office.release(rec.id, request.form.get("reason", ""), g.user))

    @app.post("/recordings/<rid>/delete")
    @login_required("officer", "supervisor")
    def delete(rid: str) -> Any:
        def go(rec: Recording) -> None:
            result = office.delete(rec.id, g.user)
            if result.get("deleted"):
                drop_cache(rec.id)
        return act(rid, go)

    @app.post("/recordings/<rid>/export")
    @login_required("clerk")
    def export(rid: str) -> Any:
        rec, _ = recording(rid)
        token = secrets.token_hex(16)
        d = cache / "exports" / token
        d.mkdir(parents=True)
        try:
            run_export(office, rec.id, identity, d / f"{rec.id}.mp4", g.user)
        except Refused as exc:
            shutil.rmtree(d, ignore_errors=True)
            return redirect(url_for("recording_page", rid=rid, msg=str(exc)))
        session["exports"] = [*session.get("exports", []), token]
        return render_template("export.html", rec=rec, token=token,
                               files=sorted(p.name for p in d.iterdir()))

    @app.get("/exports/<token>/<name>")
    @login_required("clerk")
    def download(token: str, name: str) -> Any:
        if token not in session.get("exports", []) or not re.fullmatch(r"[0-9a-f]{32}", token) \
                or not SAFE_ID.fullmatch(name):
            abort(404)
        path = cache / "exports" / token / name
        if not path.is_file():
            abort(404)
        return send_file(path, as_attachment=True, download_name=name)

    # ------------------------------------------------------------------ audit
    @app.get("/audit")
    @login_required("dpo", "clerk", "supervisor")
    def audit_page() -> Any:
        report = audit.verify(store)
        f = {k: request.args.get(k, "").strip() for k in ("action", "recording", "by")}
        rows = [e for e in audit.entries(store)
                if (not f["action"] or e.action == f["action"]) and (not f["recording"] or e.recording == f["recording"])
                and (not f["by"] or e.by == f["by"])]
        return render_template("audit.html", report=report, rows=rows, f=f, actions=audit.ACTIONS)

    return app
