"""Sessions kept on the server, so that they can end.

The cookie carries only a random session id (256 bits); what the session holds (user,
role, language, CSRF token, messages) stays in ``INDEX/sessions.sqlite`` (0600, beside
the index, not part of it: a rebuilt index logs nobody out), stored under the SHA-256 of
the id, so a copy of the file opens no session. A session ends

- at logout (the row is deleted: the old cookie, replayed, is a stranger);
- after ``idle_s`` without a request (default 30 min) and ``lifetime_s`` after the login
  (default 8 h);
- when its user changes: a password, a role, ``users disable`` or ``remove`` — each is a
  ``user`` record in the audit trail, and a session remembers the record it began under
  (:func:`user_changed`), so it also ends when the change was made on another machine;
- at a new login in the same browser (a new id: no session fixation).

The cookie is HttpOnly, SameSite=Strict, and Secure when the console is served behind
TLS (``serve --behind-tls``). A bounded log of logins (successful and failed) is kept
here for the data-protection officer, not in the audit trail, which an attacker guessing
passwords must not be able to flood.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

COOKIE = "sichtung"
LOG_ROWS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY, user TEXT, user_seq INTEGER, created_us INTEGER, last_us INTEGER, data TEXT);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
CREATE TABLE IF NOT EXISTS logins (n INTEGER PRIMARY KEY AUTOINCREMENT, utc_us INTEGER, user TEXT, addr TEXT,
    ok INTEGER, why TEXT);
"""


_GONE = object()


class ServerSession(dict, SessionMixin):  # type: ignore[type-arg]
    """A session's data, remembering what this request changed: concurrent requests of one
    browser (a page, its pictures, the player's segments) each write back only their own
    changes, so none undoes another's (a CSRF token, a message)."""

    def __init__(self, data: dict[str, Any] | None = None, sid: str | None = None) -> None:
        super().__init__(data or {})
        self.sid = sid
        self.changes: dict[str, Any] = {}
        self.cleared = False
        self.renew = False        # a login: a new id

    @property
    def modified(self) -> bool:  # type: ignore[override]
        return bool(self.changes) or self.cleared or self.renew

    @modified.setter
    def modified(self, _: bool) -> None:  # Flask sets it; what changed is tracked here
        pass

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.changes[key] = value

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.changes[key] = _GONE

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        if key in self:
            self.changes[key] = _GONE
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        for k, v in dict(*args, **kw).items():
            self[k] = v

    def clear(self) -> None:
        super().clear()
        self.changes.clear()
        self.cleared = True

    def regenerate(self) -> None:
        self.renew = True


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionStore(SessionInterface):
    """Flask's session interface over one SQLite file."""

    def __init__(self, path: Path, now_us: Callable[[], int], *, idle_s: float = 1800, lifetime_s: float = 8 * 3600,
                 secure: bool = False) -> None:
        self.path, self.now_us = Path(path), now_us
        self.idle_us, self.lifetime_us, self.secure = int(idle_s * 1e6), int(lifetime_s * 1e6), secure
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        self._local = threading.local()
        with self._db() as db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    # ------------------------------------------------------------------ Flask's interface
    def open_session(self, app: Flask, request: Request) -> ServerSession:
        sid = request.cookies.get(COOKIE, "")
        if len(sid) == 43 and sid.replace("-", "").replace("_", "").isalnum():
            row = self._db().execute("SELECT data, created_us, last_us FROM sessions WHERE sid = ?",
                                     (_hash(sid),)).fetchone()
            now = self.now_us()
            if row is not None and now - row[2] <= self.idle_us and now - row[1] <= self.lifetime_us:
                return ServerSession(json.loads(row[0]), sid)
            if row is not None:
                self.end(sid)
        return ServerSession()

    def save_session(self, app: Flask, session: ServerSession, response: Response) -> None:  # type: ignore[override]
        options = {"httponly": True, "samesite": "Strict", "secure": self.secure, "path": "/"}
        if session.renew and session.sid:
            self.end(session.sid)
            session.sid = None
        if session.sid is None and not session:
            return
        if session.sid is not None and session.cleared and not session:
            self.end(session.sid)
            response.delete_cookie(COOKIE, path="/")
            return
        now = self.now_us()
        with self._db() as db:
            if session.sid is None:
                session.sid = secrets.token_urlsafe(32)
                db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                           (_hash(session.sid), session.get("user"), session.get("user_seq"), now, now,
                            json.dumps(dict(session))))
                response.set_cookie(COOKIE, session.sid, max_age=int(self.lifetime_us / 1e6), **options)
                return
            key = _hash(session.sid)
            if session.cleared:
                data = dict(session)
            else:  # only what this request changed, over what other requests wrote meanwhile
                row = db.execute("SELECT data FROM sessions WHERE sid = ?", (key,)).fetchone()
                if row is None:  # ended meanwhile (logout, a password change): stays ended
                    response.delete_cookie(COOKIE, path="/")
                    return
                data = json.loads(row[0])
                for k, v in session.changes.items():
                    if v is _GONE:
                        data.pop(k, None)
                    else:
                        data[k] = v
            db.execute("UPDATE sessions SET user = ?, user_seq = ?, last_us = ?, data = ? WHERE sid = ?",
                       (data.get("user"), data.get("user_seq"), now, json.dumps(data), key))

    # ------------------------------------------------------------------ ending sessions
    def end(self, sid: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE sid = ?", (_hash(sid),))

    def end_user(self, user: str) -> int:
        """End every session of ``user`` (their password, role or access changed)."""
        with self._db() as db:
            return db.execute("DELETE FROM sessions WHERE user = ?", (user,)).rowcount

    def sweep(self) -> None:
        """Forget sessions past their idle time or lifetime, and the oldest logins beyond the log's size."""
        now = self.now_us()
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE last_us < ? OR created_us < ?",
                       (now - self.idle_us, now - self.lifetime_us))
            db.execute("DELETE FROM logins WHERE n <= (SELECT MAX(n) FROM logins) - ?", (LOG_ROWS,))

    def count(self, user: str | None = None) -> int:
        q = "SELECT COUNT(*) FROM sessions" + (" WHERE user = ?" if user else "")
        return self._db().execute(q, (user,) if user else ()).fetchone()[0]

    # ------------------------------------------------------------------ the login log
    def log_login(self, user: str, addr: str, ok: bool, why: str = "") -> None:
        with self._db() as db:
            db.execute("INSERT INTO logins (utc_us, user, addr, ok, why) VALUES (?, ?, ?, ?, ?)",
                       (self.now_us(), user[:64], addr[:64], int(ok), why[:64]))

    def logins(self, before: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._db().execute(
            "SELECT n, utc_us, user, addr, ok, why FROM logins" + (" WHERE n < ?" if before else "")
            + " ORDER BY n DESC LIMIT ?", ((before, limit) if before else (limit,))).fetchall()
        return [dict(zip(("n", "utc_us", "user", "addr", "ok", "why"), r)) for r in rows]


def user_changed(session_seq: int | None, current: tuple[str, int] | None) -> bool:
    """Whether the user a session belongs to changed since it began (``current``: the
    user's (state, audit seq of the last change) as the index knows it, None if unknown)."""
    return current is None or current[0] != "active" or session_seq != current[1]


def now_us() -> int:
    return time.time_ns() // 1000
