"""Sichtung: the evidence office's web console (``bodycam-evidence serve``).

Server-rendered Flask pages; nothing visible without a login; every form carries a CSRF
token (Flask-WTF); every action is checked against the user's role on the server and
recorded in the audit trail with the user. Bound to 127.0.0.1 by default; put a TLS
reverse proxy in front to serve it further (docs/console.md).

Every page reads the office's index (:mod:`evidence.index`), never the whole store; a
background thread keeps the index in step with the store (and rebuilds it when it is
missing or stale, while the pages go on answering with a banner). One module per page
family, as Frigate's API is laid out:

- :mod:`.auth` — login, logout;
- :mod:`.inbox` — what waits for a supervisor's (or a second clerk's) decision;
- :mod:`.recordings` — the list (filters, keyset pages, counts), the case view, holds for many;
- :mod:`.recording` — one recording: facts, verification, events, receipts, actions, exports;
- :mod:`.redaction` — a redacted copy for disclosure: set up, review, approve, download;
- :mod:`.media` — poster frames and playback as segments (HLS, decrypted on demand, in memory);
- :mod:`.trail` — the audit trail.

Roles (:mod:`evidence.users`): clerk — review, hold, release, export; supervisor — review,
approve early deletion; officer — own recordings, request their early deletion; dpo — the
audit trail, read-only, no pictures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask, abort, current_app, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from evidence import audit
from evidence.console.i18n import LANGS, action_text, days_text, event_text, role_text, text
from evidence.console.sessions import SessionStore, user_changed
from evidence.console.words import audit_sentence
from evidence.index import Index, IndexBusy, IndexCorrupt, IndexStale
from evidence.errors import StoreUnavailable
from evidence.office import Office
from evidence.recordings import Recording
from evidence.state import HOLD_REASONS, State
from evidence.store import EvidenceStore
from evidence.users import Users

LOCAL_PATH = re.compile(r"/(?:[A-Za-z0-9._~-]+(?:/[A-Za-z0-9._~-]+)*)?")
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ROLES_REVIEW = ("clerk", "supervisor", "officer")
FAILS_ALLOWED, FAIL_WINDOW_S, MAX_WAIT_S, ADDR_SLOW_AFTER = 5, 900, 900.0, 20
LOCAL = ZoneInfo("Europe/Berlin")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self' blob:; "
       "worker-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
log = logging.getLogger("bodycam.console")


class Throttle:
    """Login attempts, per user id and per address.

    Per user: one password check at a time (the reservation is taken atomically, so 40
    attempts at once get one check, not 40), and after ``FAILS_ALLOWED`` failures within
    ``FAIL_WINDOW_S`` a wait that doubles with every further failure (1 min, 2, 4, …, at
    most 15 min). Per address (behind a reverse proxy: the whole office): failures only
    slow it down — past ``ADDR_SLOW_AFTER`` each attempt waits a second — and never refuse
    another user's correct login. Both maps are bounded (made-up ids are forgotten first).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._fails: dict[str, deque[float]] = defaultdict(deque)
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails[key]
        while q and now - q[0] > FAIL_WINDOW_S + MAX_WAIT_S:
            q.popleft()
        return q

    def wait_s(self, user: str) -> float:
        """Seconds until ``user`` may try again (0: now)."""
        with self._lock:
            return self._wait(f"user:{user}", self.clock())

    def _wait(self, key: str, now: float) -> float:
        q = self._recent(key, now)
        within = [t for t in q if now - t <= FAIL_WINDOW_S] if len(q) >= FAILS_ALLOWED else []
        if len(within) < FAILS_ALLOWED:
            return 0.0
        delay = min(MAX_WAIT_S, 60.0 * 2 ** (len(within) - FAILS_ALLOWED))
        return max(0.0, q[-1] + delay - now)

    def begin(self, user: str) -> bool:
        """Reserve the one password check of ``user``; False: another is running, or wait."""
        key = f"user:{user}"
        with self._lock:
            if key in self._busy or self._wait(key, self.clock()) > 0:
                return False
            self._busy.add(key)
            return True

    def end(self, user: str, addr: str, ok: bool) -> None:
        key = f"user:{user}"
        with self._lock:
            self._busy.discard(key)
            now = self.clock()
            if len(self._fails) > 10_000:  # made-up user ids must not grow this without bound
                for k in [k for k, q in self._fails.items() if not q or now - q[-1] > FAIL_WINDOW_S + MAX_WAIT_S]:
                    del self._fails[k]
            if ok:
                self._fails.pop(key, None)
            else:
                self._fails[key].append(now)
                self._fails[f"addr:{addr}"].append(now)

    def addr_slow(self, addr: str) -> bool:
        with self._lock:
            now = self.clock()
            return sum(1 for t in self._recent(f"addr:{addr}", now) if now - t <= FAIL_WINDOW_S) >= ADDR_SLOW_AFTER


