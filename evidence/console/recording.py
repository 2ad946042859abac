"""One recording: facts from its manifests, its verification (cached by the manifests'
hashes), its events and custody receipts, its audit entries, and the office's actions.
Everything comes from the index and costs what this recording holds, not the store."""

from __future__ import annotations

import re
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from flask import Blueprint, abort, flash, g, redirect, render_template, request, send_file, url_for

from evidence.console import (ROLES_REVIEW, SAFE_ID, ctx, local_time, login_required, officer_text,
                              recording_label)
from evidence.console.i18n import TEXT, role_text, text
from evidence.errors import LockedError, StoreUnavailable
from evidence.export import export as run_export
from evidence.index import IndexBusy, IndexCorrupt, IndexStale
from evidence.office import Refused
from evidence.recordings import Recording
from evidence.verify import cache_key, verify_recording

bp = Blueprint("recording", __name__)
CHECK_WAIT_S = 1.0        # a page waits this long for a verification that is not cached yet
MAX_CHECKS = 8            # verifications running or queued at once
SHOWN_EVENTS = ("announcement", "state", "gesture_press", "gesture_double", "gesture_hold", "marker",
                "recording_stop", "clock_set", "officer_assigned", "warning")


def _verification(rec: Recording, state: Any) -> dict[str, Any] | None:
    """The cached result, or one computed now: waited for a moment, then left to finish in
    the background (at most ``MAX_CHECKS`` at once, one per recording); the next visit
    shows it. None: not verified yet."""
    c = ctx()
    cached = c.index.verification(rec.id, cache_key(rec, state))
    if cached is not None:
        return cached
    with c.lock:
        future = c.verifying.get(rec.id)
        if future is None:
            if len(c.verifying) >= MAX_CHECKS:
                return None
            future = c.verifying[rec.id] = c.checks.submit(verify_recording, c.index, rec, state)
            future.add_done_callback(lambda _, c=c, rid=rec.id: c.verifying.pop(rid, None))
    try:
        return future.result(timeout=CHECK_WAIT_S)
    except FutureTimeout:
        return None
    except Exception:  # the store out of reach: not verified yet, tried again at the next visit
        return None


