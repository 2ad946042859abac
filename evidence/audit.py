"""The audit trail: every ingest, view, export, hold, release, deletion and purge.

Kept with the evidence, in the store itself (``audit/NNNNNNNNNNNN.cbor``), one
COSE_Sign1 record per event (:mod:`common.signed`), each naming the SHA-256 of the
record before it, signed by whoever acted: the dock (ingest) or the evidence office.
Records are write-once (a file hard-linked into place, or an S3 object written with
``If-None-Match`` under Object Lock), so two writers racing for the same number cannot
both win: the loser re-reads the end of the trail and appends after it.

The signers' public keys are in the store (``keys/``, :meth:`EvidenceStore.register_key`);
:func:`verify` checks numbering, chaining and every signature, and names the record that
breaks. Cutting records off the *end* leaves a consistent shorter trail: compare with the
head (seq and digest) a previous ``audit --verify`` printed, as ``--expect``.

The trail is also the evidence office's memory: holds, deletion approvals, deletions and
the retention policy are read back from it (:mod:`evidence.state`), so what is enforced
is exactly what is on record.

>>> import tempfile
>>> from pathlib import Path
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from evidence.store import FsEvidenceStore
>>> store, key = FsEvidenceStore(Path(tempfile.mkdtemp())), Ed25519PrivateKey.generate()
>>> _ = store.register_key("office", "office", key.public_key())
>>> append(store, key, "init", by="anna", details={"retention_days": 14}, now_us=0).seq
1
>>> verify(store).ok
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from common import signed
from common.keys import fingerprint
from evidence.errors import StoreConflict
from evidence.store import EvidenceStore

ACTIONS = ("init", "ingest", "view", "export", "hold", "release", "approve-delete", "delete", "purge", "user",
           "approve-retention", "approve-release", "revoke", "recipients", "revoke-dock", "redact", "decline",
           "officer")
PREFIX = "audit"
_NAME = re.compile(r"audit/(\d{12})\.cbor")
_FIELDS = {"type": str, "v": int, "seq": int, "prev": (bytes, type(None)), "utc_us": int, "action": str,
           "by": (str, type(None)), "device": (str, type(None)), "recording": (str, type(None)), "details": dict}


@dataclass(frozen=True)
class Entry:
    seq: int
    utc_us: int
    action: str
    by: str | None
    device: str | None
    recording: str | None
    details: dict[str, Any]
    signer: str                  # key fingerprint (hex) from the record
    digest: bytes                # SHA-256 of the record: the next one's prev

    def to_json(self, signers: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
        role, who = (signers or {}).get(self.signer, ("unknown", "?"))
        return {"seq": self.seq, "utc_us": self.utc_us, "action": self.action, "by": self.by,
                "device": self.device, "recording": self.recording, "details": _jsonable(self.details),
                "signer": {"fingerprint": self.signer, "role": role, "id": who}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _key(seq: int) -> str:
    return f"{PREFIX}/{seq:012d}.cbor"


def _decode(record: bytes, seq: int) -> dict[str, Any]:
    body = signed.open_signed(record, None)
    if body.keys() != _FIELDS.keys() or body["type"] != "audit" or body["v"] != 1:
        raise signed.SignatureError("not a v1 audit record")
    for name, kind in _FIELDS.items():
        if not isinstance(body[name], kind) or (kind is int and isinstance(body[name], bool)):
            raise signed.SignatureError(f"audit field {name!r} has the wrong type")
    if body["seq"] != seq:
        raise signed.SignatureError(f"record names seq {body['seq']}")
    if body["action"] not in ACTIONS:
        raise signed.SignatureError(f"unknown action {body['action']!r}")
    return body


def _entry(body: dict[str, Any], record: bytes) -> Entry:
    kid = signed.kid_of(record) or b""
    return Entry(body["seq"], body["utc_us"], body["action"], body["by"], body["device"], body["recording"],
                 body["details"], kid.hex(), signed.digest(record))


def records(store: EvidenceStore) -> list[tuple[int, str]]:
    """(seq, key) of every record, in order; names that are not records are skipped here
    and reported by :func:`verify`."""
    out = []
    for key in store.backend.keys(PREFIX):
        m = _NAME.fullmatch(key)
        if m:
            out.append((int(m.group(1)), key))
    return sorted(out)


def entries(store: EvidenceStore) -> list[Entry]:
    """Every entry, decoded but not verified (use :func:`verify` for that); a record that
    cannot be decoded raises ``SignatureError`` naming it."""
    out = []
    for seq, key in records(store):
        record = store.backend.read(key)
        try:
            out.append(_entry(_decode(record, seq), record))
        except signed.SignatureError as exc:
            raise signed.SignatureError(f"audit record {key}: {exc}; run: bodycam-evidence audit --verify") from None
    return out


@dataclass(frozen=True)
class Head:
    """The last record of the trail: its number and SHA-256 (the next record's ``prev``)."""
    seq: int = 0
    digest: bytes | None = None

    def text(self) -> str | None:
        return f"{self.seq}:{self.digest.hex()}" if self.seq and self.digest else None


def _exists(store: EvidenceStore, seq: int) -> bool:
    return store.backend.exists(_key(seq))


def last_seq(store: EvidenceStore, after: int = 0) -> int:
    """The number of the trail's last record, given that record ``after`` exists (0: none
    known). The trail has no gaps (records are only ever added at the end, write-once), so
    an exponential probe forward from ``after`` and a binary search find the end in
    O(log n) lookups, whatever the trail's length: no listing."""
    if not _exists(store, after + 1):
        return after
    lo, step = after + 1, 1
    while _exists(store, lo + step):  # lo exists; double until a number that does not
        lo, step = lo + step, step * 2
    hi = lo + step                    # does not exist
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _exists(store, mid):
            lo = mid
        else:
            hi = mid
    return lo


def read(store: EvidenceStore, seq: int) -> tuple[Entry, bytes]:
    """Record ``seq``, decoded (not signature-checked) and its bytes; FileNotFoundError if
    it is not there, ``SignatureError`` naming it if it cannot be decoded."""
    record = store.backend.read(_key(seq))
    try:
        return _entry(_decode(record, seq), record), record
    except signed.SignatureError as exc:
        raise signed.SignatureError(f"audit record {_key(seq)}: {exc}; run: bodycam-evidence audit --verify") from None


def head(store: EvidenceStore) -> Head:
    """The end of the trail, from the head this process saw last (``store.audit_head``)
    forward: a few lookups, never a listing of the trail."""
    known = store.audit_head
    seq = last_seq(store, known.seq if known is not None and _exists(store, known.seq) else 0)
    if known is not None and seq == known.seq:
        return known
    found = Head(seq, signed.digest(store.backend.read(_key(seq))) if seq else None)
    store.audit_head = found
    return found


def append(store: EvidenceStore, key: Ed25519PrivateKey, action: str, *, by: str | None = None,
           device: str | None = None, recording: str | None = None, details: dict[str, Any] | None = None,
           now_us: int) -> Entry:
    """Append one record after the end of the trail.

    Starts from the head this process knows (one write when nobody else appended in
    between); when another writer took that number, it reads the winner's record and
    moves forward, so concurrent writers (docks, consoles, CLIs) keep one linear trail.
    The cost does not grow with the trail."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    kid = bytes.fromhex(fingerprint(key.public_key()))
    at = store.audit_head if store.audit_head is not None else head(store)
    for _ in range(200):
        seq = at.seq + 1
        body = {"type": "audit", "v": 1, "seq": seq, "prev": at.digest, "utc_us": now_us, "action": action,
                "by": by, "device": device, "recording": recording, "details": details or {}}
        record = signed.sign(body, key, kid)
        try:
            store.backend.put_once(_key(seq), record, signed.digest(record))
        except (StoreConflict, FileExistsError):
            # Another writer appended ``seq`` first: chain on from the end of the trail
            # (its record, or further when several writers came in between).
            end = last_seq(store, seq) if _exists(store, seq) else last_seq(store, at.seq)
            at = Head(end, signed.digest(store.backend.read(_key(end))) if end else None)
            continue
        store.audit_head = Head(seq, signed.digest(record))
        return _entry(body, record)
    raise StoreConflict("could not append to the audit trail: 200 other writers came first")


@dataclass
class AuditReport:
    ok: bool = True
    count: int = 0
    head: str | None = None                  # "SEQ:HEX" of the last record
    problems: list[str] = field(default_factory=list)
    signers: dict[str, tuple[str, str]] = field(default_factory=dict)

    def problem(self, text: str) -> None:
        self.ok = False
        self.problems.append(text)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "count": self.count, "head": self.head, "problems": self.problems,
                "signers": {fp: {"role": r, "id": i} for fp, (r, i) in self.signers.items()}}


def verify(store: EvidenceStore, expect: str | None = None) -> AuditReport:
    """Check every record: consecutive numbers from 1, each chained on its predecessor,
    signed by a key registered in the store, well formed. ``expect`` ("SEQ:HEX", a head
    printed earlier) must still be in the trail: records cut off the end are caught."""
    report = AuditReport()
    for key in store.backend.keys(PREFIX):
        if not _NAME.fullmatch(key):
            report.problem(f"{key}: not an audit record name (stray file in the trail)")
    listed = records(store)
    for i, (seq, _) in enumerate(listed, start=1):
        if seq != i:
            report.problem(f"{_key(i)}: missing (the trail jumps to {seq}): records were deleted")
            listed = listed[:i - 1]
            break
    heads = check_records(store, ((seq, store.backend.read(key)) for seq, key in listed), report)
    if expect is not None:
        seq_text, _, hex_text = expect.partition(":")
        if not (seq_text.isdigit() and re.fullmatch(r"[0-9a-f]{64}", hex_text)):
            raise ValueError(f"--expect must be SEQ:HEX (64 hex digits), as audit --verify printed it: {expect!r}")
        if heads.get(int(seq_text)) != bytes.fromhex(hex_text):
            report.problem(f"the trail no longer holds record {seq_text} with digest {hex_text[:16]}…: "
                           "records were cut off or replaced since that head was noted")
    return report


def check_records(store: EvidenceStore, found: Iterable[tuple[int, bytes | None]], report: AuditReport,
                  on_record: Callable[[int, bytes], None] | None = None) -> dict[int, bytes]:
    """Check records 1, 2, … in order (each as ``(seq, bytes)``, None if missing): strict
    decoding, a key registered in the store, its signature, the chain. Stops at the first
    record that cannot be decoded; returns each record's SHA-256 by seq."""
    prev: bytes | None = None
    heads: dict[int, bytes] = {}
    keys: dict[str, Any] = {}
    for seq, record in found:
        if record is None:
            report.problem(f"{_key(seq)}: missing: records were deleted")
            break
        try:
            body = _decode(record, seq)
        except signed.SignatureError as exc:
            report.problem(f"{_key(seq)}: {exc}")
            break
        kid = (signed.kid_of(record) or b"").hex()
        if kid not in keys:
            keys[kid] = store.public_key(kid)
        known = keys[kid]
        if known is None:
            report.problem(f"{_key(seq)}: signed by key {kid[:16]}…, which is not registered in the store")
        else:
            try:
                signed.open_signed(record, known[2])
                report.signers[kid] = (known[0], known[1])
            except signed.SignatureError as exc:
                report.problem(f"{_key(seq)}: {exc}")
        if body["prev"] != prev:
            report.problem(f"{_key(seq)}: does not chain on from record {seq - 1} (a record was altered or replaced)")
        prev = signed.digest(record)
        heads[seq] = prev
        report.count = seq
        if on_record is not None:
            on_record(seq, prev)
    if report.count:
        report.head = f"{report.count}:{heads[report.count].hex()}"
    return heads
