"""Login and logout."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, redirect, render_template, request, session, url_for

from evidence.console import LOCAL_PATH, ctx
from evidence.console.i18n import text

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    c = ctx()
    if request.method == "POST":
        uid, pw = request.form.get("user", ""), request.form.get("password", "")
        addr = f"addr:{request.remote_addr}"
        if c.throttle.blocked(f"user:{uid}", addr):
            return render_template("login.html", error=text("login_throttled", g.lang)), 429
        found = c.users.check(uid, pw)
        if found is None:
            c.throttle.fail(f"user:{uid}", addr)
            error = text("login_failed", g.lang)
        else:
            c.throttle.clear(f"user:{uid}")
            lang = session.get("lang", "de")
            session.clear()
            session.update(user=found.id, role=found.role, lang=lang, seen=[])
            session.permanent = True
            target = request.args.get("next", "")
            return redirect(target if LOCAL_PATH.fullmatch(target) else "/")  # never off-site
    return render_template("login.html", error=error), (401 if error else 200)


@bp.post("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("auth.login"))
