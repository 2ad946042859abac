"""Redaction in the console: a clerk sets it up and lets it run; a second person reviews
any frame and approves it (four eyes: never its author; a supervisor, or with the office's
policy ``second`` any other clerk); then its author downloads it. The work runs in the
background in a private export directory (:mod:`.exports`: 0700, expiring — a draft lives
``draft_ttl_s``, a working day, so the approver has time; removed when the recording is
deleted); its decrypted source is removed at approval or when the directory expires.

    GET  /recordings/<rid>/redact       the form: areas drawn on the picture (or typed), audio, style
    POST /recordings/<rid>/redact       start → /redactions/<token>
    GET  /redactions/<token>            progress, then the preview (scrub to any time) and stats
    GET  /redactions/<token>/frame?t=   one frame with its boxes drawn (JPEG)
    POST /redactions/<token>/approve    (the approver) confirm, sign the report, record it
    POST /redactions/<token>/return     (the approver) send it back to its author, with a reason
    POST /redactions/<token>/discard    (its author)

A draft lives in this console's memory: a console restarted meanwhile has forgotten it
(its decrypted files went with the old process), and the clerk starts it again.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for

from evidence.console import ctx, login_required, recording_label
from evidence.console.i18n import text
from evidence.console.recording import refusal
from evidence.office import Refused
from evidence.redaction import redact as redaction
from evidence.redaction.render import AudioRange, Settings, preview
from evidence.redaction.track import Ignore, ManualBox

bp = Blueprint("redaction", __name__)
log = logging.getLogger("bodycam.console")
ROWS = 4                  # manual boxes and audio ranges the form offers
IGNORE_ROWS = 2           # false detections the form can drop
MAX_JOBS = 2              # redactions running at once on this console (2 cores)
TOKEN = re.compile(r"[0-9a-f]{32}")


@dataclass
class Job:
    user: str                       # its author
    recording: str
    stage: str = "decrypt"
    fraction: float = 0.0
    draft: Any = None
    error: str | None = None
    result: dict[str, Any] | None = None
    ready_us: int = 0               # when it was ready for review
    returned: dict[str, str] | None = None   # {by, why}: sent back by the approver
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def awaiting(self) -> bool:
        """Ready, and waiting for a second person's approval."""
        return self.draft is not None and self.result is None and self.returned is None and not self.running


def jobs() -> dict[str, Job]:
    return ctx().redactions


def _number(name: str, lo: float, hi: float) -> float | None:
    raw = request.form.get(name, "").strip().replace(",", ".")
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        raise Refused(text("redact_bad_number", g.lang, field=name)) from None
    if not math.isfinite(v) or not lo <= v <= hi:
        raise Refused(text("redact_bad_number", g.lang, field=name))
    return v


def _regions(prefix: str, rows: int) -> list[tuple[int, tuple[float, float], tuple[float, float, float, float]]]:
    """The filled rows ``PREFIX{i}_from/to/x0/y0/x1/y1``: (row, (from, to), box)."""
    out = []
    for i in range(rows):
        vals = [_number(f"{prefix}{i}_{k}", 0, 1e5) for k in ("from", "to", "x0", "y0", "x1", "y1")]
        if all(v is None for v in vals):
            continue
        if any(v is None for v in vals) or not (vals[0] <= vals[1] and vals[2] < vals[4] and vals[3] < vals[5]):
            raise Refused(text("redact_bad_box", g.lang, n=i + 1))
        out.append((i, (vals[0], vals[1]), (vals[2], vals[3], vals[4], vals[5])))
    return out


def _settings() -> Settings:
    """The form's boxes and ranges; a row left empty is skipped, a half-filled one refused."""
    boxes = [ManualBox(*span, box, request.form.get(f"box{i}_follow") == "on")
             for i, span, box in _regions("box", ROWS)]
    ignore = [Ignore(*span, box) for _, span, box in _regions("ignore", IGNORE_ROWS)]
    audio = []
    for i in range(ROWS):
        a, b = _number(f"audio{i}_from", 0, 1e7), _number(f"audio{i}_to", 0, 1e7)
        if a is None and b is None:
            continue
        if a is None or b is None or b < a:
            raise Refused(text("redact_bad_range", g.lang, n=i + 1))
        audio.append(AudioRange(a, b, "bleep" if request.form.get(f"audio{i}_mode") == "bleep" else "mute"))
    style = request.form.get("style", "fill")
    return Settings(manual=boxes, ignore=ignore, audio=audio,
                    style=style if style in ("fill", "pixelate") else "fill")


