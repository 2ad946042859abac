"""Keeping the index in step with the store: the incremental refresh and the full rebuild.

**Refresh** (after a docking, every few seconds in the console, before every command):
the audit trail is the store's change log. The index remembers the last record it
applied (number and SHA-256); it checks that record is still there unchanged (one
read), finds the end of the trail in a few lookups (:func:`evidence.audit.last_seq`)
and applies only the new records: an ``ingest`` names the segments it stored, so only
those manifests are read; the device's new event-log pieces and custody receipts are
picked up from just after what the index has. The work is proportional to what is new.
A trail that no longer holds the record the index saw last (altered, cut) is never
papered over: :class:`IndexStale` asks for a rebuild, and the rebuilt index keeps the
finding as a problem.

**Rebuild** (``bodycam-evidence reindex``, or a missing, old or damaged index): from
the store alone — the whole trail, then every device's manifests, event log and
receipts, read in parallel (a thread pool: S3 GETs are latency-bound), committed device
by device so a killed rebuild resumes where it stopped.

Records, manifests and logs that cannot be read are listed as problems, never a crash.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import sqlite3

from common import signed
from common.manifest import read_manifest
from evidence import audit
from evidence.store import EvidenceStore

PENDING_S = 600          # after an ingest, keep looking for its receipts and event log this long
BATCH = 256              # records or manifests read in parallel, then committed together

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class IndexStale(Exception):
    """The store's trail no longer holds what the index saw: the index must be rebuilt."""


@dataclass
class Report:
    records: int = 0
    segments: int = 0
    events: int = 0
    receipts: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def case_key(case: str) -> str:
    """How an Aktenzeichen is compared: case, spaces and the usual separators don't matter."""
    return "".join(ch for ch in case.casefold() if ch.isalnum())


