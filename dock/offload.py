"""Offload one authenticated camera: pull what is missing, verify, store, receipt.

For each segment the camera lists, in seq order:

1. its manifest must verify with the camera's enrolled key and chain on from the
   dock's *anchor* — the last manifest it verified for this camera at an earlier
   docking — so a segment deleted or replayed between dockings is caught;
2. the segment is read into the dock's staging area (resumable: a transfer cut by an
   unplugged camera goes on from where it stopped at the next docking) and must match
   the manifest's size and SHA-256;
3. it is written to the evidence store and fsync'd; only then is a custody receipt
   signed, kept in the store, and handed to the camera, which frees exactly that file.

Whatever fails is quarantined in the store with the reason, reported, and — no
receipt — stays on the camera. The event log goes the same way (chained on from the
last event the dock stored).
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

from common import signed
from common.link import MAX_OFFSET, LinkTimeout
from common.chain_head import read_head
from common.manifest import read_manifest
from evidence import audit
from evidence.store import Anchor, EvidenceStore
from dock.session import READ_RETRIES, DockSession, Refused
from dock.store_pipeline import StorePipeline


@dataclass
class OffloadReport:
    device_id: str
    listed: int = 0
    stored: list[int] = field(default_factory=list)
    freed: list[int] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    events_stored: int = 0
    bytes: int = 0

    @property
    def complete(self) -> bool:
        return not self.quarantined and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "complete": self.complete}


@dataclass
class Progress:
    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, n: int) -> None:
        self.done += n


def offload(session: DockSession, store: EvidenceStore, staging: Path, *, window: int = 8,
            progress: Progress | None = None, now_us: Callable[[], int] = lambda: time.time_ns() // 1000
            ) -> OffloadReport:
    assert session.device_id is not None and session.device_key is not None, "handshake first"
    dev, key = session.device_id, session.device_key
    report = OffloadReport(dev)
    progress = progress or Progress()
    entries, listing = _list_all(session)  # first: each retry also checks the camera is still there
    anchor = store.anchor(dev)
    report.listed = len(entries)
    progress.total = sum(e.get("size") or 0 for e in entries if e["seq"] > anchor.seq) + listing["events_size"]
    _check_head(listing.get("head"), key, anchor, entries, report)
    staging = staging / dev
    staging.mkdir(parents=True, exist_ok=True)

    prev_seq, prev_digest = anchor.seq, anchor.prev
    to_receipt: list[tuple[Any, str]] = []          # (manifest, location), sent once all is stored
    storer = _Storer(store, report, dev, anchor)
    staged: _Staged | None = None
    try:
        for entry in entries:
            seq, record = entry["seq"], entry["manifest"]
            if seq <= anchor.seq:  # verified at an earlier docking; the camera did not get (or keep) its receipt
                if store.has_segment(dev, seq):
                    if store.manifest(dev, seq) == record:   # the very segment stored: receipt it again
                        to_receipt.append((read_manifest(record, None), "already in the store"))
                    else:
                        # Never free on the number alone: a failing card's damaged copy (seen on
                        # the booted system), or a camera whose store was rolled back and numbers
                        # new footage again. The stored segment stands; the camera keeps its copy.
                        report.problems.append(
                            f"segment {seq}: the camera's copy differs from the stored segment {seq} (its "
                            "manifest is damaged, or the camera's store was rolled back and the number used "
                            "again); it stays on the camera")
                continue
            try:
                m = read_manifest(record, key)
                if m.seq != seq or m.device_id != dev:
                    raise signed.SignatureError(f"manifest {seq} names seq {m.seq} of device {m.device_id}")
            except signed.SignatureError as exc:
                storer.submit(_quarantine, store, report, dev, f"{seq:08d}.manifest", record,
                              f"manifest does not verify: {exc}")
                report.problems.append(f"segment {seq}: manifest does not verify; the chain cannot be followed "
                                       "past it, later segments stay on the camera")
                break
            chained = seq == prev_seq + 1 and m.prev == prev_digest
            if not chained:
                report.problems.append(
                    f"segment {seq}: does not chain on from segment {prev_seq} the dock verified last "
                    f"({'segments in between are missing' if seq != prev_seq + 1 else 'prev hash differs'}): "
                    "deleted or replayed between dockings")
            staged = _Staged(staging / f"{m.file}.part", m.size)
            storer.submit(staged.open)
            # The link thread only reads; staging, hashing (as the bytes arrive, no second pass),
            # verifying and storing with fsync happen on the store thread, overlapping the transfer.
            session.fetch(f"segments/{m.file}", staged.have, m.size, partial(storer.submit, staged.write),
                          window, progress.add)
            report.bytes += m.size - staged.have
            prev_seq, prev_digest = seq, signed.digest(record)
            problem = None if chained else report.problems[-1]
            storer.submit(_store_segment, storer, m, record, staged, prev_digest, problem, to_receipt)
    finally:
        try:
            storer.close()
        finally:
            if staged is not None:
                staged.close()  # a segment cut mid-transfer: what arrived is on disk for the resume
    # Receipts only now, once the store holds everything and the trail shows the ingest
    # (a cut link or a failing store leaves them for next time).
    if to_receipt:
        _record_ingest(session, store, report, dev, key, to_receipt, now_us)
    _send_receipts(session, store, report, dev, to_receipt, window, now_us)
    _offload_event_log(session, store, report, dev, key, listing, window, progress, now_us)
    return report


def _offload_event_log(session: DockSession, store: EvidenceStore, report: OffloadReport, dev: str, key,
                       listing: dict[str, Any], window: int, progress: Progress,
                       now_us: Callable[[], int]) -> None:
    """The event log in pieces of at most ``MAX_EVENTS`` bytes, each stored and receipted
    (so freed on the camera) before the next is read: a bay's memory stays bounded however
    long a camera went without docking."""
    size = listing["events_size"]
    for _ in range(MAX_EVENT_PIECES):
        if not size:
            return
        freed = _offload_events(session, store, report, dev, key, min(size, MAX_EVENTS), window, progress, now_us)
        if size <= MAX_EVENTS or not freed:
            return
        # The camera freed that piece (and logged doing so): how much is left now?
        size = session.call("list", {"after_seq": MAX_LISTED_SEQ}, retries=READ_RETRIES).get("events_size")
        if not _count(size) or size > MAX_OFFSET:
            raise Refused("bad_listing", "the camera's listing has no event log size (or one no file has)")
    report.problems.append(f"event log: more than {MAX_EVENT_PIECES} pieces; the rest is taken at the next docking")


class _Staged:
    """A segment being staged at ``path``: resumes from what an earlier docking left there."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.have = path.stat().st_size if path.exists() else 0
        if self.have > size:
            path.unlink()
            self.have = 0
        self.sha = hashlib.sha256()
        self._file: Any = None

    def open(self) -> None:
        if self.have:
            with open(self.path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    self.sha.update(block)
        self._file = open(self.path, "ab")

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.sha.update(data)

    def close(self) -> bytes:
        """Idempotent: flushes what was staged so a later docking resumes from its size."""
        if self._file is not None and not self._file.closed:
            self._file.close()
        return self.sha.digest()


class _Storer:
    """One background thread that stages and verifies segments in order, so the link keeps
    moving while the store works; storing itself runs in a :class:`StorePipeline`
    (two segments at once), finished in seq order. The first error stops it and is
    re-raised to the caller."""

    def __init__(self, store: EvidenceStore, report: OffloadReport, dev: str, anchor: Anchor) -> None:
        self.store, self.report, self.dev = store, report, dev
        self.anchor = anchor                      # as stored; advanced over the stored prefix only
        self.pipeline = StorePipeline(2, name=f"put:{dev}")
        self._queue: "queue.Queue[tuple | None]" = queue.Queue(maxsize=256)  # ≤ 16 MiB of chunks
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"store:{dev}", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((fn, args))

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is None:
                fn, args = job
                try:
                    fn(*args)
                except BaseException as exc:
                    self._error = exc
        try:
            if self._error is None:
                self.pipeline.drain()
        except BaseException as exc:
            self._error = exc
        finally:
            self.pipeline.close()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def advance(self, seq: int, manifest_digest: bytes) -> None:
        self.anchor = _anchor(self.anchor, seq, manifest_digest)
        self.store.set_anchor(self.dev, self.anchor)


def _store_segment(storer: _Storer, m: Any, record: bytes, staged: _Staged, manifest_digest: bytes,
                   problem: str | None, to_receipt: list[tuple[Any, str]]) -> None:
    store, report, dev = storer.store, storer.report, storer.dev
    digest, part = staged.close(), staged.path
    if digest != m.sha256 or part.stat().st_size != m.size:
        problem = "segment does not match the SHA-256/size in its manifest"
    if problem is not None:
        work = partial(_quarantine, store, report, dev, m.file, part, problem)

        def then(_: Any) -> None:
            storer.advance(m.seq, manifest_digest)
    else:
        work = partial(store.put_segment, dev, m.seq, record, part)

        def then(location: Any) -> None:
            report.stored.append(m.seq)
            to_receipt.append((m, location))
            storer.advance(m.seq, manifest_digest)
    storer.pipeline.submit(work, then)


def _record_ingest(session: DockSession, store: EvidenceStore, report: OffloadReport, dev: str, key: Any,
                   items: list[tuple[Any, str]], now_us: Callable[[], int]) -> None:
    """Keys the office verifies with, and one signed ``ingest`` record in the audit trail."""
    store.register_key("device", dev, key)
    store.register_key("dock", session.dock_id, session.key.public_key())
    audit.append(store, session.key, "ingest", device=dev, now_us=now_us(), details={
        "dock": session.dock_id, "segments": [m.seq for m, _ in items], "stored_now": list(report.stored),
        "recordings": sorted({m.recording_id for m, _ in items}), "bytes": report.bytes})


def _send_receipts(session: DockSession, store: EvidenceStore, report: OffloadReport, dev: str,
                   items: list[tuple[Any, str]], window: int, now_us: Callable[[], int]) -> None:
    """Sign, keep and hand over one receipt per stored segment, ``window`` in flight."""
    pending: list[tuple[int, int]] = []
    for i, (m, location) in enumerate(items):
        record = session.receipt_record(device_id=dev, kind="segment", seq=m.seq, file=m.file, sha256=m.sha256,
                                        size=m.size, location=location, stored_utc_us=now_us())
        store.put_receipt(dev, f"segment-{m.seq:08d}-{record[-8:].hex()}", record)
        pending.append((session.send("receipt", {"record": record}), m.seq, record))
        while pending and (len(pending) >= window or i == len(items) - 1):
            rid, seq, sent = pending.pop(0)
            try:
                try:
                    session.wait(rid)
                except LinkTimeout:  # the answer was lost: the same record again, answered alike
                    session.retried += 1
                    session.call("receipt", {"record": sent}, retries=READ_RETRIES - 1)
                report.freed.append(seq)
            except Refused as exc:
                report.problems.append(f"segment {seq}: the camera refused its receipt: {exc}")


MAX_LISTED = 200_000          # segments one camera can list (a year of 10-s segments, twice over)
MAX_MANIFEST = 64 * 1024      # bytes of one manifest
MAX_SEGMENT = 4 << 30         # bytes of one segment file
MAX_EVENTS = 16 << 20         # bytes of event log held in memory at once (taken in pieces of this)
MAX_EVENT_PIECES = 64         # pieces at one docking (1 GiB); the rest waits for the next
MAX_LISTED_SEQ = 1 << 62      # a listing after this seq holds no segments: asked for the event log's size


def _list_all(session: DockSession) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The camera's listing, page by page, checked entry by entry (bounded in entries and
    bytes; a page must move on)."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        listing = session.call("list", {"after_seq": after}, retries=READ_RETRIES)
        page = listing.get("segments")
        if page is None:
            page = []
        if not isinstance(page, list):
            raise Refused("bad_listing", "the camera's listing is malformed (segments is not a list)")
        for e in page:
            ok = (isinstance(e, dict) and _count(e.get("seq")) and e["seq"] > after
                  and isinstance(e.get("manifest"), bytes) and len(e["manifest"]) <= MAX_MANIFEST
                  and (e.get("size") is None or (_count(e.get("size")) and e["size"] <= MAX_SEGMENT)))
            if not ok:
                raise Refused("bad_listing", "the camera's listing is malformed (an entry's seq, manifest or size)")
            after = e["seq"]
        entries += page
        if len(entries) > MAX_LISTED:
            raise Refused("bad_listing", f"the camera lists more than {MAX_LISTED} segments; refusing the listing")
        if not listing.get("more") or not page:
            break
    events_size = listing.get("events_size")
    if not _count(events_size) or events_size > MAX_OFFSET:
        raise Refused("bad_listing", "the camera's listing has no event log size (or one no file has)")
    return sorted(entries, key=lambda e: e["seq"]), listing


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_head(head_record: Any, key, anchor: Anchor, entries: list[dict[str, Any]],
                report: OffloadReport) -> None:
    if head_record is None:
        if entries or anchor.seq:
            report.problems.append("the camera has no chain head")
        return
    try:
        head = read_head(head_record, key)
    except signed.SignatureError as exc:
        report.problems.append(f"the camera's chain head does not verify: {exc}")
        return
    if head.seq < anchor.seq:
        report.problems.append(f"the camera's chain head (seq {head.seq}) is older than the dock's anchor "
                               f"(seq {anchor.seq}): the camera's store was rolled back")
    newest = max((e["seq"] for e in entries), default=anchor.seq)
    if head.seq > max(newest, anchor.seq):
        report.problems.append(f"the camera's head names seq {head.seq}, but it lists nothing after {newest}: "
                               "segments were deleted from the camera")


