"""One recording: facts from its manifests, its verification (cached by the manifests'
hashes), its events and custody receipts, its audit entries, and the office's actions.
Everything comes from the index and costs what this recording holds, not the store."""

from __future__ import annotations

import re
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable

from flask import Blueprint, abort, flash, g, redirect, render_template, request, send_file, url_for

from evidence.console import ROLES_REVIEW, SAFE_ID, ctx, login_required
from evidence.console.i18n import TEXT, text
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
    return render_template(
        "recording.html", rec=rec, state=state, ev=c.index.events(rec), check=check, trail=c.index.trail(rec.id),
        receipts=c.index.receipts(rec), flagged=flagged,
        deleted=state.deleted.get(rec.id), holds=state.holds.get(rec.id, []),
        approvals=state.approvals.get(rec.id, {}), days=days, shown_events=SHOWN_EVENTS,
        requests=state.release_requests.get(rec.id, {}))


def refusal(exc: Exception) -> str:
    """What went wrong, in the user's language where the refusal has a name."""
    key = getattr(exc, "key", "")
    if key and f"refused_{key}" in TEXT:
        return text(f"refused_{key}", g.lang, **getattr(exc, "params", {}))
    if isinstance(exc, StoreUnavailable):
        return text("store_unavailable", g.lang, error=str(exc)[:200])
    return str(exc)


def act(rid: str, fn: Callable[[Recording], Any], waiting_key: str = "waiting") -> Any:
    """Do it, then show the recording with what happened (the message travels in the
    session, never in the address)."""
    rec, _ = ctx().recording(rid)
    try:
        result = fn(rec)
    except (Refused, LockedError, StoreUnavailable, IndexBusy, IndexCorrupt, IndexStale) as exc:
        flash(refusal(exc), "error")
    else:
        waiting = result.get("waiting_for") if isinstance(result, dict) else None
        flash(text(f"{waiting_key}_{waiting}" if waiting else "done", g.lang), "done")
    return redirect(url_for("recording.recording_page", rid=rid))


@bp.post("/recordings/<rid>/hold")
@login_required("clerk")
def hold(rid: str) -> Any:
    return act(rid, lambda rec: ctx().office.hold(rec.id, request.form.get("reason", ""),
                                                  request.form.get("case", ""), g.user))


@bp.post("/recordings/<rid>/release")
@login_required("clerk", "supervisor")
def release(rid: str) -> Any:
    return act(rid, lambda rec: ctx().office.release(rec.id, request.form.get("reason", ""), g.user,
                                                     request.form.get("why", "")), "release_waiting")


@bp.post("/recordings/<rid>/delete")
@login_required("officer", "supervisor")
def delete(rid: str) -> Any:
    def go(rec: Recording) -> dict[str, Any]:
        result = ctx().office.delete(rec.id, g.user)
        if result.get("deleted"):
            ctx().media.forget(rec.id)
        return result
    return act(rid, go, "delete_waiting")


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
    return render_template("export.html", title=f"{text('export', g.lang)}: {rec.id}", token=token,
                           files=c.exports.finish(token), back=url_for("recording.recording_page", rid=rec.id))


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
