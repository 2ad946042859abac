"""``bodycam-evidence export``: a recording as one MP4 a court can open, with its report.

Segment by segment: the manifest is verified with the device key registered in the store,
the footage must have the manifest's SHA-256, and it is decrypted with the evidence
office's age identity (:func:`common.age_format.recover`, so a segment cut by a power
cut gives what was authenticated before the cut, flagged as truncated). The MPEG-TS
pieces carry the camera's absolute timestamps, so they join end to end; PyAV
(libavformat) then remuxes them into MP4 without re-encoding — the pictures are the
camera's own bits.

Beside ``OUT.mp4`` go ``OUT.report.json`` and ``OUT.report.html``: hashes, signatures,
device, officer, dock, receipts, clock offsets, truncated segments, the audit entries,
and whatever ``verify`` finds wrong with the recording (a missing segment is exported
around, never hidden: the report names the gap).
The export is recorded in the audit trail before the files take their names, so no
export exists that the trail does not show.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import av

from common import age_format, signed
from common.manifest import read_manifest
from evidence import audit
from evidence.office import Office, Refused, check_user
from evidence.recordings import Recording, iso
from evidence.store import EvidenceStore
from evidence.verify import verify_recording


def export(office: Office, recording_id: str, identity: bytes | list[bytes], out: Path, by: str, lang: str = "de") -> dict[str, Any]:
    check_user(by)
    if out.suffix.lower() != ".mp4":
        raise Refused(f"--out must name an .mp4 file, got {out}")
    if not out.parent.is_dir():
        raise Refused(f"--out: directory {out.parent} does not exist")
    if out.exists():
        raise Refused(f"--out {out} exists; an export never overwrites a file")
    store = office.store
    rec, state = office.find(recording_id)
    if rec.id in state.deleted:
        raise Refused(f"recording {rec.id} was deleted (audit record {state.deleted[rec.id].seq}); nothing to export",
                      "deleted")
    problems = verify_recording(office.idx(), rec, state, use_cache=False)["problems"]  # gaps, chain breaks: reported
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        mp4 = Path(tmp) / "export.mp4"
        receipts = office.idx().receipts(rec)
        segments, streams = render(store, rec, identity, mp4, receipts)
        digest = hashlib.sha256(mp4.read_bytes()).hexdigest()
        entry = office._record("export", by=by, device=rec.device_id, recording=rec.id,
                               details={"file": out.name, "sha256": digest, "segments": [s.seq for s in rec.segments]})
        office.refresh()
        report = _report(store, office, rec, segments, out, digest, mp4.stat().st_size, streams, by, entry)
        report["recording"]["verification_problems"] = problems
        report["language"] = lang
        report["labels"] = _labels(lang)
        (Path(tmp) / "report.json").write_text(json.dumps(report, indent=2))
        (Path(tmp) / "report.html").write_text(_html(report, lang))
        for name, target in (("report.json", _beside(out, ".report.json")), ("report.html", _beside(out, ".report.html")),
                             ("export.mp4", out)):
            os.replace(Path(tmp) / name, target)
    return {"recording": rec.id, "out": str(out), "sha256": digest, "report_json": str(_beside(out, ".report.json")),
            "report_html": str(_beside(out, ".report.html")), "duration_s": report["export"]["duration_s"],
            "frames": report["export"]["video_frames"], "truncated": report["recording"]["truncated"],
            "excluded_segments": report["recording"]["excluded_segments"], "verification_problems": problems,
            "audit_seq": entry.seq}


def render(store: EvidenceStore, rec: Recording, identity: bytes | list[bytes], mp4: Path,
           receipts: dict[int, list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Check, decrypt, join and remux ``rec`` into ``mp4``: (per-segment facts, stream facts).
    ``receipts``: the dock's custody receipts by seq (from the index). Refused if no segment
    can be included."""
    segments: list[dict[str, Any]] = []
    joined = mp4.with_name(mp4.name + ".ts")
    try:
        with open(joined, "wb") as ts:
            for s in rec.segments:
                segments.append(_segment(store, rec, s, identity, ts, receipts))
        if not any(seg["included"] for seg in segments):
            raise Refused(f"no footage of {rec.id} can be exported: "
                          + "; ".join(f"segment {seg['seq']}: {seg['excluded_reason']}" for seg in segments), "no_footage")
        streams = _remux(joined, mp4, rec.first.audio)
    finally:
        joined.unlink(missing_ok=True)
    return segments, streams


