"""``bodycam-evidence redact`` and the console's redaction: a recording to an approved,
redacted copy.

1. :func:`prepare`: the recording is checked, decrypted and joined exactly as ``export``
   does (:func:`evidence.export.render`) into a private working directory, analysed
   (faces, manual boxes) and rendered to ``redacted.mp4`` there. A deleted recording is
   refused; a held one may be redacted (disclosure is one reason to hold it).
2. Review: the console shows any frame with its boxes (:func:`evidence.redaction.render.preview`).
3. :func:`approve`: the report is signed with the office key, a ``redact`` record goes into
   the audit trail, and only then do the files take their names beside ``out`` —
   ``NAME.redacted.mp4``, ``NAME.redacted.report.cbor`` and ``.report.json``.

The working directory holds decrypted footage: callers remove it (the CLI's temporary
directory, the console's expiring cache). A failure anywhere leaves no redacted file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from evidence.office import Office, Refused, check_user
from evidence.recordings import Recording
from evidence.redaction import detect, render
from evidence.redaction import report as reports
from evidence.redaction.render import Plan, Settings

SUFFIX = ".redacted.mp4"


@dataclass
class Draft:
    """A redaction rendered but not yet approved (nothing of it has left ``workdir``)."""
    recording: Recording
    workdir: Path
    settings: Settings
    plan: Plan
    detector: detect.ModelInfo
    sources: list[dict[str, Any]]
    output: dict[str, Any]
    redacted_by: str
    redacted_utc: str

    @property
    def source(self) -> Path:
        return self.workdir / "source.mp4"

    @property
    def video(self) -> Path:
        return self.workdir / "redacted.mp4"


def _utc(now_us: int) -> str:
    return dt.datetime.fromtimestamp(now_us / 1e6, dt.timezone.utc).isoformat(timespec="seconds")


def prepare(office: Office, recording_id: str, identity: bytes | list[bytes], workdir: Path, settings: Settings,
            by: str, *, detector: detect.Detector | None = None,
            progress: Callable[[str, float], None] = lambda stage, f: None) -> Draft:
    """Decrypt, analyse and render ``recording_id`` into ``workdir`` (which must exist, empty)."""
    from evidence.export import render as export_render
    check_user(by)
    try:
        settings.check()
    except ValueError as exc:
        raise Refused(f"redaction settings: {exc}") from None
    rec, state = office.find(recording_id)
    if rec.id in state.deleted:
        raise Refused(f"recording {rec.id} was deleted (audit record {state.deleted[rec.id].seq}); "
                      "nothing to redact", "deleted")
    try:
        det = detector or detect.load("centerface", settings.width)
    except detect.ModelMissing as exc:
        raise Refused(str(exc), "model_missing") from None
    progress("decrypt", 0.0)
    segments, _ = export_render(office.store, rec, identity, workdir / "source.mp4", office.idx().receipts(rec))
    sources = [{"seq": s["seq"], "file": s["file"], "sha256": s["sha256"], "manifest_sha256": s["manifest_sha256"],
                "included": s["included"]} for s in segments]
    try:
        plan = render.analyse(workdir / "source.mp4", det, settings, lambda f: progress("analyse", f))
        out = render.render(workdir / "source.mp4", plan, settings, workdir / "redacted.mp4",
                            {"title": f"GESCHWÄRZT / REDACTED – {rec.id}",
                             "comment": f"redacted copy of recording {rec.id} (open bodycam); the signed report "
                                        "names its sources, detector and every masked region"},
                            lambda f: progress("render", f))
    except ValueError as exc:
        raise Refused(f"the recording cannot be redacted: {exc}") from None
    out.update({"masked_frames": plan.masked_frames(), "detections": plan.detections})
    return Draft(rec, workdir, settings, plan, det.info, sources, out, by, _utc(office.now_us()))


def body(draft: Draft, out_name: str, sha256: str, size: int, approved_by: str, approved_utc: str) -> dict[str, Any]:
    s = draft.settings
    info = draft.detector
    return {
        "type": reports.TYPE, "v": 1, "recording": draft.recording.id, "device": draft.recording.device_id,
        "officer": draft.recording.officer_id, "source": draft.sources,
        "detector": {"name": info.name, "package": info.package, "file": info.file, "sha256": info.sha256,
                     "runtime": info.runtime},
        "settings": s.to_json(),
        "manual": [{**m.to_json(), "lost_s": lost} for m, lost in zip(s.manual, draft.plan.lost or [None] * len(s.manual))],
        "ignored": [i.to_json() for i in s.ignore],
        "audio": [a.to_json() for a in s.audio],
        "output": {**draft.output, "file": out_name, "sha256": sha256, "size": size},
        "redacted_by": draft.redacted_by, "redacted_utc": draft.redacted_utc,
        "approved_by": approved_by, "approved_utc": approved_utc,
    }


def check_approver(office: Office, author: str, approved_by: str) -> None:
    """Four eyes on disclosure: :class:`Refused` unless ``approved_by`` may approve what
    ``author`` redacted (never the author; a supervisor, or with the office's policy
    ``second`` any other clerk)."""
    check_user(approved_by, "--approved-by")
    state = office._policy()
    why = state.redaction_approver(approved_by, author)
    if why == "own":
        raise Refused(f"{approved_by} made this redaction and cannot approve it too: a second person approves a "
                      "disclosure (four eyes)", "redact_own")
    if why is not None:
        who = "a supervisor" if state.redaction_approval == "supervisor" else "a supervisor or another clerk"
        raise Refused(f"{approved_by} may not approve a redaction: that needs {who} "
                      f"(init --redaction-approval; supervisors: {', '.join(state.supervisors) or 'none named'})",
                      "redact_approver")


def approve(office: Office, draft: Draft, out: Path, approved_by: str) -> dict[str, Any]:
    """Sign the report, record it, and give the files their names beside ``out``."""
    check_approver(office, draft.redacted_by, approved_by)
    check_out(out)
    office.check_key()
    digest = reports._sha256_file(draft.video)
    size = draft.video.stat().st_size
    now = office.now_us()
    report_body = body(draft, out.name, digest, size, approved_by, _utc(now))
    data = office.sign(report_body)
    report_sha = hashlib.sha256(data).hexdigest()
    staged = {".report.cbor": draft.workdir / "report.cbor", ".report.json": draft.workdir / "report.json"}
    staged[".report.cbor"].write_bytes(data)
    staged[".report.json"].write_text(json.dumps({**report_body, "signature": {
        "file": out.name.removesuffix(".mp4") + ".report.cbor", "sha256": report_sha,
        "check": f"bodycam-evidence --store STORE check-redaction --report {out.name.removesuffix('.mp4')}"
                 f".report.cbor --video {out.name}"}}, indent=2, ensure_ascii=False))
    entry = office._record("redact", by=draft.redacted_by, device=draft.recording.device_id,
                           recording=draft.recording.id,
                           details={"file": out.name, "sha256": digest, "report_sha256": report_sha,
                                    "approved_by": approved_by, "segments": [s["seq"] for s in draft.sources],
                                    "manual": len(draft.settings.manual), "audio_ranges": len(draft.settings.audio)})
    targets = [(staged[".report.cbor"], out.with_name(out.name.removesuffix(".mp4") + ".report.cbor")),
               (staged[".report.json"], out.with_name(out.name.removesuffix(".mp4") + ".report.json")),
               (draft.video, out)]
    for src, dst in targets:
        if src.stat().st_dev == dst.parent.stat().st_dev:
            os.replace(src, dst)
        else:   # another filesystem: copy beside, then rename, so no half file carries the name
            tmp = dst.with_name(f".{dst.name}.part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    return {"recording": draft.recording.id, "out": str(out), "sha256": digest, "size": size,
            "report": str(targets[0][1]), "report_json": str(targets[1][1]), "report_sha256": report_sha,
            "frames": draft.output["frames"], "masked_frames": draft.output["masked_frames"],
            "detections": draft.output["detections"], "approved_by": approved_by, "audit_seq": entry.seq}


def check_out(out: Path) -> None:
    if not out.name.endswith(SUFFIX) or len(out.name) <= len(SUFFIX):
        raise Refused(f"--out must name a file ending in {SUFFIX} (the name says it is redacted), got {out.name}")
    if not out.parent.is_dir():
        raise Refused(f"--out: directory {out.parent} does not exist")
    for p in (out, out.with_name(out.name.removesuffix(".mp4") + ".report.cbor")):
        if p.exists():
            raise Refused(f"{p} exists; a redaction never overwrites a file")


def check(office: Office, report_path: Path, video: Path | None) -> dict[str, Any]:
    """``check-redaction``: the report's signature, its sources against the store, the video."""
    try:
        if report_path.stat().st_size > reports.MAX_REPORT:
            raise Refused(f"--report: {report_path} is {report_path.stat().st_size:,} bytes, not a redaction report")
        data = report_path.read_bytes()
    except OSError as exc:
        raise Refused(f"--report: {exc}") from None
    body_, problems = reports.check(office.store, data, video)
    return {"ok": not problems, "recording": body_.get("recording") if body_ else None,
            "approved_by": body_.get("approved_by") if body_ else None,
            "segments": len(body_.get("source", [])) if body_ else 0,
            "report_sha256": hashlib.sha256(data).hexdigest() if body_ else None, "problems": problems}