def _anchor(current: Anchor, seq: int, digest: bytes) -> Anchor:
    return Anchor(seq, digest, current.event_seq, current.event_prev)


def _quarantine(store: EvidenceStore, report: OffloadReport, dev: str, name: str, data: bytes | Path,
                reason: str) -> None:
    location = store.quarantine(dev, name, data, reason)
    report.quarantined.append({"name": name, "reason": reason, "location": location})


def _offload_events(session: DockSession, store: EvidenceStore, report: OffloadReport, dev: str, key,
                    size: int, window: int, progress: Progress, now_us: Callable[[], int]) -> bool:
    """The first ``size`` bytes of the camera's event log (whole records only): verified,
    stored, receipted. True when the camera freed them."""
    chunks: list[bytes] = []
    session.fetch("events.cbors", 0, size, chunks.append, window, progress.add)
    data = b"".join(chunks)
    records, torn = signed.split_sequence(data)
    data = data[:len(data) - torn]
    if not records:
        if size:
            report.problems.append("event log: no whole record in what the camera sent")
        return False
    anchor = store.anchor(dev)
    stored_seq, stored_prev = store.event_head(dev)
    if stored_seq > anchor.event_seq:  # a piece stored before its anchor was (a dock killed in between)
        anchor = Anchor(anchor.seq, anchor.prev, stored_seq, stored_prev)
    try:
        bodies = signed.verify_chain(records, key)
    except (signed.SignatureError, signed.ChainError) as exc:
        _quarantine(store, report, dev, f"events-{now_us()}.cbors", data, f"event log does not verify: {exc}")
        report.problems.append(f"event log: {exc}")
        return False
    new = [i for i, b in enumerate(bodies) if b["seq"] > anchor.event_seq]
    old = [i for i, b in enumerate(bodies) if b["seq"] == anchor.event_seq]
    if anchor.event_seq and old and signed.digest(records[old[0]]) != anchor.event_prev:
        reason = "event log does not chain on from the record the dock stored last (altered)"
        _quarantine(store, report, dev, f"events-{now_us()}.cbors", data, reason)
        report.problems.append(reason)
        return False
    if new:
        first = bodies[new[0]]
        if first["seq"] != anchor.event_seq + 1 or first["prev"] != anchor.event_prev:
            reason = (f"event log resumes at event {first['seq']}, the dock stored up to {anchor.event_seq}: "
                      "events deleted between dockings")
            report.problems.append(reason)
            _quarantine(store, report, dev, f"events-{now_us()}.cbors", data, reason)
            return False
        start = sum(len(r) for r in records[:new[0]])
        location = store.put_events(dev, first["seq"], bodies[-1]["seq"], data[start:])
        report.events_stored += len(new)
        current = store.anchor(dev)
        store.set_anchor(dev, Anchor(current.seq, current.prev, bodies[-1]["seq"], signed.digest(records[-1])))
    else:
        location = "already in the store"
    record = session.receipt_record(device_id=dev, kind="events", seq=bodies[-1]["seq"], file="events.cbors",
                                    sha256=hashlib.sha256(data).digest(), size=len(data), location=location,
                                    stored_utc_us=now_us())
    store.put_receipt(dev, f"events-{bodies[-1]['seq']:08d}-{record[-8:].hex()}", record)
    try:
        session.call("receipt", {"record": record}, retries=READ_RETRIES)
    except Refused as exc:
        report.problems.append(f"event log: the camera refused its receipt: {exc}")
        return False
    return True
