"""Where verified footage goes: a small store interface and the filesystem backend.

The interface is what the offload needs and no more, so an S3 backend (with Object
Lock) can implement it next. The filesystem store is the default: write-once files
(never overwritten, mode 0444), each fsync'd with its directory before the dock tells
the camera it may free anything. Layout (docs/FORMAT.md §10)::

    <root>/devices/<device>/segments/NNNNNNNN.ts.age      as the camera wrote it
    <root>/devices/<device>/segments/NNNNNNNN.manifest
    <root>/devices/<device>/events/FIRST-LAST.cbors       event log records FIRST…LAST
    <root>/devices/<device>/receipts/<kind>-NNNNNNNN.cbor custody receipts the dock issued
    <root>/devices/<device>/anchor.cbor                   {seq, prev, event_seq, event_prev}
    <root>/quarantine/<device>/<name>                     what failed verification …
    <root>/quarantine/<device>/<name>.reason.json         … and why

>>> import tempfile
>>> store = FsEvidenceStore(Path(tempfile.mkdtemp()))
>>> store.anchor("cam-1")
Anchor(seq=0, prev=None, event_seq=0, event_prev=None)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from common import signed
from common.fsutil import fsync_dir, write_atomic


@dataclass(frozen=True)
class Anchor:
    """The last verified manifest and event record of a device: the next offload chains on."""
    seq: int = 0
    prev: bytes | None = None
    event_seq: int = 0
    event_prev: bytes | None = None


class StoreConflict(OSError):
    """Something else is already stored under that name: evidence is never replaced."""


def _sha256_file(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


class EvidenceStore(Protocol):
    def anchor(self, device_id: str) -> Anchor: ...
    def set_anchor(self, device_id: str, anchor: Anchor) -> None: ...
    def has_segment(self, device_id: str, seq: int) -> bool: ...
    def put_segment(self, device_id: str, seq: int, manifest: bytes, segment: Path) -> str: ...
    def put_events(self, device_id: str, first: int, last: int, data: bytes) -> str: ...
    def put_receipt(self, device_id: str, name: str, record: bytes) -> str: ...
    def quarantine(self, device_id: str, name: str, data: bytes | Path | None, reason: str) -> str: ...
    def is_quarantined(self, device_id: str, name: str) -> bool: ...


def _write_once(path: Path, data: bytes | Path) -> None:
    """Create ``path`` with ``data`` (bytes, or a file's content moved in); never overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, Path):
        os.replace(data, tmp)
    else:
        with open(tmp, "wb") as f:
            f.write(data)
    try:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o444)
        os.link(tmp, path)  # fails if the name exists: write-once
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


class FsEvidenceStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"evidence store {self.root} is a file")

    def _dev(self, device_id: str) -> Path:
        return self.root / "devices" / device_id

    def anchor(self, device_id: str) -> Anchor:
        path = self._dev(device_id) / "anchor.cbor"
        if not path.exists():
            return Anchor()
        return Anchor(**signed.loads_exact(path.read_bytes(), "anchor.cbor"))

    def set_anchor(self, device_id: str, anchor: Anchor) -> None:
        self._dev(device_id).mkdir(parents=True, exist_ok=True)
        write_atomic(self._dev(device_id) / "anchor.cbor", signed.canonical(anchor.__dict__))

    def has_segment(self, device_id: str, seq: int) -> bool:
        return (self._dev(device_id) / "segments" / f"{seq:08d}.manifest").exists()

    def put_segment(self, device_id: str, seq: int, manifest: bytes, segment: Path) -> str:
        """Store a verified segment and its manifest. Idempotent: storing the same bytes again
        (a dock that died between storing and recording it) succeeds; different bytes under a
        stored name raise :class:`StoreConflict` and change nothing."""
        d = self._dev(device_id) / "segments"
        target = d / f"{seq:08d}.ts.age"
        if target.exists():
            if _sha256_file(target) != _sha256_file(segment):
                raise StoreConflict(f"{target} is stored with other content; refusing to replace evidence")
            segment.unlink()
        else:
            _write_once(target, segment)
        manifest_path = d / f"{seq:08d}.manifest"  # last: the manifest says "stored"
        if manifest_path.exists():
            if manifest_path.read_bytes() != manifest:
                raise StoreConflict(f"{manifest_path} is stored with other content; refusing to replace evidence")
        else:
            _write_once(manifest_path, manifest)
        return str(target)

    def put_events(self, device_id: str, first: int, last: int, data: bytes) -> str:
        target = self._dev(device_id) / "events" / f"{first:08d}-{last:08d}.cbors"
        if not target.exists():
            _write_once(target, data)
        return str(target)

    def put_receipt(self, device_id: str, name: str, record: bytes) -> str:
        target = self._dev(device_id) / "receipts" / f"{name}.cbor"
        if not target.exists():
            _write_once(target, record)
        return str(target)

    def quarantine(self, device_id: str, name: str, data: bytes | Path | None, reason: str) -> str:
        d = self.root / "quarantine" / device_id
        target = d / name
        if not target.exists() and data is not None:
            _write_once(target, data)
        note = {"reason": reason, "utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        reason_path = d / f"{name}.reason.json"
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(reason_path, json.dumps(note, indent=2).encode())
        return str(target)

    def is_quarantined(self, device_id: str, name: str) -> bool:
        return (self.root / "quarantine" / device_id / f"{name}.reason.json").exists()

    def segments(self, device_id: str) -> list[int]:
        return sorted(int(p.name[:8]) for p in (self._dev(device_id) / "segments").glob("*.manifest"))


def open_store(location: str | Path, base_dir: Path = Path(".")) -> EvidenceStore:
    """A store from the dock's ``store =``: an ``s3://bucket[/prefix]`` URL or a directory."""
    text = str(location)
    if text.startswith("s3://"):
        from dock.evidence_s3 import S3EvidenceStore
        return S3EvidenceStore(text)
    if "://" in text:
        raise ValueError(f"unsupported store {text!r}: a directory or s3://bucket[/prefix]")
    path = Path(text)
    return FsEvidenceStore(path if path.is_absolute() else base_dir / path)
