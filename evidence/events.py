"""The camera's event log as the evidence office reads it: announcement, emergency start,
markers, clock settings, for one recording.

The dock stores the log in verified pieces (``devices/<device>/events/FIRST-LAST.cbors``,
docs/FORMAT.md §4); here every record is verified again with the device key registered in
the store. A piece that does not verify is skipped and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common import signed
from evidence.recordings import Recording
from evidence.store import EvidenceStore


@dataclass
class RecordingEvents:
    events: list[dict[str, Any]] = field(default_factory=list)   # {seq, utc_us, mono_us, kind, data}
    markers: list[dict[str, Any]] = field(default_factory=list)  # {n, utc_us, offset_s}: into the video
    problems: list[str] = field(default_factory=list)


def device_events(store: EvidenceStore, device_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for key in store.backend.keys(f"devices/{device_id}/events"):
        data = store.backend.read(key)
        records, torn = signed.split_sequence(data)
        for record in records:
            kid = (signed.kid_of(record) or b"").hex()
            known = store.public_key(kid)
            if known is None or known[0] != "device" or known[1] != device_id:
                problems.append(f"{key}: signed by a key not registered for {device_id}")
                break
            try:
                out.append(signed.open_signed(record, known[2]))
            except signed.SignatureError as exc:
                problems.append(f"{key}: {exc}")
                break
        if torn:
            problems.append(f"{key}: {torn} bytes after the last record")
    return sorted(out, key=lambda b: b.get("seq", 0)), problems


def for_recording(store: EvidenceStore, rec: Recording,
                  loaded: tuple[list[dict[str, Any]], list[str]] | None = None) -> RecordingEvents:
    """Events of the recording: those naming it, and those while it ran (by the camera's
    monotonic clock). Marker offsets count from the start of the exported video (the first
    segment's first pts, on the same clock). ``loaded``: the device's events, read once for
    many recordings."""
    events, problems = loaded if loaded is not None else device_events(store, rec.device_id)
    first = rec.first
    last = rec.segments[-1].manifest
    start, end = first.start_mono_us, (last.end_mono_us or last.start_mono_us)
    out = RecordingEvents(problems=problems)
    for e in events:
        data = e.get("data") or {}
        mono = e.get("mono_us", 0)
        if data.get("recording_id") == rec.id or start <= mono <= end:
            out.events.append({"seq": e.get("seq"), "utc_us": e.get("utc_us"), "mono_us": mono,
                               "kind": e.get("kind"), "data": data})
            if e.get("kind") == "marker":
                out.markers.append({"n": data.get("n"), "utc_us": e.get("utc_us"),
                                    "offset_s": round(max(0.0, (mono - first.first_pts_us) / 1e6), 3)})
    return out
