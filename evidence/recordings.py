"""Recordings as the evidence office sees them: segments grouped by their manifests.

A recording is every stored segment whose manifest names its ``recording_id``, in
``index`` order. Manifests are read without trusting them here (listing and filtering);
:mod:`evidence.verify` checks signatures, hashes and chains.

>>> import tempfile
>>> from pathlib import Path
>>> from evidence.store import FsEvidenceStore
>>> index(FsEvidenceStore(Path(tempfile.mkdtemp())))
{}
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from common import signed
from common.manifest import SegmentManifest, read_manifest
from evidence.state import State
from evidence.store import EvidenceStore


@dataclass(frozen=True)
class Segment:
    seq: int
    record: bytes                      # the manifest as stored (COSE_Sign1)
    manifest: SegmentManifest


@dataclass
class Recording:
    id: str
    device_id: str
    segments: list[Segment] = field(default_factory=list)

    @property
    def first(self) -> SegmentManifest:
        return self.segments[0].manifest

    @property
    def officer_id(self) -> str | None:
        return self.first.officer_id

    @property
    def start_utc_us(self) -> int:
        return self.first.start_utc_us

    @property
    def end_utc_us(self) -> int:
        """When the recording ended: the last segment's end (its start if it was cut)."""
        last = self.segments[-1].manifest
        return last.end_utc_us if last.end_utc_us is not None else last.start_utc_us

    @property
    def truncated(self) -> bool:
        return any(not s.manifest.complete for s in self.segments)

    @property
    def frames(self) -> int:
        return sum(s.manifest.frames or 0 for s in self.segments)

    def expires_utc_us(self, retention_days: int) -> int:
        """Two weeks (the policy's days) after the recording, counted from its end."""
        return self.end_utc_us + retention_days * 86_400_000_000

    def summary(self, state: State) -> dict[str, Any]:
        deleted = state.deleted.get(self.id)
        return {
            "id": self.id, "device": self.device_id, "officer": self.officer_id,
            "start_utc": iso(self.start_utc_us), "end_utc": iso(self.end_utc_us),
            "duration_s": round((self.end_utc_us - self.start_utc_us) / 1e6, 3),
            "segments": [s.seq for s in self.segments], "frames": self.frames,
            "announced": self.first.announced, "truncated": self.truncated,
            "final": self.segments[-1].manifest.final,
            "held": state.held(self.id), "holds": [h.to_json() for h in state.holds.get(self.id, [])],
            "expires_utc": iso(self.expires_utc_us(state.retention_days)),
            "deleted": None if deleted is None else {"action": deleted.action, "utc_us": deleted.utc_us,
                                                      "audit_seq": deleted.seq},
            "delete_approvals": state.approvals.get(self.id, {}),
        }


def iso(utc_us: int) -> str:
    return dt.datetime.fromtimestamp(utc_us / 1e6, dt.timezone.utc).isoformat(timespec="seconds")


def index(store: EvidenceStore) -> dict[str, Recording]:
    """Every recording in the store, by id, read whole: the reference the office's index
    (:mod:`evidence.index`) is tested against; the office itself never reads the store
    this way. A manifest that cannot even be decoded is left out here."""
    out: dict[str, Recording] = {}
    for device in store.devices():
        for seq in store.segments(device):
            record = store.manifest(device, seq)
            try:
                m = read_manifest(record, None)
            except signed.SignatureError:
                continue
            rec = out.setdefault(m.recording_id, Recording(m.recording_id, device))
            rec.segments.append(Segment(seq, record, m))
    for rec in out.values():
        rec.segments.sort(key=lambda s: (s.manifest.index, s.seq))
    return dict(sorted(out.items(), key=lambda kv: (kv[1].start_utc_us, kv[0])))


class UnknownRecording(LookupError):
    """No recording of that id in the store; the message says how to find one."""