@dataclass
class Console:
    """What every page family shares (``app.extensions["bodycam"]``)."""
    store: EvidenceStore
    key: Ed25519PrivateKey
    identity: bytes | list[bytes]   # the office's identities: the current one and earlier rotations'
    office: Office
    index: Index
    users: Users
    cache: Path                                   # this console's private files (removed at shutdown)
    now_us: Callable[[], int]
    sessions: Any = None                          # evidence.console.sessions.SessionStore
    throttle: Throttle = field(default_factory=Throttle)
    checks: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="verify"))
    media: Any = None                             # evidence.console.media.Media
    exports: Any = None                           # evidence.console.exports.Exports
    verifying: dict[str, Any] = field(default_factory=dict)   # recording → its verification's future
    redactions: dict[str, Any] = field(default_factory=dict)  # token → evidence.console.redaction.Job
    draft_ttl_s: float = 8 * 3600.0               # a redaction waiting for approval: a working day
    lock: threading.Lock = field(default_factory=threading.Lock)
    refresh_error: str | None = None
    busy_elsewhere: str | None = None             # another process rebuilds this index
    stop: threading.Event = field(default_factory=threading.Event)

    def record(self, action: str, rec: Recording | dict[str, Any] | None = None, **details: Any) -> audit.Entry:
        """An audit record by the logged-in user about ``rec`` (a recording or its index row);
        the index follows at once (O(new))."""
        device, rid = ((rec["device"], rec["id"]) if isinstance(rec, dict) else
                       (rec.device_id, rec.id) if rec is not None else (None, None))
        entry = audit.append(self.store, self.key, action, by=g.user, device=device, recording=rid,
                             details=details, now_us=self.now_us())
        with contextlib.suppress(IndexBusy, IndexCorrupt, IndexStale):  # the background thread mends it
            self.index.refresh(rebuild=False, pending=False)
        return entry

    def any_deleted(self, rids: list[str]) -> bool:
        """Whether any of ``rids`` is deleted (or no longer known)."""
        rows = [self.index.row(r) for r in rids]
        return any(r is None or r["deleted"] for r in rows)

    def row(self, rid: str) -> dict[str, Any]:
        """The recording's index row if this user may see it (404 otherwise), without its manifests."""
        row = self.index.row(rid) if SAFE_ID.fullmatch(rid) else None
        if row is None or (g.role == "officer" and row["officer"] != g.user):
            abort(404)
        return row

    def recording(self, rid: str) -> tuple[Recording, State]:
        """The recording if this user may see it (404 otherwise: an officer does not learn
        that others' recordings exist)."""
        if not SAFE_ID.fullmatch(rid):
            abort(404)
        rec = self.index.recording(rid)
        if rec is None or (g.role == "officer" and rec.officer_id != g.user):
            abort(404)
        return rec, self.index.state([rec.id])


def ctx() -> Console:
    return current_app.extensions["bodycam"]


def _lang() -> str:
    """The user's language; also in error pages raised before the request was set up."""
    return g.get("lang") or session.get("lang", "de")


def officer_names() -> dict[str, str]:
    """The office's directory of officers (id → name), read once per request."""
    if "officers" not in g:
        try:
            g.officers = json.loads(ctx().index.meta().get("officers") or "{}")
        except Exception:  # no index yet: numbers only
            g.officers = {}
    return g.officers


def officer_text(officer_id: str | None) -> str:
    """"Anna Becker (KOD-101)", or the number alone when no name is on record."""
    if not officer_id:
        return "—"
    name = officer_names().get(officer_id)
    return f"{name} ({officer_id})" if name else officer_id


def recording_label(row: dict[str, Any] | Recording | None) -> str:
    """A recording as people name it: "06.12.2026, 06:01 – Anna Becker (KOD-101)"."""
    if row is None:
        return "—"
    start, officer = ((row.start_utc_us, row.officer_id) if isinstance(row, Recording)
                      else (row["start_utc_us"], row["officer"]))
    return f"{local_time(start, _lang(), seconds=False)} – {officer_text(officer)}"