@bp.get("/recordings/<rid>/redact")
@login_required("clerk")
def form(rid: str) -> Any:
    rec, state = ctx().recording(rid)
    if rec.id in state.deleted:
        flash(text("refused_deleted", g.lang), "error")
        return redirect(url_for("recording.recording_page", rid=rid))
    return render_template("redact.html", rec=rec, rows=ROWS, ignore_rows=IGNORE_ROWS, width=rec.first.video.get("width"),
                           height=rec.first.video.get("height"),
                           duration=max(0.0, (rec.end_utc_us - rec.start_utc_us) / 1e6))


@bp.post("/recordings/<rid>/redact")
@login_required("clerk")
def start(rid: str) -> Any:
    c = ctx()
    rec, state = c.recording(rid)
    try:
        settings = _settings()
        settings.check()
    except (Refused, ValueError) as exc:
        flash(str(exc), "error")
        return redirect(url_for("redaction.form", rid=rid))
    for old in [k for k, j in jobs().items() if not (c.exports.root / k).is_dir()]:
        jobs().pop(old, None)       # expired or discarded meanwhile: forgotten
    if sum(j.running for j in jobs().values()) >= MAX_JOBS:
        flash(text("redact_busy", g.lang), "error")
        return redirect(url_for("redaction.form", rid=rid))
    token, d = c.exports.new(g.user, [rec.id], ttl_s=c.draft_ttl_s)
    work = d / "work"
    work.mkdir(mode=0o700)
    job = Job(g.user, rec.id)
    user, identity, office = g.user, c.identity, c.office

    def run() -> None:
        def progress(stage: str, f: float) -> None:
            job.stage, job.fraction = stage, f
        try:
            job.draft = redaction.prepare(office, rec.id, identity, work, settings, user, progress=progress)
            job.ready_us = office.now_us()
            job.stage = "review"
        except Refused as exc:
            job.error = str(exc)
            shutil.rmtree(work, ignore_errors=True)
        except Exception as exc:  # logged; the page says it failed, and no file is left
            log.exception("redaction of %s failed", rec.id)
            job.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            shutil.rmtree(work, ignore_errors=True)
    job.thread = threading.Thread(target=run, name=f"redact:{token[:8]}", daemon=True)
    jobs()[token] = job
    job.thread.start()
    return redirect(url_for("redaction.status", token=token))


def may_approve(job: Job) -> bool:
    """Whether the logged-in user may approve ``job`` (four eyes, the office's policy)."""
    return ctx().index.state([]).redaction_approver(g.user, job.user) is None


def _job(token: str, approver: bool = False) -> Job:
    """The job, for its author — or, with ``approver``, for one who may approve it."""
    job = jobs().get(token) if TOKEN.fullmatch(token) else None
    if job is None or not (job.user == g.user or (approver and may_approve(job))):
        abort(404)   # another clerk's, or never made: one answer
    if not (ctx().exports.root / token).is_dir():   # expired, or its recording was deleted
        jobs().pop(token, None)
        abort(Response(render_template("message.html", message=text("redact_gone", g.lang)), 410))
    return job


@bp.get("/redactions/<token>")
@login_required("clerk", "supervisor")
def status(token: str) -> Any:
    c = ctx()
    job = _job(token, approver=True)
    draft = job.draft
    t = 0.0
    if draft is not None:
        try:
            t = min(max(0.0, float(request.args.get("t", "0").replace(",", "."))), draft.plan.times[-1])
        except ValueError:
            t = 0.0
    author = job.user == g.user
    rec = c.index.row(job.recording)
    return render_template("redaction.html", job=job, token=token, draft=draft, at=t, author=author,
                           approver=not author and may_approve(job), rec=rec,
                           files=c.exports.sizes(token) if job.result and author else {},
                           expires=c.exports.expires_us(token), lost=_lost(draft),
                           state_policy=c.index.state([]).redaction_approval, minutes=round(c.exports.ttl_s / 60),
                           duration=draft.plan.times[-1] if draft else 0.0,
                           back=url_for("recording.recording_page", rid=job.recording) if author
                           else url_for("inbox.inbox"))


