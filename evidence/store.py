"""Where verified footage goes: one store layout over two backends (filesystem, S3).

The dock writes into it (:class:`EvidenceStore`'s first group of methods, what the
offload needs); the evidence office reads, holds and deletes through
:mod:`evidence.recordings`, :mod:`evidence.retention` and :mod:`evidence.export`.
A backend (:mod:`evidence.fs`, :mod:`evidence.s3`) only knows keys and bytes; the
layout lives here once (docs/FORMAT.md §10)::

    devices/<device>/segments/NNNNNNNN.ts.age      as the camera wrote it
    devices/<device>/segments/NNNNNNNN.manifest    its signed manifest (kept after deletion)
    devices/<device>/events/FIRST-LAST.cbors       event log records FIRST…LAST
    devices/<device>/receipts/<kind>-NNNNNNNN-<tag>.cbor   custody receipts the dock issued
    devices/<device>/anchor.cbor                   {seq, prev, event_seq, event_prev}
    keys/<fingerprint>.cbor                        public keys of devices, docks, the office
    revoked/devices/<device>.cbor                  a dock's signed revocation of a lost camera
    revoked/docks/<fingerprint>.cbor               the office's signed revocation of a dock key
    recipients/NNNNNNNN.cbor                       the office's recipients for new footage (a rotation)
    audit/NNNNNNNNNNNN.cbor                        the signed, chained audit trail
    packs/…                                        copies of manifests and records in bulk (evidence.packs)
    quarantine/<device>/<name>                     what failed verification …
    quarantine/<device>/<name>.reason.json         … and why
    console/users/<id>.json                        the console's users

Nothing else belongs in a store: :func:`unknown_keys` names anything that is not one of these.

>>> import tempfile
>>> store = FsEvidenceStore(Path(tempfile.mkdtemp()))
>>> store.anchor("cam-1")
Anchor(seq=0, prev=None, event_seq=0, event_prev=None)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common import signed
from common.keys import fingerprint
from common.manifest import read_manifest, segment_file_name
from evidence.errors import LockedError, StoreConflict, StoreUnavailable
from evidence.fs import FsBackend, sha256_file

__all__ = ["Anchor", "Backend", "EvidenceStore", "FsEvidenceStore", "LockedError", "StoreConflict",
           "StoreUnavailable", "open_store"]


@dataclass(frozen=True)
class Anchor:
    """The last verified manifest and event record of a device: the next offload chains on."""
    seq: int = 0
    prev: bytes | None = None
    event_seq: int = 0
    event_prev: bytes | None = None


class Backend(Protocol):
    """Keys and bytes. ``put_once`` never replaces; ``destroy`` removes every version."""
    def where(self, key: str) -> str: ...
    def read(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def put_once(self, key: str, data: bytes | Path, sha256: bytes) -> str: ...
    def replace(self, key: str, data: bytes) -> None: ...
    def keys(self, prefix: str) -> list[str]: ...
    def keys_after(self, prefix: str, after: str = "", limit: int | None = None, until: str | None = None) -> list[str]: ...
    def listing(self, prefix: str, after: str = "", limit: int | None = None,
                until: str | None = None) -> list[tuple[str, str | None]]: ...
    def children(self, prefix: str) -> list[str]: ...
    def destroy(self, key: str) -> None: ...
    def hold(self, key: str, on: bool) -> None: ...


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _dev(device_id: str, *parts: str) -> str:
    return "/".join(("devices", device_id, *parts))


class EvidenceStore:
    def __init__(self, backend: Backend, location: str) -> None:
        self.backend = backend
        self.location = location
        self.audit_head: Any = None  # evidence.audit.Head last seen by this process: appends start there

    def prepare(self, retention_days: int) -> None:
        """Make the store ready for evidence (the office's ``init``); idempotent."""

    # ------------------------------------------------------------------ what the dock writes
    def anchor(self, device_id: str) -> Anchor:
        try:
            data = self.backend.read(_dev(device_id, "anchor.cbor"))
        except FileNotFoundError:
            return Anchor()
        return Anchor(**signed.loads_exact(data, "anchor.cbor"))

    def set_anchor(self, device_id: str, anchor: Anchor) -> None:
        self.backend.replace(_dev(device_id, "anchor.cbor"), signed.canonical(anchor.__dict__))

    def has_segment(self, device_id: str, seq: int) -> bool:
        return self.backend.exists(_dev(device_id, "segments", f"{seq:08d}.manifest"))

    def put_segment(self, device_id: str, seq: int, manifest: bytes, segment: Path) -> str:
        """Store a verified segment (the file is moved in) and its manifest. The segment goes
        in under the manifest's own SHA-256 (an S3 server checks it and confirms); the manifest
        last, so a manifest present means the pair is stored. Idempotent for the same bytes;
        other bytes under a stored name raise :class:`StoreConflict` and change nothing."""
        m = read_manifest(manifest, None)
        location = self.backend.put_once(_dev(device_id, "segments", m.file), segment, m.sha256)
        self.backend.put_once(_dev(device_id, "segments", f"{seq:08d}.manifest"), manifest, _sha(manifest))
        return location

    def event_head(self, device_id: str) -> tuple[int, bytes | None]:
        """The last event record stored for the device (seq, SHA-256 of its record), from the
        pieces themselves: after a dock killed between storing a piece and its anchor, the
        next docking chains on from what is stored, so no record is stored twice."""
        pieces = [k for k in self.backend.keys_after(_dev(device_id, "events") + "/", "")
                  if re.fullmatch(r".*/\d{8,}-\d{8,}\.cbors", k)]
        if not pieces:
            return 0, None
        last = max(pieces, key=lambda k: int(k.rsplit("/", 1)[1].split("-")[1].split(".")[0]))
        records, _ = signed.split_sequence(self.backend.read(last))
        if not records:
            return 0, None
        return int(last.rsplit("/", 1)[1].split("-")[1].split(".")[0]), signed.digest(records[-1])

    def put_events(self, device_id: str, first: int, last: int, data: bytes) -> str:
        return self.backend.put_once(_dev(device_id, "events", f"{first:08d}-{last:08d}.cbors"), data, _sha(data))

    def put_receipt(self, device_id: str, name: str, record: bytes) -> str:
        return self.backend.put_once(_dev(device_id, "receipts", f"{name}.cbor"), record, _sha(record))

    def quarantine(self, device_id: str, name: str, data: bytes | Path | None, reason: str) -> str:
        key = f"quarantine/{device_id}/{name}"
        if data is not None and not self.backend.exists(key):
            self.backend.put_once(key, data, _sha(data) if isinstance(data, bytes) else sha256_file(data))
        elif isinstance(data, Path):
            data.unlink(missing_ok=True)  # already quarantined at an earlier attempt
        note = {"reason": reason, "utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        self.backend.replace(f"{key}.reason.json", json.dumps(note, indent=2).encode())
        return self.backend.where(key)

    def remove_orphans(self, deep: bool = True) -> list[str]:
        """Remove what writers killed mid-write left in the store (a filesystem's staged
        copies; S3 writes whole objects or nothing); where they were."""
        remove = getattr(self.backend, "remove_orphans", None)
        return remove(deep) if remove is not None else []

    def is_quarantined(self, device_id: str, name: str) -> bool:
        return self.backend.exists(f"quarantine/{device_id}/{name}.reason.json")

    def put_revocation(self, device_id: str, record: bytes) -> str:
        """A dock's signed revocation of a camera (dock/revocation.py); write-once."""
        return self.backend.put_once(f"revoked/devices/{device_id}.cbor", record, _sha(record))

    def revocation(self, device_id: str) -> bytes | None:
        try:
            return self.backend.read(f"revoked/devices/{device_id}.cbor")
        except FileNotFoundError:
            return None

    def register_key(self, role: str, owner: str, key: Ed25519PublicKey) -> str:
        """Keep a public key in the store (once), so the office verifies without the dock."""
        fp = fingerprint(key)
        body = signed.canonical({"role": role, "id": owner, "public": key.public_bytes_raw()})
        try:
            return self.backend.put_once(f"keys/{fp}.cbor", body, _sha(body))
        except StoreConflict:
            raise StoreConflict(f"key {fp[:16]} is registered in the store for another {role}/owner; "
                                "one key belongs to one device, dock or office") from None

    # ------------------------------------------------------------------ what the office reads
    def segments(self, device_id: str) -> list[int]:
        return [int(k.rsplit("/", 1)[1][:8]) for k in self.backend.keys(_dev(device_id, "segments"))
                if k.endswith(".manifest")]

    def devices(self) -> list[str]:
        return self.backend.children("devices")

    def manifest(self, device_id: str, seq: int) -> bytes:
        return self.backend.read(_dev(device_id, "segments", f"{seq:08d}.manifest"))

    def footage_key(self, device_id: str, seq: int) -> str:
        return _dev(device_id, "segments", segment_file_name(seq))

    def has_footage(self, device_id: str, seq: int) -> bool:
        return self.backend.exists(self.footage_key(device_id, seq))

    def footage(self, device_id: str, seq: int) -> bytes:
        return self.backend.read(self.footage_key(device_id, seq))

    def receipts(self, device_id: str) -> list[bytes]:
        return [self.backend.read(k) for k in self.backend.keys(_dev(device_id, "receipts"))]

    def open_signed(self, data: bytes, roles: tuple[str, ...]) -> dict[str, Any] | None:
        """The body of ``data`` if it is signed by a key registered here for one of ``roles``;
        None for a record nobody entitled signed (a revocation a stranger wrote)."""
        known = self.public_key((signed.kid_of(data) or b"").hex())
        if known is None or known[0] not in roles:
            return None
        try:
            return signed.open_signed(data, known[2])
        except signed.SignatureError:
            return None

    def public_key(self, fp: str) -> tuple[str, str, Ed25519PublicKey] | None:
        """(role, id, key) registered under the fingerprint ``fp``, None if unknown or bad."""
        try:
            body = signed.loads_exact(self.backend.read(f"keys/{fp}.cbor"), "key record")
            key = Ed25519PublicKey.from_public_bytes(body["public"])
        except (FileNotFoundError, signed.SignatureError, KeyError, TypeError, ValueError):
            return None
        return (body["role"], body["id"], key) if fingerprint(key) == fp else None


class FsEvidenceStore(EvidenceStore):
    """The default store: a directory, write-once fsync'd files (:mod:`evidence.fs`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()  # one store, one name: its index knows it by this
        super().__init__(FsBackend(self.root), str(self.root))

    def prepare(self, retention_days: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)


_KNOWN = re.compile(
    r"devices/[^/]+/(segments/\d{8,}\.(ts\.age|manifest)|events/\d{8,}-\d{8,}\.cbors|receipts/[^/]+\.cbor|anchor\.cbor)"
    r"|keys/[0-9a-f]{64}\.cbor|audit/\d{12}\.cbor|quarantine/[^/]+/[^/]+|console/users/[^/]+\.json"
    r"|packs/audit/\d{12}-\d{12}\.cbor|packs/devices/[^/]+/\d{8,}-\d{8,}\.cbor|revoked/devices/[^/]+\.cbor|revoked/docks/[0-9a-f]{64}\.cbor|recipients/\d{8}\.cbor")


def unknown_keys(keys: list[str]) -> list[str]:
    """Keys that are not objects of the store's layout (left by hand, by a crash, by a bug)."""
    return [k for k in keys if not _KNOWN.fullmatch(k)]


def open_store(location: str | Path, base_dir: Path = Path(".")) -> EvidenceStore:
    """A store from the dock's ``store =``: an ``s3://bucket[/prefix]`` URL or a directory."""
    text = str(location)
    if text.startswith("s3://"):
        from evidence.s3 import S3EvidenceStore
        return S3EvidenceStore(text)
    if "://" in text:
        raise ValueError(f"unsupported store {text!r}: a directory or s3://bucket[/prefix]")
    path = Path(text)
    return FsEvidenceStore(path if path.is_absolute() else base_dir / path)