def local_time(utc_us: int | None, lang: str = "de", seconds: bool = True) -> str:
    """Europe/Berlin wall time: "02.12.2026, 11:01:40" (German) or "2026-12-02 11:01:40"."""
    if utc_us is None:
        return "—"
    t = dt.datetime.fromtimestamp(utc_us / 1e6, LOCAL)
    fmt = ("%d.%m.%Y, %H:%M" if lang == "de" else "%Y-%m-%d %H:%M") + (":%S" if seconds else "")
    return t.strftime(fmt)


def duration_text(us: int) -> str:
    """0:48, 12:03, 1:02:03 — a duration as a player shows it."""
    s = max(0, round(us / 1e6))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def size_text(n: int) -> str:
    """12,3 MB / 850 kB — a file's size for people (German decimal comma)."""
    value, unit = (n / 1e6, "MB") if n >= 1e6 else (n / 1e3, "kB") if n >= 1e3 else (float(n), "B")
    out = f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
    return out.replace(".", ",") if _lang() == "de" else out


def seconds_text(s: float) -> str:
    """A place in a recording, to the tenth: 0:37,7 (German) or 0:37.7."""
    tenths = round(max(0.0, float(s)) * 10)
    whole = tenths // 10
    text_ = f"{whole // 60}:{whole % 60:02d}.{tenths % 10}"
    return text_.replace(".", ",") if _lang() == "de" else text_


def login_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def inner(*args: Any, **kw: Any) -> Any:
            if g.user is None:
                return redirect(url_for("auth.login", next=request.path))
            if roles and g.role not in roles:
                abort(403)
            return view(*args, **kw)
        return inner
    return wrap


def create_app(store: EvidenceStore, key: Ed25519PrivateKey, identity: bytes | list[bytes], *,
               cache_dir: Path | None = None, secret: bytes | None = None, index: Index | None = None,
               now_us: Callable[[], int] = lambda: time.time_ns() // 1000, refresh_s: float = 5.0,
               media_bytes: int = 128 << 20, export_ttl_s: float = 3600.0, idle_s: float = 1800.0,
               lifetime_s: float = 8 * 3600.0, behind_tls: bool = False, draft_ttl_s: float = 8 * 3600.0) -> Flask:
    from evidence.console import auth, inbox, media, recording, recordings, redaction, trail
    from evidence.console.exports import Exports
    from evidence.console.exports import cache_dir as cache_dir_of
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret or secrets.token_bytes(32), WTF_CSRF_TIME_LIMIT=None,  # the session's
                      MAX_CONTENT_LENGTH=64 * 1024)                                           # lifetime bounds it
    CSRFProtect(app)
    index = index if index is not None else Index(store, now_us=now_us)
    app.session_interface = SessionStore(index.dir / "sessions.sqlite", now_us, idle_s=idle_s,
                                         lifetime_s=lifetime_s, secure=behind_tls)
    office = Office(store, key, now_us, index, rebuild=False)
    office.check_key()
    cache = Path(cache_dir) if cache_dir is not None else cache_dir_of(index.dir)
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    c = Console(store, key, identity, office, index, Users(store), cache, now_us, app.session_interface,
                draft_ttl_s=draft_ttl_s)
    c.media = media.Media(c, media_bytes)
    c.exports = Exports(cache / "exports", now_us, ttl_s=export_ttl_s)
    app.extensions["bodycam"] = c
    for bp in (auth.bp, inbox.bp, recordings.bp, recording.bp, redaction.bp, media.bp, trail.bp):
        app.register_blueprint(bp)
    _start_refresher(c, refresh_s)

    @app.before_request
    def load_user() -> None:
        g.lang = session.get("lang", "de")
        if request.args.get("lang") in LANGS:
            g.lang = session["lang"] = request.args["lang"]
        g.user = session.get("user")
        g.role = session.get("role")
        if g.user is not None:  # a password, role or access changed (here or elsewhere): the session ends
            try:
                current = c.index.user(g.user)
            except (IndexCorrupt, IndexBusy, sqlite3.DatabaseError):
                return  # no index yet: the session stands until it can be checked
            if session.get("user_seq") is None and current is not None and current[1] == "active" \
                    and current[0] == g.role:
                session["user_seq"] = current[2]  # logged in before the index was built: bound now
            if user_changed(session.get("user_seq"), (current[1], current[2]) if current else None):
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
        lang = g.get("lang", "de")
        return {"t": lambda k, **kw: text(k, _lang(), **kw), "user": g.get("user"), "role": g.get("role"),
                "lang": lang, "local": lambda us, seconds=True: local_time(us, lang, seconds),
                "utc": lambda us: local_time(us, "en") if us is None else
                dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                "duration": duration_text, "days_text": lambda n: days_text(n, lang),
                "role_text": lambda r: role_text(r, lang), "action_text": lambda a: action_text(a, lang),
                "event_text": lambda k, d: event_text(k, d, lang),
                "reasons": list(HOLD_REASONS), "banner": _banner(c, lang), "demo": _demo(c),
                "officer": officer_text, "label": recording_label, "seconds_text": seconds_text,
                "size_text": size_text, "sentence": lambda e: audit_sentence(e, lang),
                "inbox_count": inbox.count_for(g.get("user"), g.get("role"))}

    @app.errorhandler(CSRFError)
    def csrf_error(_: Any) -> Any:
        return render_template("message.html", message=text("csrf", _lang())), 400

    @app.errorhandler(403)
    def forbidden(_: Any) -> Any:
        return render_template("message.html", message=text("forbidden", _lang())), 403

    @app.errorhandler(IndexCorrupt)
    @app.errorhandler(IndexBusy)
    def index_not_ready(exc: Exception) -> Any:  # the first build runs in the background
        return render_template("message.html", message=text("index_unavailable", _lang(), error=str(exc)[:200])), 503

    @app.errorhandler(sqlite3.DatabaseError)
    def index_damaged(exc: Exception) -> Any:  # set aside; the background thread rebuilds it
        if isinstance(exc, sqlite3.OperationalError):  # full, read-only, locked: not damage
            return index_not_ready(IndexBusy(f"the index cannot be written ({exc})"))
        return index_not_ready(IndexCorrupt(c.index.damaged(exc)))

    @app.errorhandler(404)
    def not_found(_: Any) -> Any:
        return render_template("message.html", message=text("not_found", _lang())), 404

    @app.errorhandler(413)
    def too_large(_: Any) -> Any:
        return render_template("message.html", message=text("too_large", _lang())), 413

    @app.errorhandler(StoreUnavailable)
    def store_unavailable(exc: Exception) -> Any:  # the store out of reach mid-request
        return render_template("message.html", message=text("store_unavailable", _lang(), error=str(exc)[:200])), 503

    @app.errorhandler(500)
    def server_error(_: Any) -> Any:  # logged by Flask; the user gets a page in their language
        return render_template("message.html", message=text("server_error", _lang())), 500

    @app.get("/")
    def home() -> Any:
        if g.get("user") is None:
            return redirect(url_for("auth.login"))
        return redirect(url_for({"dpo": "trail.audit_page", "supervisor": "inbox.inbox"}.get(
            g.get("role") or "", "recordings.recordings")))

    return app


