"""Segment files on the camera's disk, and the signed head of the manifest hash chain.

Layout (docs/FORMAT.md §3, "Device store")::

    <root>/segments/00000001.ts.age     encrypted MPEG-TS (age v1)
    <root>/segments/00000001.manifest   signed manifest (COSE_Sign1)
    <root>/segments/00000002.open       journal of a segment being written
    <root>/chain-head.cbor              signed {seq, prev}: the last manifest written
    <root>/reserve                      space kept back to seal a segment on a full disk

Crash rules, so that every power cut leaves a store that seals and verifies:

* A segment *counts* once its journal exists. The segment file, its age header and
  its directory entry are made durable before the journal is written, so a counted
  segment always has a readable header; a file with no journal holds no footage and
  is removed at boot.
* :meth:`SegmentStore.seal_interrupted` (boot) turns a left-over journal into a
  manifest with ``complete = false`` over the bytes that reached the disk.
* Opening the store rolls the head forward over manifests that became durable
  before a cut kept the head from being updated, so sealing never re-signs a
  segment that was already committed: it is idempotent and exact.
* The store refuses to continue a chain signed by another device key.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import cbor2

from common import signed
from common.chain_head import GENESIS, ChainHead, read_head
from common.fsutil import fsync_dir, write_atomic
from common.manifest import SegmentManifest, read_manifest
from device.identity import DeviceIdentity

SEGMENT_SUFFIX = ".ts.age"
MANIFEST_SUFFIX = ".manifest"
JOURNAL_SUFFIX = ".open"
HEAD_FILE = "chain-head.cbor"
RESERVE_FILE = "reserve"
RESERVE_BYTES = 1 << 20


class StoreError(Exception):
    """The store cannot be used as it is; the message says what was found and what to do."""


class StoreKeyError(StoreError):
    """The store's chain was signed by another device key."""


