"""The recordings list (filters, sorting, keyset pages of 50, counts), holds for many
recordings at once, and the case view: every recording held under one Aktenzeichen."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import zipfile
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from evidence.console import (ROLES_REVIEW, SAFE_ID, ctx, local_time, login_required, officer_names, officer_text,
                              recording_label, size_text)
from evidence.console.i18n import text
from evidence.console.recording import refusal
from evidence.export import export as run_export
from evidence.index import BadQuery, Filters, IndexBusy, IndexCorrupt, case_key
from evidence.index.query import DAY_US, SORTS, local_day_bounds
from evidence.office import Refused
from evidence.state import HOLD_REASONS

bp = Blueprint("recordings", __name__)
FIELDS = ("officer", "device", "from", "to", "held", "reason", "due", "az", "sort")


def _date(value: str, what: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadQuery(text("bad_date", g.lang, what=what)) from None


def officers_matching(query: str) -> list[str] | str:
    """The officers a filter means: an id in any case ("kod-103"), its number alone ("103"),
    or a part of the name ("Schulz"); the query itself when nothing known matches."""
    q = query.strip()
    if not q:
        return ""
    known = ctx().index.choices("officer")
    names = officer_names()
    exact = [o for o in known if o.casefold() == q.casefold()]
    if exact:
        return exact
    if q.isdigit():
        found = [o for o in known if (m := re.search(r"(\d+)\D*$", o)) and int(m.group(1)) == int(q)]
    else:
        low = q.casefold()
        found = [o for o in known if low in o.casefold() or low in names.get(o, "").casefold()]
    return found or q


def filters_from(args: Any) -> tuple[Filters, dict[str, str]]:
    f = {k: args.get(k, "").strip()[:200] for k in FIELDS}
    first, last = _date(f["from"], text("from", g.lang)), _date(f["to"], text("to", g.lang))
    if first and last and first > last:
        raise BadQuery(text("bad_range", g.lang))
    since, until = local_day_bounds(first, last)
    if f["due"] and not (f["due"].isdigit() and int(f["due"]) <= 3650):
        raise BadQuery(text("bad_due", g.lang))
    if f["reason"] and f["reason"] not in HOLD_REASONS:
        raise BadQuery(text("not_found", g.lang))
    officer = officers_matching(f["officer"]) if g.role != "officer" else ""
    if isinstance(officer, str) and officer:
        g.unknown_officer = officer            # nothing matches it: the list says so, not just "none found"
    return Filters(officer=officer, device=f["device"], since_us=since, until_us=until,
                   held={"yes": True, "no": False}.get(f["held"]), reason=f["reason"],
                   due_days=int(f["due"]) if f["due"] else None, case=f["az"],
                   own=g.user if g.role == "officer" else None), f


def with_days(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    c = ctx()
    retention = int(c.index.meta()["retention_days"])
    now = c.now_us()
    for r in rows:
        r["days"] = max(0, int((r["end_utc_us"] + retention * DAY_US - now) // DAY_US))
    return rows


@bp.get("/recordings")
@login_required(*ROLES_REVIEW)
def recordings() -> Any:
    c = ctx()
    error = None
    try:
        f, form = filters_from(request.args)
        sort = form["sort"] or "start_desc"
        if sort not in SORTS:
            raise BadQuery(text("not_found", g.lang))
        page = c.index.page(f, sort=sort, after=request.args.get("after") or None,
                            before=request.args.get("before") or None)
    except BadQuery as exc:
        error, form, page = str(exc), {k: request.args.get(k, "")[:200] for k in FIELDS}, None
        status = 400
    except (IndexCorrupt, IndexBusy) as exc:  # no usable index yet: it is being built (the banner says so)
        error, form, page = text("index_unavailable", g.lang, error=str(exc)[:200]), {k: "" for k in FIELDS}, None
        status = 503
    else:
        status = 200
    choices = {}
    if page is not None and g.role != "officer":
        choices = {"officer": c.index.choices("officer"), "device": c.index.choices("device")}
    if error is None and g.get("unknown_officer"):
        error = text("no_officer_match", g.lang, q=g.unknown_officer)
    return render_template("recordings.html", page=page, rows=with_days(page.rows) if page else [], f=form,
                           error=error, sorts=list(SORTS), choices=choices,
                           keep={k: v for k, v in form.items() if v}), status


@bp.post("/recordings/hold")
@login_required("clerk")
def hold_many() -> Any:
    """Hold the selected recordings under one reason and Aktenzeichen, then show the case."""
    c = ctx()
    rids = [r for r in request.form.getlist("rid") if SAFE_ID.fullmatch(r)][:500]
    reason, case = request.form.get("reason", ""), request.form.get("case", "")
    if not rids:
        return render_template("message.html", message=text("none_selected", g.lang)), 400
    problems, done = [], 0
    for rid in rids:
        rec, _ = c.recording(rid)
        try:
            c.office.hold(rec.id, reason, case, g.user)
            done += 1
        except Refused as exc:
            problems.append(f"{recording_label(rec)}: {refusal(exc)}")
    if problems:
        return render_template("message.html", message="; ".join(problems[:20])), 400
    flash(text("held_one" if done == 1 else "held_many", g.lang, n=done, reason=text(reason, g.lang), case=case),
          "done")
    return redirect(url_for("recordings.case", az=case))


@bp.get("/cases")
@login_required(*ROLES_REVIEW)
def case() -> Any:
    c = ctx()
    az = request.args.get("az", "").strip()[:200]
    if not case_key(az):
        return render_template("case.html", az=az, rows=[], error=text("case_needed", g.lang)), 400
    page = c.index.case(az)
    rows = [r for r in page.rows if g.role != "officer" or r["officer"] == g.user]
    return render_template("case.html", az=az, rows=with_days(rows), error=None)


@bp.post("/cases/export")
@login_required("clerk")
def case_export() -> Any:
    """Every recording of the case as MP4 with its reports, and one case summary — in one
    ZIP (stored, not compressed: MP4 is compressed already)."""
    c = ctx()
    az = request.form.get("az", "").strip()[:200]
    rows = [r for r in c.index.case(az).rows if not r["deleted"]] if case_key(az) else []
    if not rows:
        abort(404)
    token, d = c.exports.new(g.user, [r["id"] for r in rows])
    work = d / ".work"
    work.mkdir(mode=0o700)
    done, problems = [], []
    try:
        for r in rows:
            try:
                result = run_export(c.office, r["id"], c.identity, work / f"{r['id']}.mp4", g.user, g.lang)
                done.append({"recording": r["id"], "officer": officer_text(r["officer"]),
                             "start": local_time(r["start_utc_us"], g.lang), "mp4": f"{r['id']}.mp4",
                             "sha256": result["sha256"], "verification_problems": result["verification_problems"]})
            except Refused as exc:
                problems.append({"recording": r["id"], "problem": refusal(exc)})
        if not done:
            c.exports.discard(token)
            return render_template("message.html", message="; ".join(p["problem"] for p in problems)), 400
        (work / "akte.json").write_text(json.dumps({"case": az, "by": g.user, "exports": done,
                                                    "not_exported": problems}, indent=2, ensure_ascii=False))
        name = "akte-" + (re.sub(r"[^A-Za-z0-9._-]+", "_", az).strip("._-")[:60] or "export") + ".zip"
        with zipfile.ZipFile(d / name, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for f in sorted(work.iterdir()):
                z.write(f, f.name)
        contents = ", ".join(f"{f.name} ({size_text(f.stat().st_size)})" for f in sorted(work.iterdir()))
        shutil.rmtree(work)
    except BaseException:
        c.exports.discard(token)  # a failed export leaves no decrypted part behind
        raise
    c.exports.finish(token)
    return render_template("export.html", title=text("case_export", g.lang, az=az), token=token,
                           files=c.exports.sizes(token), expires=c.exports.expires_us(token),
                           minutes=round(c.exports.ttl_s / 60), contents=contents,
                           back=url_for("recordings.case", az=az))