class Follower:
    """Reads the store and writes one index generation (one thread, one connection)."""

    def __init__(self, store: EvidenceStore, conn: sqlite3.Connection, pool: ThreadPoolExecutor,
                 now_us: Callable[[], int]) -> None:
        self.store, self.conn, self.pool, self.now_us = store, conn, pool, now_us
        self.report = Report()

    # ------------------------------------------------------------------ helpers
    def _meta(self, key: str) -> str:
        row = self.conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return row[0] if row else ""

    def _set(self, key: str, value: object) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))

    def problem(self, what: str, text: str) -> None:
        self.report.problems.append(text)
        self.conn.execute("INSERT OR REPLACE INTO problems VALUES (?, ?, ?)", (what, text, self.now_us()))

    def _read_many(self, keys: list[str]) -> Iterator[tuple[str, bytes | None]]:
        """(key, bytes or None if gone), in order, ``BATCH`` at a time in parallel."""
        def get(key: str) -> bytes | None:
            try:
                return self.store.backend.read(key)
            except FileNotFoundError:
                return None
        for i in range(0, len(keys), BATCH):
            chunk = keys[i:i + BATCH]
            yield from zip(chunk, self.pool.map(get, chunk))

    def key(self, fp: str) -> tuple[str, str, Any] | None:
        """(role, id, public key) registered in the store under ``fp``; cached (write-once)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        row = self.conn.execute("SELECT role, id, public FROM keys WHERE fp = ?", (fp,)).fetchone()
        if row is not None:
            return row[0], row[1], Ed25519PublicKey.from_public_bytes(row[2])
        known = self.store.public_key(fp)
        if known is not None:
            self.conn.execute("INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?)",
                              (fp, known[0], known[1], known[2].public_bytes_raw()))
        return known

    # ------------------------------------------------------------------ the trail
    def check_head(self) -> int:
        """The last record the index applied, checked to be still in the store unchanged."""
        seq = int(self._meta("audit_seq") or 0)
        if seq:
            try:
                record = self.store.backend.read(audit._key(seq))
            except FileNotFoundError:
                record = None
            if record is None or signed.digest(record).hex() != self._meta("audit_digest"):
                raise IndexStale(f"the audit trail no longer holds record {seq} as the index saw it "
                                 "(records were removed or altered); run: bodycam-evidence audit --verify")
        return seq

    def follow_trail(self, load: bool, progress: Progress | None = None, upto: int | None = None) -> int:
        """Apply every record after the last applied one; ``load``: read what ingests name."""
        start = int(self._meta("audit_seq") or 0)
        end = audit.last_seq(self.store, start) if upto is None else upto
        done = start
        while done < end:
            chunk = list(range(done + 1, min(end, done + BATCH * 4) + 1))
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if int(self._meta("audit_seq") or 0) != done:  # another process applied them meanwhile
                    self.conn.execute("ROLLBACK")
                    return self.follow_trail(load, progress, upto)
                for seq, record in self._read_many([audit._key(s) for s in chunk]):
                    self._apply_record(int(seq[6:18]), record, load)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            done = chunk[-1]
            if progress:
                progress("trail", done, end)
        return end - start

    def _apply_record(self, seq: int, record: bytes | None, load: bool) -> None:
        self.report.records += 1
        prev_digest = bytes.fromhex(self._meta("audit_digest") or "") or None
        if record is None:
            self.problem(f"audit:{seq}", f"audit record {seq} vanished while the index read it")
            return
        try:
            body = audit._decode(record, seq)
            entry = audit._entry(body, record)
        except signed.SignatureError as exc:
            self.problem(f"audit:{seq}", f"audit record {seq} cannot be read ({exc}); run: bodycam-evidence "
                                         "audit --verify")
            self._set("audit_seq", seq)
            self._set("audit_digest", signed.digest(record).hex())
            return
        known = self.key(entry.signer)
        ok = 0
        if known is None:
            self.problem(f"audit:{seq}", f"audit record {seq} is signed by a key not registered in the store")
        else:
            try:
                signed.open_signed(record, known[2])
                ok = 1
            except signed.SignatureError as exc:
                self.problem(f"audit:{seq}", f"audit record {seq}: {exc}")
        if body["prev"] != prev_digest:
            self.problem(f"audit:{seq}:chain", f"audit record {seq} does not chain on from record {seq - 1}")
        self.conn.execute("INSERT OR REPLACE INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
            seq, entry.utc_us, entry.action, entry.by, entry.device, entry.recording,
            json.dumps(jsonable(entry.details), ensure_ascii=False), entry.signer, entry.digest, ok))
        self._set("audit_seq", seq)
        self._set("audit_digest", entry.digest.hex())
        self._fold(entry, load)

    def _fold(self, e: audit.Entry, load: bool) -> None:
        """What a record means for the office's state (as :class:`evidence.state.State` folds it)."""
        c, rec, d = self.conn, e.recording or "", e.details
        try:
            if e.action == "init":
                self._set("initialised", 1)
                self._set("retention_days", int(d.get("retention_days", 14)))
                self._set("supervisors", json.dumps(list(d.get("supervisors", []))))
            elif e.action == "hold":
                case = str(d.get("case", ""))
                c.execute("INSERT OR REPLACE INTO holds VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (e.seq, rec, str(d["reason"]), case, case_key(case), e.by, e.utc_us))
                self._held(rec)
            elif e.action == "release":
                c.execute("DELETE FROM holds WHERE recording = ? AND reason = ?", (rec, str(d["reason"])))
                self._held(rec)
            elif e.action == "approve-delete":
                c.execute("INSERT OR REPLACE INTO approvals VALUES (?, ?, ?)", (rec, str(d["role"]), e.by or ""))
            elif e.action in ("delete", "purge"):
                # Whoever deleted destroys the footage right after this record: look for it
                # for a while (another office's deletion), so the index learns it is gone.
                c.execute("INSERT OR REPLACE INTO deletions (recording, audit_seq, action, by, utc_us, "
                          "check_until_us) VALUES (?, ?, ?, ?, ?, ?)",
                          (rec, e.seq, e.action, e.by, e.utc_us, self.now_us() + PENDING_S * 1_000_000 if load else 0))
                c.execute("UPDATE recordings SET deleted = 1 WHERE id = ?", (rec,))
            elif e.action == "user":
                c.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?)", (str(d["id"]), str(d["role"]), e.seq))
            elif e.action == "export":
                c.execute("INSERT OR REPLACE INTO exports VALUES (?, ?, ?, ?, ?, ?)",
                          (e.seq, rec, e.by, e.utc_us, str(d.get("file", "")), str(d.get("sha256", ""))))
            elif e.action == "ingest" and e.device:
                seqs = [s for s in d.get("segments", []) if isinstance(s, int) and not isinstance(s, bool)]
                self._ingested(e.device, e.seq, e.utc_us, seqs)
                if load:
                    self.load_segments(e.device, seqs)
        except (KeyError, TypeError, ValueError) as exc:
            self.problem(f"audit:{e.seq}:details", f"audit record {e.seq} ({e.action}) has unusable details: {exc}")

    def _held(self, rec: str) -> None:
        self.conn.execute("UPDATE recordings SET held = (SELECT COUNT(*) FROM holds WHERE recording = ?) "
                          "WHERE id = ?", (rec, rec))

    def _ingested(self, device: str, seq: int, utc_us: int, seqs: list[int]) -> None:
        first = min(seqs) if seqs else None
        self.conn.execute(
            "INSERT INTO devices (id, last_ingest_seq, last_ingest_us, pending_until_us, receipts_after) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET last_ingest_seq = excluded.last_ingest_seq, "
            "last_ingest_us = excluded.last_ingest_us, pending_until_us = excluded.pending_until_us, "
            "receipts_after = CASE WHEN devices.receipts_after = '' OR excluded.receipts_after < "
            "devices.receipts_after THEN excluded.receipts_after ELSE devices.receipts_after END",
            (device, seq, utc_us, self.now_us() + PENDING_S * 1_000_000,
             "" if first is None else f"devices/{device}/receipts/segment-{first - 1:08d}-~"))

    # ------------------------------------------------------------------ segments
    def load_segments(self, device: str, seqs: Iterable[int], footage: set[int] | None = None) -> None:
        """Read the manifests of ``device``'s segments ``seqs`` and index them."""
        keys = [f"devices/{device}/segments/{s:08d}.manifest" for s in sorted(set(seqs))]
        touched: set[str] = set()
        for key, record in self._read_many(keys):
            seq = int(key.rsplit("/", 1)[1][:8])
            if record is None:
                self.problem(f"manifest:{key}", f"{device}: manifest {seq:08d} is named by an ingest record "
                                                "but is not in the store")
                continue
            try:
                m = read_manifest(record, None)
                if m.seq != seq or m.device_id != device:
                    raise signed.SignatureError(f"it names seq {m.seq} of device {m.device_id}")
            except signed.SignatureError as exc:
                self.problem(f"manifest:{key}", f"{device}: manifest {seq:08d} cannot be read ({exc})")
                continue
            self.conn.execute("INSERT OR REPLACE INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                              "?, ?)", (
                device, seq, m.recording_id, m.index, m.start_utc_us, m.end_utc_us, m.start_mono_us,
                m.end_mono_us, m.first_pts_us, m.frames, m.size, m.sha256, int(m.complete), int(m.final), record,
                signed.digest(record), 1 if footage is None else int(seq in footage)))
            self.conn.execute("DELETE FROM problems WHERE what = ?", (f"manifest:{key}",))
            touched.add(m.recording_id)
            self.report.segments += 1
        self.conn.execute("INSERT OR IGNORE INTO devices (id) VALUES (?)", (device,))
        for rid in sorted(touched):
            self.recompute(rid)

    def recompute(self, rid: str) -> None:
        """The recording's row from its segments (officer, times, kind) and the office's state."""
        rows = self.conn.execute("SELECT seq, manifest, start_utc_us, end_utc_us, start_mono_us, end_mono_us, "
                                 "frames, complete, final, device FROM segments WHERE recording = ? "
                                 "ORDER BY idx, seq", (rid,)).fetchall()
        if not rows:
            return
        first, last = read_manifest(rows[0]["manifest"], None), rows[-1]
        end = last["end_utc_us"] if last["end_utc_us"] is not None else last["start_utc_us"]
        seqs = [r["seq"] for r in rows]
        self.conn.execute(
            "INSERT INTO recordings (id, device, officer, start_utc_us, end_utc_us, duration_us, segments, seqs, "
            "frames, announced, truncated, final, first_seq, last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET device = excluded.device, officer = excluded.officer, "
            "start_utc_us = excluded.start_utc_us, end_utc_us = excluded.end_utc_us, "
            "duration_us = excluded.duration_us, segments = excluded.segments, seqs = excluded.seqs, "
            "frames = excluded.frames, announced = excluded.announced, truncated = excluded.truncated, "
            "final = excluded.final, first_seq = excluded.first_seq, last_seq = excluded.last_seq",
            (rid, rows[0]["device"], first.officer_id, first.start_utc_us, end, end - first.start_utc_us,
             len(rows), json.dumps(seqs), sum(r["frames"] or 0 for r in rows), int(first.announced),
             int(any(not r["complete"] for r in rows)), int(bool(last["final"])), min(seqs), max(seqs)))
        self.conn.execute("UPDATE recordings SET held = (SELECT COUNT(*) FROM holds WHERE recording = ?), "
                          "deleted = EXISTS (SELECT 1 FROM deletions WHERE recording = ?) WHERE id = ?",
                          (rid, rid, rid))
        self._markers("id = ?", rid)

    def _markers(self, where: str, *args: Any) -> None:
        mono_end = ("COALESCE((SELECT MAX(COALESCE(end_mono_us, start_mono_us)) FROM segments s "
                    "WHERE s.recording = recordings.id), 0)")
        mono_start = "COALESCE((SELECT MIN(start_mono_us) FROM segments s WHERE s.recording = recordings.id), 0)"
        self.conn.execute(
            f"UPDATE recordings SET markers = (SELECT COUNT(*) FROM events e WHERE e.device = recordings.device "
            f"AND e.kind = 'marker' AND (e.recording = recordings.id OR e.mono_us BETWEEN {mono_start} AND "
            f"{mono_end})) WHERE {where}", args)

    # ------------------------------------------------------------------ event log, receipts
    def follow_device(self, device: str, *, everything: bool = False) -> None:
        """New event-log pieces and custody receipts of ``device`` (all of them: ``everything``)."""
        row = self.conn.execute("SELECT events_after, receipts_after FROM devices WHERE id = ?", (device,)).fetchone()
        events_after = "" if everything or row is None else row["events_after"] or ""
        receipts_after = "" if everything or row is None else row["receipts_after"] or ""
        if not everything and not receipts_after:
            receipts_after = f"devices/{device}/receipts/segment-~"   # nothing pending
        new_events = self._events(device, events_after)
        self._receipts(device, receipts_after)
        if new_events:
            lo, hi = min(m for m, _ in new_events), max(m for m, _ in new_events)
            rids = {r for _, r in new_events if r}
            self._markers("device = ? AND (id IN (SELECT value FROM json_each(?)) OR id IN (SELECT DISTINCT "
                          "recording FROM segments WHERE device = ? AND COALESCE(end_mono_us, start_mono_us) >= ? "
                          "AND start_mono_us <= ?))", device, json.dumps(sorted(rids)), device, lo, hi)

    def _events(self, device: str, after: str) -> list[tuple[int, str | None]]:
        prefix = f"devices/{device}/events/"
        keys = self.store.backend.keys_after(prefix, after)
        added: list[tuple[int, str | None]] = []
        for key, data in self._read_many(keys):
            self.conn.execute("UPDATE devices SET events_after = ? WHERE id = ?", (key, device))
            if data is None:
                continue
            records, torn = signed.split_sequence(data)
            for record in records:
                kid = (signed.kid_of(record) or b"").hex()
                known = self.key(kid)
                if known is None or known[0] != "device" or known[1] != device:
                    self.problem(f"events:{key}", f"{key}: signed by a key not registered for {device}")
                    break
                try:
                    body = signed.open_signed(record, known[2])
                except signed.SignatureError as exc:
                    self.problem(f"events:{key}", f"{key}: {exc}")
                    break
                if not isinstance(body.get("seq"), int) or not isinstance(body.get("utc_us"), int):
                    self.problem(f"events:{key}", f"{key}: an event without seq or time")
                    break
                data_ = body.get("data") if isinstance(body.get("data"), dict) else {}
                rid = data_.get("recording_id") if isinstance(data_.get("recording_id"), str) else None
                mono = body.get("mono_us") if isinstance(body.get("mono_us"), int) else 0
                self.conn.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", (
                    device, body.get("seq"), body.get("utc_us"), mono, str(body.get("kind")), rid,
                    json.dumps(jsonable(data_), ensure_ascii=False)))
                added.append((mono, rid))
                self.report.events += 1
            if torn:
                self.problem(f"events:{key}:torn", f"{key}: {torn} bytes after the last record")
        return added

    def _receipts(self, device: str, after: str) -> None:
        prefix = f"devices/{device}/receipts/segment-"
        keys = [k for k in self.store.backend.keys_after(prefix, after)
                if self.conn.execute("SELECT 1 FROM receipts WHERE device = ? AND name = ?",
                                     (device, k.rsplit("/", 1)[1])).fetchone() is None]
        for key, record in self._read_many(keys):
            if record is None:
                continue
            name = key.rsplit("/", 1)[1]
            try:
                body = signed.open_signed(record, None)
            except signed.SignatureError as exc:
                self.problem(f"receipt:{key}", f"{key}: cannot be read ({exc})")
                continue
            if body.get("kind") != "segment" or not isinstance(body.get("seq"), int):
                continue
            known = self.key(str(body.get("dock_key", "")))
            ok = 0
            if known is not None and known[0] == "dock":
                try:
                    signed.open_signed(record, known[2])
                    ok = 1
                except signed.SignatureError:
                    ok = 0
            stored = body.get("stored_utc_us")
            self.conn.execute("INSERT OR REPLACE INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                device, name, "segment", body["seq"], str(body.get("dock_id")), str(body.get("dock_key")),
                stored if isinstance(stored, int) else None, str(body.get("location")), ok))
            self.report.receipts += 1

    def follow_pending(self) -> None:
        """Devices that docked recently: their receipts and event log come after the ingest."""
        now = self.now_us()
        for (device,) in self.conn.execute("SELECT id FROM devices WHERE pending_until_us > ?", (now,)).fetchall():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.follow_device(device)
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        self.conn.execute("UPDATE devices SET receipts_after = '' WHERE pending_until_us <= ? AND "
                          "receipts_after != ''", (now,))
        for (rid,) in self.conn.execute("SELECT recording FROM deletions WHERE footage_gone = 0 AND check_until_us > ?",
                                        (now,)).fetchall():
            self.footage_check(rid)

    def footage_check(self, rid: str) -> None:
        """Whether the footage of a deleted recording is gone from the store now."""
        seqs = self.conn.execute("SELECT device, seq FROM segments WHERE recording = ? AND footage = 1",
                                 (rid,)).fetchall()
        present = list(self.pool.map(lambda r: self.store.has_footage(r[0], r[1]), seqs))
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for (device, seq), there in zip(seqs, present):
                if not there:
                    self.conn.execute("UPDATE segments SET footage = 0 WHERE device = ? AND seq = ?", (device, seq))
            if not any(present):
                self.conn.execute("UPDATE deletions SET footage_gone = 1, check_until_us = 0 WHERE recording = ?",
                                  (rid,))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ a whole device (rebuild)
    def rebuild_device(self, device: str) -> None:
        """Everything of one device from a listing of the store: manifests, footage, events, receipts."""
        keys = self.store.backend.keys_after(f"devices/{device}/segments/", "")
        manifests = [int(k.rsplit("/", 1)[1][:8]) for k in keys if k.endswith(".manifest")
                     and k.rsplit("/", 1)[1][:8].isdigit()]
        footage = {int(k.rsplit("/", 1)[1][:8]) for k in keys if k.endswith(".ts.age")
                   and k.rsplit("/", 1)[1][:8].isdigit()}
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ("segments", "events", "receipts"):
                self.conn.execute(f"DELETE FROM {table} WHERE device = ?", (device,))
            self.conn.execute("INSERT OR IGNORE INTO devices (id) VALUES (?)", (device,))
            self.load_segments(device, manifests, footage)
            self.follow_device(device, everything=True)
            self.conn.execute("UPDATE devices SET receipts_after = '' WHERE id = ?", (device,))
            self.conn.execute("UPDATE deletions SET footage_gone = NOT EXISTS (SELECT 1 FROM segments s WHERE "
                              "s.recording = deletions.recording AND s.footage = 1) WHERE recording IN "
                              "(SELECT DISTINCT recording FROM segments WHERE device = ?)", (device,))
            self.conn.execute("INSERT OR REPLACE INTO rebuild_devices VALUES (?)", (device,))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise


def now_us() -> int:
    return time.time_ns() // 1000