@bp.get("/recordings/<rid>")
@login_required(*ROLES_REVIEW)
def recording_page(rid: str) -> Any:
    c = ctx()
    rec, state = c.recording(rid)
    c.record("view", rec, what="page")
    check = _verification(rec, state)
    flagged = {int(m) for p in (check or {}).get("problems", []) for m in re.findall(r"^segments? (\d+)", p)}
    retention = state.retention_days
    days = max(0, int((rec.expires_utc_us(retention) - c.now_us()) // 86_400_000_000))
    ev = c.index.events(rec)
    approvals = state.approvals.get(rec.id, {})
    try:
        start_at = max(0.0, min(float(request.args.get("t", "0")), 24 * 3600.0))
    except ValueError:
        start_at = 0.0
    return render_template(
        "recording.html", rec=rec, state=state, ev=ev, events=in_true_order(ev.events), check=check,
        trail=c.index.trail(rec.id), receipts=c.index.receipts(rec), flagged=flagged,
        deleted=state.deleted.get(rec.id), holds=state.holds.get(rec.id, []), approvals=approvals,
        approvals_text=", ".join(f"{role_text(r, g.lang)} {officer_text(u) if r == 'officer' else u}"
                                 for r, u in approvals.items()),
        days=days, picture_time=picture_time(rec, ev.events), start_at=f"{start_at:.1f}",
        requests=state.release_requests.get(rec.id, {}))


def in_true_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events worth showing, in the order they happened on the camera — its event
    log's own numbering, which a clock set later cannot reorder — each marked
    ``before_clock`` when it happened before the camera's clock was set (its time then
    came from a clock not yet checked against the dock's, and may look out of order).

    >>> ev = [{"seq": 3, "kind": "officer_assigned"}, {"seq": 1, "kind": "state"}, {"seq": 2, "kind": "clock_set"}]
    >>> [(e["seq"], e["before_clock"]) for e in in_true_order(ev)]
    [(1, True), (2, False), (3, False)]
    """
    shown = sorted((e for e in events if e["kind"] in SHOWN_EVENTS), key=lambda e: e["seq"])
    set_at = next((e["seq"] for e in shown if e["kind"] == "clock_set"), None)
    return [{**e, "before_clock": set_at is not None and e["seq"] < set_at} for e in shown]


def picture_time(rec: Recording, events: list[dict[str, Any]]) -> str:
    """Why the time burned into the picture may differ from the page's, in a sentence."""
    clock = rec.first.clock or next((e["data"] for e in events if e["kind"] == "clock_set"), None)
    offset = clock.get("offset_us") if isinstance(clock, dict) else None
    if not isinstance(offset, (int, float)) or abs(offset) < 1_000_000:
        return text("picture_time_ok", g.lang)
    seconds = abs(offset) / 1e6
    amount = (f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min")
    when = clock.get("synced_utc_us")
    when_text = local_time(int(when), g.lang) if isinstance(when, (int, float)) else "—"
    # the dock's offset is what it added to the camera's clock: positive means the camera was behind
    return text("picture_time_text", g.lang, when=when_text, dock=clock.get("dock_id") or "—",
                offset=amount.replace(".", ",") if g.lang == "de" else amount,
                direction=text("clock_behind" if offset > 0 else "clock_ahead", g.lang))


def refusal(exc: Exception) -> str:
    """What went wrong, in the user's language where the refusal has a name."""
    key = getattr(exc, "key", "")
    if key and f"refused_{key}" in TEXT:
        return text(f"refused_{key}", g.lang, **getattr(exc, "params", {}))
    if isinstance(exc, StoreUnavailable):
        return text("store_unavailable", g.lang, error=str(exc)[:200])
    return str(exc)


def act(rid: str, fn: Callable[[Recording], Any], done: Callable[[Any], str]) -> Any:
    """Do it, then show the recording with what was done, in words (the message travels in
    the session, never in the address)."""
    rec, _ = ctx().recording(rid)
    try:
        result = fn(rec)
    except (Refused, LockedError, StoreUnavailable, IndexBusy, IndexCorrupt, IndexStale) as exc:
        flash(refusal(exc), "error")
    else:
        flash(done(result), "done")
    return redirect(url_for("recording.recording_page", rid=rid))


def confirm_page(title: str, what: str, button: str, rid: str, **fields: str) -> Any:
    """The second click for what cannot be undone: says what will happen, posts again."""
    return render_template("confirm.html", title=title, what=what, button=button, action=request.path,
                           fields=fields, back=url_for("recording.recording_page", rid=rid))


@bp.post("/recordings/<rid>/hold")
@login_required("clerk")
def hold(rid: str) -> Any:
    reason, case = request.form.get("reason", ""), request.form.get("case", "").strip()
    return act(rid, lambda rec: ctx().office.hold(rec.id, reason, case, g.user),
               lambda r: text("held_done" if r.get("changed", True) else "held_already", g.lang,
                              reason=text(reason, g.lang), case=case))


@bp.post("/recordings/<rid>/release")
@login_required("clerk", "supervisor")
def release(rid: str) -> Any:
    c = ctx()
    rec, state = c.recording(rid)
    reason, why = request.form.get("reason", ""), request.form.get("why", "").strip()
    hold_ = next((h for h in state.holds.get(rec.id, []) if h.reason == reason), None)
    asking = reason == "straf" and not state.is_supervisor(g.user)
    if request.form.get("confirm") != "1" and hold_ is not None:
        others = [h for h in state.holds.get(rec.id, []) if h.reason != reason]
        then = (text("release_then_held", g.lang) if others else
                text("release_then_due", g.lang,
                     when=local_time(rec.expires_utc_us(state.retention_days), g.lang, seconds=False)))
        what = text("confirm_release_request" if asking else "confirm_release_here", g.lang,
                    reason=text(reason, g.lang), case=hold_.case, then=then)
        return confirm_page(text("confirm_release_title", g.lang), what,
                            text("request_release" if asking else "release", g.lang), rid, reason=reason, why=why)
    return act(rid, lambda rec: c.office.release(rec.id, reason, g.user, why),
               lambda r: text("release_waiting_supervisor" if r.get("waiting_for") else "released_done", g.lang,
                              rec=recording_label(rec), reason=text(reason, g.lang)))


@bp.post("/recordings/<rid>/delete")
@login_required("officer", "supervisor")
def delete(rid: str) -> Any:
    c = ctx()
    rec, state = c.recording(rid)
    approvals = state.approvals.get(rec.id, {})
    mine = "officer" if g.role == "officer" else "supervisor"
    other = "supervisor" if mine == "officer" else "officer"
    if request.form.get("confirm") != "1":
        what = text("confirm_delete" if other in approvals else f"confirm_consent_{mine}", g.lang,
                    rec=recording_label(rec))
        return confirm_page(text("confirm_delete_title", g.lang), what,
                            text("confirm_delete_button" if other in approvals else "confirm_consent_button",
                                 g.lang), rid)

    def go(rec: Recording) -> dict[str, Any]:
        result = c.office.delete(rec.id, g.user)
        if result.get("deleted"):
            c.media.forget(rec.id)
        return result
    return act(rid, go, lambda r: text("deleted_done" if r.get("deleted") else f"delete_waiting_{r['waiting_for']}",
                                       g.lang, rec=recording_label(rec)))


@bp.post("/recordings/<rid>/export")
@login_required("clerk")
def export(rid: str) -> Any:
    c = ctx()
    rec, _ = c.recording(rid)
    token, d = c.exports.new(g.user, [rec.id])
    try:
        run_export(c.office, rec.id, c.identity, d / f"{rec.id}.mp4", g.user, g.lang)
    except Refused as exc:
        c.exports.discard(token)
        flash(refusal(exc), "error")
        return redirect(url_for("recording.recording_page", rid=rid))
    except BaseException:
        c.exports.discard(token)  # a failed export leaves no decrypted part behind
        raise
    c.exports.finish(token)
    return render_template("export.html", title=text("export_title", g.lang, rec=recording_label(rec)), token=token,
                           files=c.exports.sizes(token), expires=c.exports.expires_us(token),
                           minutes=round(c.exports.ttl_s / 60), contents=None,
                           back=url_for("recording.recording_page", rid=rec.id))


@bp.get("/exports/<token>/<name>")
@login_required("clerk")
def download(token: str, name: str) -> Any:
    """Only for the clerk who made the export, within its lifetime, while its recordings exist."""
    c = ctx()
    if not (SAFE_ID.fullmatch(name) and re.fullmatch(r"[0-9a-f]{32}", token)):
        abort(404)  # not a link the console ever made
    path = c.exports.file(token, name, g.user, c.any_deleted)
    if path is None:  # expired, another user's, its recording deleted, or never made: one answer for all
        return render_template("message.html", message=text("export_gone", g.lang,
                                                            minutes=round(c.exports.ttl_s / 60))), 410
    return send_file(path, as_attachment=True, download_name=name, max_age=0)