class SegmentStore:
    """The camera's segment directory and chain head, owned by one device key.

    ``free_bytes`` overrides how free space is measured (the simulator's small disk).

    >>> import tempfile
    >>> from common import keys
    >>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    >>> ident = DeviceIdentity("cam", Ed25519PrivateKey.generate(), ())
    >>> store = SegmentStore(Path(tempfile.mkdtemp()), ident)
    >>> store.head.seq, store.seal_interrupted()
    (0, [])
    """

    def __init__(self, root: Path, identity: DeviceIdentity,
                 free_bytes: Callable[[], int] | None = None) -> None:
        self.root = Path(root)
        self.identity = identity
        self._free_bytes = free_bytes
        self.dir = self.root / "segments"
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"{self.root} is a file, not a store directory")
        if self.dir.exists() and not self.dir.is_dir():
            raise StoreError(f"{self.dir} is a file, not a segment directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._head_path = self.root / HEAD_FILE
        self._cleanup_temporaries()
        self._head = self._load_head()
        self._next_seq = self._head.seq + 1
        self.discarded = self._discard_orphans()
        self._ensure_reserve()

    # ------------------------------------------------------------- chain head
    def _load_head(self) -> ChainHead:
        pub = self.identity.signing_key.public_key()
        head = GENESIS
        if self._head_path.exists():
            data = self._head_path.read_bytes()
            try:
                head = read_head(data, pub)
            except signed.SignatureError as exc:
                self._refuse_foreign(data, "chain head")
                raise StoreError(f"{self._head_path} is corrupt or altered ({exc}); the camera cannot continue "
                                 "its chain. Do not delete it: dock the camera so the footage is taken off "
                                 "and checked, then re-provision the store") from None
        rolled = False
        while (path := self.manifest_path(head.seq + 1)).exists():
            record = path.read_bytes()
            try:
                m = read_manifest(record, pub)
            except signed.SignatureError as exc:
                self._refuse_foreign(record, path.name)
                raise StoreError(f"{path} does not verify ({exc}); the chain cannot continue. Dock the "
                                 "camera so the dock can quarantine it") from None
            if m.prev != head.prev:
                raise StoreError(f"{path} does not follow the chain head (seq {head.seq}); the store was "
                                 "altered. Dock the camera so the dock can report it")
            head, rolled = ChainHead(m.seq, signed.digest(record), self.identity.device_id), True
        if rolled:  # a cut fell between a durable manifest and its head update
            self._write_head(head)
        return head

    def _refuse_foreign(self, record: bytes, what: str) -> None:
        ours = bytes.fromhex(self.identity.key_fingerprint)
        kid = signed.kid_of(record)
        if kid is not None and kid != ours:
            raise StoreKeyError(
                f"{self.root}: its {what} is signed by device key {kid.hex()[:16]}…, not by the key given "
                f"({ours.hex()[:16]}…). Refusing to continue that chain under another key: use the "
                "store's own device key (e.g. --keys DIR), or a new store for a new key")

    def _write_head(self, head: ChainHead) -> None:
        write_atomic(self._head_path, head.sign(self.identity.signing_key))

    @property
    def head(self) -> ChainHead:
        return self._head

    # ------------------------------------------------------------- boot cleanup
    def _cleanup_temporaries(self) -> None:
        """``*.tmp`` are half-done atomic writes: never the committed version of anything."""
        for d in (self.root, self.dir):
            for tmp in d.glob("*.tmp"):
                tmp.unlink()

    def _discard_orphans(self) -> list[Path]:
        """Segment files past the head with neither journal nor manifest: created, never counted,
        so they hold an age header and no footage (see the module's crash rules)."""
        gone = []
        for seg in self.dir.glob(f"*{SEGMENT_SUFFIX}"):
            seq = _seq_of(seg)
            if (seq is not None and seq > self._head.seq and not self.journal_path(seq).exists()
                    and not self.manifest_path(seq).exists()):
                seg.unlink()
                gone.append(seg)
        if gone:
            fsync_dir(self.dir)
        return gone

    # ------------------------------------------------------------- paths
    def segment_path(self, seq: int) -> Path:
        return self.dir / f"{seq:08d}{SEGMENT_SUFFIX}"

    def manifest_path(self, seq: int) -> Path:
        return self.dir / f"{seq:08d}{MANIFEST_SUFFIX}"

    def journal_path(self, seq: int) -> Path:
        return self.dir / f"{seq:08d}{JOURNAL_SUFFIX}"

    def free_bytes(self) -> int:
        if self._free_bytes is not None:
            return self._free_bytes()
        return shutil.disk_usage(self.root).free

    # ------------------------------------------------------------- space reserve
    def _ensure_reserve(self) -> None:
        path = self.root / RESERVE_FILE
        if path.exists():
            return
        try:
            with open(path, "wb") as f:
                f.write(bytes(RESERVE_BYTES))
                os.fsync(f.fileno())
        except OSError:
            path.unlink(missing_ok=True)  # not enough room now; tried again at next boot

    def release_reserve(self) -> bool:
        """Free the reserved space (the disk is full and a segment must be sealed)."""
        path = self.root / RESERVE_FILE
        if not path.exists():
            return False
        path.unlink()
        return True

    # ------------------------------------------------------------- writing
    def reserve_seq(self) -> int:
        """The seq of the next segment (it counts only once :meth:`begin` wrote its journal)."""
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def begin(self, seq: int, journal: dict[str, Any]) -> None:
        """The segment file and its header are durable: from now on the segment counts."""
        write_atomic(self.journal_path(seq), signed.canonical(journal))  # also fsyncs the directory

    def commit(self, manifest: SegmentManifest) -> Path:
        """Sign ``manifest``, write it, advance the signed head, close the journal."""
        if manifest.seq != self._head.seq + 1:
            raise RuntimeError(f"manifest seq {manifest.seq} does not follow head {self._head.seq}; "
                               "segments must be committed in order")
        record = manifest.sign(self.identity.signing_key)
        path = self.manifest_path(manifest.seq)
        write_atomic(path, record)
        head = ChainHead(manifest.seq, signed.digest(record), self.identity.device_id,
                         manifest.end_utc_us or manifest.start_utc_us)
        self._write_head(head)
        self._head = head
        self.journal_path(manifest.seq).unlink(missing_ok=True)
        fsync_dir(self.dir)
        return path

    def seal_interrupted(self) -> list[SegmentManifest]:
        """Give every segment left open by a power cut a manifest with ``complete=False``.

        On a full disk the space reserve is released so the (small) manifest fits.
        """
        try:
            return self._seal()
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not self.release_reserve():
                raise
            return self._seal()

    def _seal(self) -> list[SegmentManifest]:
        sealed = []
        for journal_path in sorted(self.dir.glob(f"*{JOURNAL_SUFFIX}")):
            seq = _seq_of(journal_path)
            if seq is None:
                continue
            if seq <= self._head.seq:
                journal_path.unlink()  # manifest made it, the journal removal did not
                continue
            journal = _read_journal(journal_path)
            seg = self.segment_path(seq)
            data = seg.read_bytes() if seg.exists() else b""
            manifest = SegmentManifest(
                **journal, seq=seq, file=seg.name, size=len(data),
                sha256=hashlib.sha256(data).digest(), complete=False, final=True,
                end_utc_us=None, end_mono_us=None, last_pts_us=None, frames=None,
                audio_packets=None, prev=self._head.prev)
            self.commit(manifest)
            sealed.append(manifest)
        self._next_seq = self._head.seq + 1
        return sealed

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())


JOURNAL_FIELDS = ("device_id", "device_key", "officer_id", "recording_id", "index", "start_utc_us",
                  "start_mono_us", "first_pts_us", "video", "audio", "announced", "pre_record_s",
                  "press_pts_us", "recipients", "clock")


def _read_journal(path: Path) -> dict[str, Any]:
    try:
        journal = cbor2.loads(path.read_bytes())
    except Exception as exc:  # cbor2 raises several types for garbage
        raise StoreError(f"{path} (journal of an interrupted segment) is corrupt: {exc}. The segment "
                         "cannot be sealed; dock the camera so its footage is taken off and reported") from None
    if not isinstance(journal, dict) or set(journal) != set(JOURNAL_FIELDS):
        raise StoreError(f"{path} (journal of an interrupted segment) lacks fields or has extra ones; "
                         "dock the camera so its footage is taken off and reported")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in journal.items()}


def _seq_of(path: Path) -> int | None:
    stem = path.name.split(".")[0]
    return int(stem) if stem.isdigit() else None