def _demo(c: Console) -> bool:
    try:
        return c.index.meta().get("demo") == "1"
    except Exception:  # no index yet: the banner says so
        return False


def _banner(c: Console, lang: str) -> str | None:
    """What the pages must say about the index: rebuilding, or the store out of reach."""
    if c.index.rebuilding:
        r = c.index.rebuilding
        return text("banner_rebuilding", lang, phase=text(f"phase_{r['phase']}", lang), done=r["done"],
                    total=r["total"] or "?")
    if c.busy_elsewhere:
        return text("banner_busy", lang)
    if c.refresh_error:
        since = local_time(c.index.last_refresh_us, lang) if c.index.last_refresh_us else "—"
        return text("banner_stale", lang, since=since, error=c.refresh_error[:200])
    return None


def _start_refresher(c: Console, every_s: float) -> None:
    """Follow the store in the background: a new docking shows up within ``every_s``."""
    def loop() -> None:
        while not c.stop.is_set():
            try:
                report = c.index.refresh()
                c.refresh_error = c.busy_elsewhere = None
                for rid in report.deleted:  # deleted here or elsewhere (a CLI purge): no decrypted copy stays
                    c.media.forget(rid)
                c.exports.sweep(c.any_deleted)
                for user in report.users_changed:  # a password, role or access changed: their sessions end
                    c.sessions.end_user(user)
                c.sessions.sweep()
            except IndexBusy as exc:  # `reindex` in another process: the pages say so
                c.busy_elsewhere = str(exc)
            except Exception as exc:  # the store out of reach: shown, retried
                c.refresh_error = str(exc)
                log.warning("index refresh failed: %s", exc)
            c.stop.wait(every_s)
    threading.Thread(target=loop, name="index-refresh", daemon=True).start()
