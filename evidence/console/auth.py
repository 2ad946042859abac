"""Login and logout; the login log for the data-protection officer."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, g, redirect, render_template, request, session, url_for

from evidence.console import LOCAL_PATH, ctx, login_required
from evidence.console.i18n import text
from evidence.index import IndexBusy, IndexCorrupt, IndexStale

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    c = ctx()
    if request.method == "POST":
        uid, pw = request.form.get("user", "")[:64], request.form.get("password", "")[:1024]
        addr = request.remote_addr or "?"
        if not c.throttle.begin(uid):
            c.sessions.log_login(uid, addr, False, "throttled")
            minutes = max(1, round(c.throttle.wait_s(uid) / 60))
            return render_template("login.html", error=text("login_throttled_one" if minutes == 1 else
                                                            "login_throttled", g.lang, minutes=minutes)), 429
        ok = False
        try:
            if c.throttle.addr_slow(addr):
                time.sleep(1.0)  # an address guessing a lot is slowed down, never shut out
            found = c.users.check(uid, pw)
            known = None
            if found is not None:
                try:
                    c.index.refresh(rebuild=False, pending=False)  # the user's latest record
                    known = c.index.user(found.id)
                except IndexStale:  # being rebuilt in the background: the index as it stands
                    known = c.index.user(found.id)
                except (IndexBusy, IndexCorrupt):  # no index yet: the user's record in the store
                    known = (found.role, found.state, None)
            ok = found is not None and known is not None and known[1] == "active"
        finally:
            c.throttle.end(uid, addr, ok)
        c.sessions.log_login(uid, addr, ok, "" if ok else "wrong")
        if not ok:
            error = text("login_failed", g.lang)
        else:
            lang = session.get("lang", "de")
            session.clear()
            session.regenerate()  # a new session id at every login
            session.update(user=found.id, role=known[0], user_seq=known[2], lang=lang, seen=[])
            target = request.args.get("next", "")
            return redirect(target if LOCAL_PATH.fullmatch(target) else "/")  # never off-site
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout() -> Any:
    session.clear()  # the session is deleted on the server: its cookie opens nothing any more
    return redirect(url_for("auth.login", bye=1))


@bp.get("/logins")
@login_required("dpo")
def logins() -> Any:
    before = request.args.get("before", "")
    rows = ctx().sessions.logins(int(before) if before.isdigit() and len(before) < 15 else None)
    return render_template("logins.html", rows=rows, older=rows[-1]["n"] if len(rows) == 50 else None)
