"""Device event log: every state change, button gesture, cue, marker and warning.

Each entry is a COSE_Sign1 record (like a segment manifest) with UTC and monotonic
time, hash-chained to the entry before it; entries are appended to
``<store>/events.cbors`` (a CBOR sequence, RFC 8742) and fsync'd at the end of
every runtime tick that wrote any. The log
leaves the camera with the footage, so a reviewer sees what the officer did and
what the camera signalled — and that nothing was removed in between.

>>> # log = EventLog(store_root, identity, clock); log.append("boot", "BOOTING")
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common import signed
from common.clock import Clock
from common.fsutil import fsync_dir, write_atomic
from device.identity import DeviceIdentity

EVENT_VERSION = 1


COSE_SIGN1_TAG = b"\xd2"   # CBOR tag 18 (COSE_Sign1): how every record of the log begins


class EventLog:
    def __init__(self, root: Path, identity: DeviceIdentity, clock: Clock) -> None:
        self.path = Path(root) / "events.cbors"
        self.identity, self.clock = identity, clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The camera's runtime is one thread; the lock keeps the chain and the file whole when
        # another one logs too (a test driving the runtime, the dock's receipt in a service thread).
        self._lock = threading.RLock()
        self.quarantined: Path | None = None
        self.seq, self.prev = self._load_head()
        self._file = None
        self._dirty = False
        self._good_size = self.path.stat().st_size if self.path.exists() else 0
        self._pending: list[bytes] = []   # signed but not yet written (disk full)
        self.write_error: OSError | None = None
        self.entries: list[dict[str, Any]] = []  # this boot's entries, for display
        if self.quarantined is not None:
            self.append("event_log_restarted", "BOOTING", quarantined=self.quarantined.name)

    def _load_head(self) -> tuple[int, bytes | None]:
        """Continue the chain from the log's last record (handing the log to the dock, and
        keeping a head once it is cleared, belongs to the dock protocol)."""
        self._repair_torn_tail()
        if self.path.exists():
            records, _ = signed.split_sequence(self.path.read_bytes())
            if records:
                try:
                    body = signed.open_signed(records[-1], self.identity.signing_key.public_key())
                    seq = body["seq"]
                    if isinstance(seq, int) and not isinstance(seq, bool):
                        return seq, signed.digest(records[-1])
                except signed.SignatureError:
                    pass
                # Altered, corrupt or foreign: never continue that chain, never delete it.
                # Keep it beside for the dock and start a new chain that says so.
                n = 1
                while (target := self.path.with_name(f"{self.path.name}.corrupt-{n}")).exists():
                    n += 1
                os.replace(self.path, target)
                fsync_dir(self.path.parent)
                self.quarantined = target
        return 0, None

    def _repair_torn_tail(self) -> None:
        repair_torn_tail(self.path)

    def append(self, kind: str, state: str, **data: Any) -> dict[str, Any]:
        with self._lock:
            mono = self.clock.monotonic_us()
            body = {
                "v": EVENT_VERSION, "type": "event", "device_id": self.identity.device_id,
                "device_key": self.identity.key_fingerprint, "seq": self.seq + 1,
                "utc_us": self.clock.utc_of(mono), "mono_us": mono, "kind": kind, "state": state,
                "data": data, "prev": self.prev,
            }
            record = signed.sign(body, self.identity.signing_key, bytes.fromhex(self.identity.key_fingerprint))
            self.seq, self.prev = body["seq"], signed.digest(record)
            self.entries.append(body)
            self._pending.append(record)
            self._flush()
            return body

    def _flush(self) -> None:
        """Write pending records. On a full or failing disk, cut a partial record back off
        (the file stays a clean sequence) and keep the rest in RAM until the disk takes it:
        the camera goes on, and nothing in the chain is skipped."""
        try:
            if self._file is None:
                created = not self.path.exists()
                self._file = open(self.path, "ab", buffering=0)
                if created:  # the log's directory entry must survive a power cut too
                    fsync_dir(self.path.parent)
            while self._pending:
                record = self._pending[0]
                if self._file.write(record) != len(record):  # reaches the OS at once; fsync'd by sync()
                    raise OSError(errno.ENOSPC, "short write to the event log")
                self._good_size += len(record)
                self._pending.pop(0)
                self._dirty = True
            self.write_error = None
        except OSError as exc:
            self.write_error = exc
            if self._file is not None:
                try:
                    os.ftruncate(self._file.fileno(), self._good_size)
                except OSError:
                    pass

    def drop_prefix(self, size: int, sha256: bytes, upto_seq: int) -> int:
        """Remove the first ``size`` bytes — records 1…``upto_seq`` that the dock has stored and
        receipted — if and only if they hash to ``sha256``; return how many records went.
        The chain goes on from the last record (its head stays in memory)."""
        with self._lock:
            data = self.path.read_bytes() if self.path.exists() else b""
            if size <= 0 or size > len(data) or hashlib.sha256(data[:size]).digest() != sha256:
                raise ValueError("the receipt does not match the event log held on the camera")
            records, torn = signed.split_sequence(data[:size])
            if torn or not records or signed.open_signed(records[-1], None).get("seq") != upto_seq:
                raise ValueError("the receipt does not end at the event it names")
            if self._file is not None:
                self._file.close()
                self._file = None
            write_atomic(self.path, data[size:])
            self._good_size = len(data) - size
            return len(records)

    @property
    def pending(self) -> int:
        """Records not yet on disk (the disk is full or failing)."""
        return len(self._pending)

    def sync(self) -> None:
        """fsync what was appended. The runtime calls this once per tick, *after* acting,
        so logging never delays a recording's start; a power cut loses at most one tick."""
        with self._lock:
            if self._pending:
                self._flush()
            if self._dirty and self._file is not None:
                try:
                    os.fsync(self._file.fileno())
                    self._dirty = False
                except OSError as exc:
                    self.write_error = exc

    def close(self) -> None:
        with self._lock:
            self.sync()
            if self._file is not None:
                self._file.close()
                self._file = None


def read_event_log(path: Path, key: Ed25519PublicKey) -> list[dict[str, Any]]:
    """Verify and decode an event log file; raises on a broken chain or signature."""
    records, torn = signed.split_sequence(Path(path).read_bytes())
    if torn:
        raise signed.ChainError(f"{path}: {torn} trailing bytes do not form a record (torn write)")
    return signed.verify_chain(records, key)


def repair_torn_tail(path: Path) -> int:
    """A power cut mid-append leaves a partial record: cut it off (it was never acknowledged);
    returns the bytes cut. Also zeros: a file's new size can reach the disk before its data
    (seen on the booted system's ext4, replaying dm-log-writes to a crash point), and each
    zero byte decodes as a CBOR item, so trailing items that are no signed record go too.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "events.cbors"
    >>> _ = p.write_bytes(b"\\xd2\\x84\\x40\\xa0\\x40\\x40" + bytes(7))
    >>> repair_torn_tail(p), p.read_bytes()
    (7, b'\\xd2\\x84@\\xa0@@')
    """
    if not path.exists():
        return 0
    data = path.read_bytes()
    items, torn = signed.split_sequence(data)
    keep = len(data) - torn
    while items and not items[-1].startswith(COSE_SIGN1_TAG):
        keep -= len(items.pop())
    if keep == len(data):
        return 0
    with open(path, "r+b") as f:
        f.truncate(keep)
        os.fsync(f.fileno())
    return len(data) - keep
