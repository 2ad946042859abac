"""What waits for a decision — a supervisor's start page, and a second clerk's where the
office lets clerks approve each other's redactions.

Everything is listed oldest first, each with who asked, when and why, and decided with one
click (a reason field beside it): requests to lift a ``straf`` hold, officers' consents to
early deletion, redactions to approve (opened for review: the picture must be seen), and
a proposal to shorten the retention. What cannot be undone — a deletion, a lifted hold, a
shorter retention — asks once more, saying what will happen. Declining puts the reason on
record (audit ``decline``); the request no longer stands and may be made again.

The lists come from the index (pending requests only: a few rows, never the store) and,
for redactions, from this console's drafts. The count in the navigation bar is one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from evidence.console import ctx, login_required, recording_label
from evidence.console.i18n import text
from evidence.console.recording import refusal
from evidence.errors import LockedError, StoreUnavailable
from evidence.index import IndexBusy, IndexCorrupt, IndexStale
from evidence.office import Refused

bp = Blueprint("inbox", __name__)
KINDS = ("release", "delete", "retention")


@dataclass
class Item:
    kind: str                  # release | delete | retention | redaction
    since_us: int
    by: str                    # who asked (or made the redaction)
    why: str = ""
    row: dict[str, Any] | None = None
    reason: str = ""           # release: the hold's reason
    token: str = ""            # redaction: its draft
    days: int = 0              # retention: the proposed days


def items_for(user: str, role: str) -> list[Item]:
    from evidence.console.redaction import waiting_for
    c = ctx()
    state = c.index.state([])
    out: list[Item] = []
    if role == "supervisor":
        waiting = c.index.waiting()
        out += [Item("release", r["asked_us"], r["asked_by"], r["why"], r, reason=r["hold_reason"])
                for r in waiting["releases"]]
        out += [Item("delete", r["asked_us"], r["asked_by"], "", r) for r in waiting["deletions"]]
        pending = state.retention_approval
        if pending is not None and pending["by"] != user:
            at = c.index.conn().execute("SELECT utc_us FROM audit WHERE seq = ?", (pending["audit_seq"],)).fetchone()
            out.append(Item("retention", at[0] if at else 0, pending["by"] or "", days=pending["retention_days"]))
    out += [Item("redaction", j.ready_us, j.user, row=c.index.row(j.recording), token=t) for t, j in waiting_for(user)]
    return sorted(out, key=lambda i: i.since_us)


def count_for(user: str | None, role: str | None) -> int:
    """The number in the navigation bar (0 for those who decide nothing)."""
    if user is None or role not in ("supervisor", "clerk"):
        return 0
    from evidence.console.redaction import waiting_for
    try:
        c = ctx()
        n = len(waiting_for(user))
        if role == "supervisor":
            pending = c.index.state([]).retention_approval
            n += c.index.waiting_count() + int(pending is not None and pending["by"] != user)
        return n
    except Exception:  # no usable index (being built, damaged): the bar shows no count, the page says why
        return 0


@bp.get("/inbox")
@login_required("supervisor", "clerk")
def inbox() -> Any:
    c = ctx()
    return render_template("inbox.html", items=items_for(g.user, g.role),
                           retention=c.index.state([]).retention_days)


@bp.post("/inbox/decide")
@login_required("supervisor")
def decide() -> Any:
    """Approve or decline one item; what cannot be undone is confirmed first."""
    c = ctx()
    kind, decision = request.form.get("kind", ""), request.form.get("decision", "")
    rid, reason = request.form.get("rid", ""), request.form.get("reason", "")
    why = request.form.get("why", "").strip()[:500]
    if kind not in KINDS or decision not in ("approve", "decline"):
        flash(text("not_found", g.lang), "error")
        return redirect(url_for("inbox.inbox"))
    row = c.row(rid) if kind != "retention" else None
    label = recording_label(row)
    try:
        if decision == "decline":
            if not why:
                flash(text("decline_why", g.lang), "error")
                return redirect(url_for("inbox.inbox"))
            c.office.decline(kind, g.user, why, rid or None, reason or None)
            flash(text(f"declined_{kind}", g.lang, rec=label), "done")
            return redirect(url_for("inbox.inbox"))
        if request.form.get("confirm") != "1":
            state = c.index.state([rid] if row else [])
            what = {
                "delete": lambda: text("confirm_delete", g.lang, rec=label),
                "release": lambda: text("confirm_release", g.lang, rec=label, reason=text(reason, g.lang),
                                        case=next((h.case for h in state.holds.get(rid, []) if h.reason == reason),
                                                  "—")),
                "retention": lambda: text("confirm_retention", g.lang, old=state.retention_days,
                                          new=(state.retention_approval or {}).get("retention_days", "?")),
            }[kind]()
            return render_template("confirm.html", title=text(f"confirm_{kind}_title", g.lang), what=what,
                                   action=url_for("inbox.decide"), back=url_for("inbox.inbox"),
                                   fields={"kind": kind, "decision": decision, "rid": rid, "reason": reason,
                                           "why": why}, button=text(f"confirm_{kind}_button", g.lang))
        if kind == "delete":
            result = c.office.delete(rid, g.user)
            if result.get("deleted"):
                c.media.forget(rid)
            flash(text("deleted_done" if result.get("deleted") else "delete_waiting_officer", g.lang, rec=label),
                  "done")
        elif kind == "release":
            request_why = c.index.state([rid]).release_requests.get(rid, {}).get(reason, {}).get("why", "")
            c.office.release(rid, reason, g.user, why or request_why)
            flash(text("released_done", g.lang, rec=label, reason=text(reason, g.lang)), "done")
        else:
            state = c.index.state([])
            pending = state.retention_approval
            if pending is None:
                raise Refused("no shorter retention is proposed", "nothing_waiting")
            c.office.init(int(pending["retention_days"]), state.supervisors, g.user)
            flash(text("retention_done", g.lang, days=pending["retention_days"]), "done")
    except (Refused, LockedError, StoreUnavailable, IndexBusy, IndexCorrupt, IndexStale) as exc:
        flash(refusal(exc), "error")
    return redirect(url_for("inbox.inbox"))
