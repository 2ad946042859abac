"""``bodycam-evidence verify``: is every stored recording whole and genuine?

Per device, in seq order, every manifest must verify with the device key registered in
the store and chain on the one before (seq + 1, ``prev`` = its SHA-256), from seq 1;
every segment's footage must be there with the manifest's SHA-256 — unless the audit
trail records its deletion (then it must be gone). A gap in the chain is reported on
the recording after it (and, if the dock quarantined the missing segment, why).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from common import signed
from common.manifest import read_manifest, segment_file_name
from evidence.recordings import Recording, index
from evidence.state import State
from evidence.store import EvidenceStore


@dataclass
class Result:
    id: str
    deleted: bool = False
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ok": not self.problems, "deleted": self.deleted, "problems": self.problems}


def verify(store: EvidenceStore, state: State, only: str | None = None) -> dict[str, Any]:
    recordings = index(store)
    results = {rid: Result(rid, rid in state.deleted) for rid in recordings if only in (None, rid)}
    general: list[str] = []
    for device in store.devices():
        seqs = store.segments(device)
        prev_seq, prev_digest = 0, None
        by_seq = {s.seq: r for r in recordings.values() if r.device_id == device for s in r.segments}
        last_seq = seqs[-1] if seqs else 0
        for seq in seqs:
            record = store.manifest(device, seq)
            rec = by_seq.get(seq)
            out = results.get(rec.id) if rec else None
            if rec is None:
                general.append(f"{device}: manifest {seq:08d} cannot be read at all")
                prev_seq, prev_digest = seq, signed.digest(record)
                continue
            if out is None:  # not the recording asked for: follow the chain only
                prev_seq, prev_digest = seq, signed.digest(record)
                continue
            m = next(s.manifest for s in rec.segments if s.seq == seq)
            known = store.public_key(m.device_key)
            if known is None or known[0] != "device" or known[1] != device:
                out.problems.append(f"segment {seq}: its device key {m.device_key[:16]}… is not registered in "
                                    f"the store for {device}")
            else:
                try:
                    read_manifest(record, known[2])
                except signed.SignatureError as exc:
                    out.problems.append(f"segment {seq}: manifest does not verify: {exc}")
            if seq != prev_seq + 1:
                missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}–{seq - 1}"
                why = [f"{n} quarantined at the dock" for n in range(prev_seq + 1, seq)
                       if store.is_quarantined(device, segment_file_name(n))]
                out.problems.append(f"segment {seq}: segments {missing} of {device} are missing before it"
                                    + (f" ({', '.join(why)})" if why else ""))
            elif m.prev != prev_digest:
                out.problems.append(f"segment {seq}: does not chain on from segment {prev_seq} "
                                    "(prev hash differs: a manifest was replaced)")
            prev_seq, prev_digest = seq, signed.digest(record)
            _check_footage(store, state, rec, seq, m.sha256, out)
        for rec in recordings.values():
            if rec.device_id == device and rec.id in results:
                _check_recording(rec, last_seq, results[rec.id])
    ok = not general and all(not r.problems for r in results.values())
    return {"ok": ok, "recordings": [r.to_json() for r in results.values()], "problems": general}


def _check_footage(store: EvidenceStore, state: State, rec: Recording, seq: int, sha256: bytes,
                   out: Result) -> None:
    deleted = state.deleted.get(rec.id)
    present = store.has_footage(rec.device_id, seq)
    if deleted is not None:
        if present:
            out.problems.append(f"segment {seq}: deleted per audit record {deleted.seq}, but its footage is "
                                "still in the store (run the deletion again to finish it)")
    elif not present:
        out.problems.append(f"segment {seq}: footage missing, and the audit trail records no deletion")
    elif hashlib.sha256(store.footage(rec.device_id, seq)).digest() != sha256:
        out.problems.append(f"segment {seq}: footage does not match the SHA-256 in its manifest (altered)")


def _check_recording(rec: Recording, last_seq: int, out: Result) -> None:
    indexes = [s.manifest.index for s in rec.segments]
    if indexes != list(range(len(indexes))):
        out.problems.append(f"segments of the recording are missing (indexes {indexes})")
    if not rec.segments[-1].manifest.final and rec.segments[-1].seq < last_seq:
        out.problems.append("the recording has no final segment, though later segments of the device are stored")
