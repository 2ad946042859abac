"""Segment files on the camera's disk, and the head of the manifest hash chain.

Layout (docs/FORMAT.md, "Device store")::

    <root>/segments/00000001.ts.age     encrypted MPEG-TS (age v1)
    <root>/segments/00000001.manifest   signed manifest (COSE_Sign1)
    <root>/segments/00000002.open       journal of a segment being written
    <root>/chain-head.cbor              {seq, prev}: last manifest written

A segment is *open* while its ``.open`` journal exists. A power cut leaves the
journal behind; :meth:`SegmentStore.seal_interrupted` (run at boot) turns it into a
manifest with ``complete = false`` over the bytes that reached the disk, so the
chain stays unbroken and the dock can recover every authenticated chunk.
The head file is needed because the dock frees uploaded segments: the chain must
continue from a manifest that may no longer be on the device.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cbor2

from common import signed
from common.manifest import SegmentManifest
from device.identity import DeviceIdentity

SEGMENT_SUFFIX = ".ts.age"
MANIFEST_SUFFIX = ".manifest"
JOURNAL_SUFFIX = ".open"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename over, fsync the directory: the file is old or new, never torn."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass(frozen=True)
class ChainHead:
    seq: int                 # seq of the last manifest written (0: none yet)
    prev: bytes | None       # its SHA-256


class SegmentStore:
    """``free_bytes`` overrides how free space is measured (the simulator's small disk)."""

    def __init__(self, root: Path, free_bytes: Callable[[], int] | None = None) -> None:
        self.root = Path(root)
        self._free_bytes = free_bytes
        self.dir = self.root / "segments"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._head_path = self.root / "chain-head.cbor"
        self._head = self._load_head()
        self._next_seq = self._head.seq + 1

    # ------------------------------------------------------------- chain head
    def _load_head(self) -> ChainHead:
        if not self._head_path.exists():
            return ChainHead(0, None)
        data = cbor2.loads(self._head_path.read_bytes())
        return ChainHead(int(data["seq"]), data["prev"])

    @property
    def head(self) -> ChainHead:
        return self._head

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

    # ------------------------------------------------------------- writing
    def allocate(self, journal: dict[str, Any]) -> int:
        """Reserve the next seq and durably note that its segment is being written."""
        seq = self._next_seq
        self._next_seq += 1
        write_atomic(self.journal_path(seq), signed.canonical(journal))
        return seq

    def commit(self, manifest: SegmentManifest, identity: DeviceIdentity) -> Path:
        """Sign ``manifest`` (its prev filled from the head), write it, close the journal."""
        if manifest.seq != self._head.seq + 1:
            raise RuntimeError(f"manifest seq {manifest.seq} does not follow head {self._head.seq}; "
                               "segments must be committed in order")
        record = manifest.sign(identity.signing_key)
        path = self.manifest_path(manifest.seq)
        write_atomic(path, record)
        self._head = ChainHead(manifest.seq, signed.digest(record))
        write_atomic(self._head_path, signed.canonical({"seq": self._head.seq, "prev": self._head.prev}))
        self.journal_path(manifest.seq).unlink(missing_ok=True)
        fsync_dir(self.dir)
        return path

    def seal_interrupted(self, identity: DeviceIdentity) -> list[SegmentManifest]:
        """Give every segment left open by a power cut a manifest with ``complete=False``."""
        sealed = []
        for journal_path in sorted(self.dir.glob(f"*{JOURNAL_SUFFIX}")):
            seq = int(journal_path.name.split(".")[0])
            journal = cbor2.loads(journal_path.read_bytes())
            seg = self.segment_path(seq)
            data = seg.read_bytes() if seg.exists() else b""
            if seq <= self._head.seq:
                journal_path.unlink()  # manifest made it, the journal removal did not
                continue
            manifest = SegmentManifest(
                **journal, seq=seq, file=seg.name, size=len(data),
                sha256=hashlib.sha256(data).digest(), complete=False, final=True,
                end_utc_us=None, end_mono_us=None, last_pts_us=None, frames=None,
                audio_packets=None, prev=self._head.prev)
            self.commit(manifest, identity)
            sealed.append(manifest)
        self._next_seq = self._head.seq + 1
        return sealed

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())