def _beside(out: Path, suffix: str) -> Path:
    return out.with_name(out.stem + suffix)


def _segment(store: EvidenceStore, rec: Recording, s: Any, identity: bytes | list[bytes], ts: Any,
             receipts: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    m = s.manifest
    known = store.public_key(m.device_key)
    signature = "device key not registered in the store"
    if known is not None and known[0] == "device" and known[1] == rec.device_id:
        try:
            read_manifest(s.record, known[2])
            signature = "verified"
        except signed.SignatureError as exc:
            signature = f"does not verify: {exc}"
    base = {"seq": s.seq, "index": m.index, "file": m.file, "size": m.size, "sha256": m.sha256.hex(),
            "manifest_sha256": signed.digest(s.record).hex(), "signature": signature,
            "start_utc": iso(m.start_utc_us), "frames": m.frames, "receipts": receipts.get(s.seq, [])}
    try:
        data = store.footage(rec.device_id, s.seq)
    except FileNotFoundError:
        return {**base, "included": False, "excluded_reason": "footage not in the store"}
    if hashlib.sha256(data).digest() != m.sha256:
        return {**base, "included": False, "excluded_reason": "does not match the SHA-256 in its manifest"}
    try:
        got = age_format.recover(data, identity)
    except age_format.AgeError as exc:
        raise Refused(f"cannot decrypt segment {s.seq} with this identity: {exc}", "identity", seq=s.seq) from None
    ts.write(got.plaintext)
    clock = m.clock or {}
    return {
        **base, "included": True, "sha256_matches": True,
        "complete": m.complete, "decrypted_complete": got.complete, "truncated": not (m.complete and got.complete),
        "truncated_reason": got.reason or (None if m.complete else "sealed after an interruption (power cut)"),
        "end_utc": iso(m.end_utc_us) if m.end_utc_us is not None else None, "audio_packets": m.audio_packets,
        "clock": {"offset_us": clock.get("offset_us"), "synced_utc": iso(clock["synced_utc_us"])
                  if isinstance(clock.get("synced_utc_us"), int) else None, "dock_id": clock.get("dock_id")},
        "receipts": receipts.get(s.seq, []),
    }


def _remux(src: Path, dst: Path, audio_params: dict[str, Any] | None) -> dict[str, Any]:
    """TS → MP4, packets copied (no re-encode), the first packet at time 0; what went in.

    The audio format comes from the manifest: audio is off during pre-record, so a
    demuxer's probe at the start of the file often sees no audio packet to learn it from.
    """
    counts: dict[int, int] = {}
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as outp:
        if not any(s.type == "video" for s in inp.streams):
            raise Refused("the recording holds no video stream")
        mapping = {}
        for s in inp.streams:
            if s.type not in ("video", "audio"):
                continue
            o = outp.add_stream_from_template(s)
            if s.type == "audio" and audio_params and not s.codec_context.sample_rate:
                o.codec_context.sample_rate = int(audio_params["sample_rate"])
                o.codec_context.layout = "mono" if audio_params.get("channels", 1) == 1 else "stereo"
            mapping[s.index] = o
        offset: int | None = None
        first = last = None
        for packet in inp.demux([s for s in inp.streams if s.index in mapping]):
            if packet.dts is None:
                continue
            if offset is None:  # MPEG-TS: every stream counts in 1/90000 s
                offset = packet.dts
            packet.dts -= offset
            if packet.pts is not None:
                packet.pts -= offset
                if packet.stream.type == "video":
                    t = float(packet.pts * packet.time_base)
                    first = t if first is None else min(first, t)
                    last = t if last is None else max(last, t)
            counts[packet.stream.index] = counts.get(packet.stream.index, 0) + 1
            packet.stream = mapping[packet.stream.index]
            outp.mux(packet)
        video = next(s for s in inp.streams if s.type == "video")
        audio = next((s for s in inp.streams if s.type == "audio"), None)
        return {"video_codec": video.codec_context.name, "width": video.codec_context.width,
                "height": video.codec_context.height, "video_frames": counts.get(video.index, 0),
                "audio_codec": audio.codec_context.name if audio else None,
                "audio_packets": counts.get(audio.index, 0) if audio else 0,
                "video_span_s": (last - first) if first is not None and last is not None else 0.0}


def _report(store: EvidenceStore, office: Office, rec: Recording, segments: list[dict[str, Any]], out: Path,
            digest: str, size: int, streams: dict[str, Any], by: str, entry: audit.Entry) -> dict[str, Any]:
    m = rec.first
    fps = (m.video or {}).get("fps")
    frame_s = 1 / fps if isinstance(fps, (int, float)) and fps > 0 else 0.0
    known = store.public_key(m.device_key)
    return {
        "report": "open-bodycam evidence export", "version": 1,
        "recording": {
            "id": rec.id, "device": rec.device_id, "device_key": m.device_key,
            "device_key_registered_for": f"{known[0]} {known[1]}" if known else None,
            "officer": rec.officer_id, "officer_name": office.officers().get(rec.officer_id or ""),
            "start_utc": iso(rec.start_utc_us), "end_utc": iso(rec.end_utc_us),
            "announced": m.announced, "pre_record_s": m.pre_record_s, "truncated": rec.truncated,
            "segments": len(rec.segments), "frames_in_manifests": rec.frames,
            "all_signatures_verified": all(s["signature"] == "verified" for s in segments),
            "excluded_segments": [s["seq"] for s in segments if not s["included"]],
        },
        "segments": segments,
        "export": {
            "file": out.name, "sha256": digest, "size": size, "container": "mp4 (remuxed, not re-encoded)",
            "duration_s": round(streams["video_span_s"] + frame_s, 3), **streams,
            "by": by, "utc": iso(office.now_us()), "audit_seq": entry.seq, "audit_digest": entry.digest.hex(),
            # where the evidence lies, without this machine's paths: a bucket by name, a directory as such
            "store": store.location if store.location.startswith("s3://") else "directory",
        },
        "audit": [e.to_json(office.idx().signers()) for e in office.idx().trail(rec.id)],
        "how_to_check": [
            "sha256sum the MP4 and compare with export.sha256",
            "each segment's sha256 is signed in its manifest (COSE_Sign1, Ed25519, docs/FORMAT.md §3)",
            "bodycam-evidence verify --recording ID re-checks the stored segments and the chain",
        ],
    }


LABELS = {  # the report's words: German (the office's), English
    "title": ("Beweisbericht", "Evidence report"), "recording": ("Aufnahme", "Recording"),
    "device": ("Kamera", "Device"), "device_key": ("Geräteschlüssel (SHA-256)", "Device key (SHA-256)"),
    "officer": ("Einsatzkraft", "Officer"), "start": ("Beginn", "Start"), "end": ("Ende", "End"),
    "announced": ("Angekündigt", "Announced"), "yes": ("ja", "yes"),
    "not_announced": ("nein (Gefahr im Verzug)", "no (imminent danger)"), "no": ("NEIN", "NO"),
    "signatures": ("Alle Signaturen geprüft", "All signatures verified"),
    "truncated": ("Abgeschnittene Segmente", "Truncated segments"), "none": ("keine", "none"),
    "problems": ("Befunde der Prüfung", "Verification problems"), "file": ("Exportdatei", "Export file"),
    "file_sha": ("SHA-256 der Exportdatei", "Export SHA-256"), "duration": ("Dauer", "Duration"),
    "video": ("Video", "Video"), "audio": ("Ton", "Audio"), "frames": ("Bilder", "frames"),
    "packets": ("Pakete", "packets"), "by": ("Exportiert von", "Exported by"),
    "at": ("am", "at"), "audit_record": ("Protokolleintrag", "audit record"), "store": ("Speicher", "Store"),
    "segments": ("Segmente", "Segments"), "seq": ("Nr.", "Seq"), "signature": ("Signatur", "Signature"),
    "state": ("Zustand", "State"), "clock": ("Uhr gestellt um", "Clock corrected by"),
    "what": ("Was geschah", "What happened"), "office": ("Beweismittelstelle (Evidenzspeicher)", "Evidence office store"),
    "receipts": ("Empfangsbestätigungen der Dockingstation", "Custody receipts"),
    "trail": ("Protokoll dieser Aufnahme", "Audit trail of this recording"), "time": ("Zeit", "Time"),
    "action": ("Aktion", "Action"), "person": ("durch", "By"), "signed_by": ("signiert von", "Signed by"),
    "complete": ("vollständig", "complete"), "cut": ("abgeschnitten", "truncated"),
    "not_exported": ("NICHT EXPORTIERT", "NOT EXPORTED"), "unverified": ("nicht geprüft", "unverified"),
    "verified": ("geprüft", "verified"), "generated": ("Erstellt", "Generated"),
    "utc_note": ("Zeiten in Ortszeit (Europe/Berlin), UTC in Klammern.", "Times local (Europe/Berlin), UTC in brackets."),
}
ROLE_WORDS = {"office": ("Beweismittelstelle", "office"), "dock": ("Dockingstation", "dock"),
              "device": ("Kamera", "device"), "unknown": ("unbekannt", "unknown")}


def _labels(lang: str) -> dict[str, str]:
    """What the JSON report's main fields are called for people (in ``lang``)."""
    i = 0 if lang == "de" else 1
    fields = {"recording.id": "recording", "recording.device": "device", "recording.device_key": "device_key",
              "recording.officer": "officer", "recording.start_utc": "start", "recording.end_utc": "end",
              "recording.announced": "announced", "recording.all_signatures_verified": "signatures",
              "recording.truncated": "truncated", "recording.verification_problems": "problems",
              "export.file": "file", "export.sha256": "file_sha", "export.duration_s": "duration",
              "export.by": "by", "export.store": "store", "segments": "segments", "segments.receipts": "receipts",
              "audit": "trail"}
    return {k: LABELS[v][i] for k, v in fields.items()}


def _state(s: dict[str, Any], w: Any) -> str:
    if not s["included"]:
        return f"<b>{w('not_exported')}</b>: " + html.escape(s["excluded_reason"])
    return f"<b>{w('cut')}</b>: " + html.escape(str(s["truncated_reason"])) if s["truncated"] else w("complete")


def _receipts_text(receipts: list[dict[str, Any]], w: Any, lang: str) -> str:
    return ", ".join(f"{c['dock_id']} {_when(c['stored_utc'], lang)}" + ("" if c["signature_verified"]
                                                                       else f" ({w('unverified')})")
                     for c in receipts) or w("none")


def _when(text: str | None, lang: str) -> str:
    """ISO UTC → "02.12.2026, 12:01:40 (11:01:40 UTC)" in the office's time zone."""
    if not text:
        return "—"
    from zoneinfo import ZoneInfo
    t = dt.datetime.fromisoformat(text)
    local = t.astimezone(ZoneInfo("Europe/Berlin"))
    fmt = "%d.%m.%Y, %H:%M:%S" if lang == "de" else "%Y-%m-%d %H:%M:%S"
    return f"{local.strftime(fmt)} ({t.astimezone(dt.timezone.utc).strftime('%H:%M:%S')} UTC)"


def _duration(seconds: float, lang: str) -> str:
    """0:48 (48,1 s) — as a player shows it, and to the tenth."""
    whole = max(0, round(seconds))
    clock = f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}" if whole >= 3600 else f"{whole // 60}:{whole % 60:02d}"
    exact = f"{seconds:.1f} s"
    return f"{clock} ({exact.replace('.', ',') if lang == 'de' else exact})"


def _offset(us: Any, lang: str) -> str:
    """A clock correction in words: "+53,7 s" (the camera was behind), "—" if none."""
    if not isinstance(us, (int, float)):
        return "—"
    text = f"{us / 1e6:+.1f} s"
    return text.replace(".", ",") if lang == "de" else text


def _html(report: dict[str, Any], lang: str = "de") -> str:
    """The report for people, in German (``lang="en"``: English); the JSON beside it has the same facts."""
    from evidence.audit import Entry
    from evidence.console.i18n import action_text
    from evidence.console.words import audit_sentence
    i = 0 if lang == "de" else 1

    def w(key: str) -> str:
        return LABELS[key][i]
    e = html.escape
    r, x = report["recording"], report["export"]
    rows = "".join(
        f"<tr><td>{n}</td><td>{e(_when(s['start_utc'], lang))}</td><td>{e(_when(s.get('end_utc'), lang))}</td>"
        f"<td>{s['frames']}</td><td><code>{e(s['sha256'])}</code></td>"
        f"<td>{e(w('verified') if s['signature'] == 'verified' else s['signature'])}</td>"
        f"<td>{_state(s, w)}</td><td>{e(_offset(s.get('clock', {}).get('offset_us'), lang))}</td>"
        f"<td>{e(_receipts_text(s['receipts'], w, lang))}</td></tr>"
        for n, s in enumerate(report["segments"], 1))

    def signer(a: dict[str, Any]) -> str:
        role, who = a["signer"]["role"], a["signer"]["id"]
        word = ROLE_WORDS.get(role, (role,) * 2)[i]
        return word if who in (role, "", "?") else f"{word} {who}"
    trail = "".join(
        f"<tr><td>{a['seq']}</td><td>{e(_when(iso(a['utc_us']), lang))}</td><td>{e(action_text(a['action'], lang))}</td>"
        f"<td>{e(str(a['by'] or ''))}</td><td>{e(audit_sentence(Entry(a['seq'], a['utc_us'], a['action'], a['by'], None, None, a.get('details') or {}, '', b''), lang))}</td>"
        f"<td>{e(signer(a))}</td></tr>" for a in report["audit"])
    officer = f"{r['officer_name']} ({r['officer']})" if r.get("officer_name") else (r["officer"] or "—")
    facts = [(w("recording"), r["id"]), (w("device"), r["device"]), (w("device_key"), r["device_key"]),
             (w("officer"), officer), (w("start"), _when(r["start_utc"], lang)),
             (w("end"), _when(r["end_utc"], lang)),
             (w("announced"), w("yes") if r["announced"] else w("not_announced")),
             (w("signatures"), w("yes") if r["all_signatures_verified"] else w("no")),
             (w("truncated"), w("yes") if r["truncated"] else w("none")),
             (w("problems"), "; ".join(r["verification_problems"]) or w("none")),
             (w("file"), x["file"]), (w("file_sha"), x["sha256"]), (w("duration"), _duration(x["duration_s"], lang)),
             (w("video"), f"{x['video_codec']} {x['width']}×{x['height']}, {x['video_frames']} {w('frames')}"),
             (w("audio"), f"{x['audio_codec']}, {x['audio_packets']} {w('packets')}" if x["audio_codec"] else w("none")),
             (w("by"), f"{x['by']} {w('at')} {_when(x['utc'], lang)} ({w('audit_record')} {x['audit_seq']})"),
             (w("store"), w("office"))]
    table = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts)
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{w('title')} {e(r['id'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}}code{{font-size:85%}}</style>
</head><body>
<h1>{w('title')}: <bdi>{e(r['id'])}</bdi></h1>
<p>{w('utc_note')}</p>
<table>{table}</table>
<h2>{w('segments')}</h2>
<table><tr><th>{w('seq')}</th><th>{w('start')}</th><th>{w('end')}</th><th>{w('video')}: {w('frames')}</th><th>SHA-256</th>
<th>{w('signature')}</th><th>{w('state')}</th><th>{w('clock')}</th><th>{w('receipts')}</th></tr>{rows}</table>
<h2>{w('trail')}</h2>
<table><tr><th>#</th><th>{w('time')}</th><th>{w('action')}</th><th>{w('person')}</th><th>{w('what')}</th><th>{w('signed_by')}</th></tr>{trail}</table>
<p>{w('generated')} {e(_when(dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'), lang))} · open-bodycam</p>
</body></html>
"""