def _lost(draft: Any) -> list[tuple[int, float]]:
    """(area number, seconds) for every drawn area whose object the follower lost."""
    if draft is None:
        return []
    return [(i + 1, s) for i, s in enumerate(draft.plan.lost) if s is not None]


@bp.get("/redactions/<token>/frame")
@login_required("clerk", "supervisor")
def frame(token: str) -> Any:
    job = _job(token, approver=True)
    if job.draft is None or job.result is not None or not job.draft.source.exists():
        abort(404)
    try:
        t = float(request.args.get("t", "0"))
    except ValueError:
        abort(400)
    if not math.isfinite(t):
        abort(400)
    return Response(preview(job.draft.source, job.draft.plan, t), mimetype="image/jpeg",
                    headers={"Cache-Control": "no-store"})


@bp.post("/redactions/<token>/approve")
@login_required("clerk", "supervisor")
def approve(token: str) -> Any:
    c = ctx()
    job = _job(token, approver=True)
    if job.user == g.user:
        flash(text("refused_redact_own", g.lang), "error")
        return redirect(url_for("redaction.status", token=token))
    with job.lock:
        if not job.awaiting:
            return redirect(url_for("redaction.status", token=token))
        if request.form.get("confirm") != "1":
            rec = c.index.row(job.recording)
            return render_template(
                "confirm.html", title=text("redact_confirm_title", g.lang),
                what=text("redact_confirm", g.lang, when=recording_label(rec), author=job.user),
                action=url_for("redaction.approve", token=token), fields={}, button=text("redact_approve", g.lang),
                back=url_for("redaction.status", token=token))
        d = c.exports.root / token
        out = d / f"{job.recording}{redaction.SUFFIX}"
        try:
            job.result = redaction.approve(c.office, job.draft, out, g.user)
        except Refused as exc:
            flash(refusal(exc), "error")
            return redirect(url_for("redaction.status", token=token))
        shutil.rmtree(job.draft.workdir, ignore_errors=True)   # the decrypted source: no longer needed
        c.exports.finish(token)
    flash(text("redact_approved_by", g.lang, author=job.user), "done")
    return redirect(url_for("inbox.inbox"))


@bp.post("/redactions/<token>/return")
@login_required("clerk", "supervisor")
def send_back(token: str) -> Any:
    job = _job(token, approver=True)
    why = request.form.get("why", "").strip()[:500]
    if job.user == g.user or not job.awaiting:
        return redirect(url_for("redaction.status", token=token))
    if not why:
        flash(text("decline_why", g.lang), "error")
        return redirect(url_for("redaction.status", token=token))
    job.returned = {"by": g.user, "why": why}
    flash(text("redact_returned_done", g.lang, author=job.user), "done")
    return redirect(url_for("inbox.inbox"))


@bp.post("/redactions/<token>/discard")
@login_required("clerk")
def discard(token: str) -> Any:
    job = _job(token)
    if job.running:
        flash(text("redact_wait", g.lang), "error")
        return redirect(url_for("redaction.status", token=token))
    ctx().exports.discard(token)
    jobs().pop(token, None)
    flash(text("redact_discarded", g.lang), "done")
    return redirect(url_for("recording.recording_page", rid=job.recording))


def waiting_for(user: str) -> list[tuple[str, Job]]:
    """(token, job) of every redaction ``user`` may approve that waits for it, oldest first."""
    state = ctx().index.state([])
    return sorted(((t, j) for t, j in list(jobs().items())
                   if j.awaiting and state.redaction_approver(user, j.user) is None
                   and (ctx().exports.root / t).is_dir()), key=lambda tj: tj[1].ready_us)
