"""Keeping the index in step with the store: the incremental refresh and the full rebuild.

**Refresh** (after a docking, every few seconds in the console, before every command):
the audit trail is the store's change log. The index remembers the last record it
applied (number and SHA-256); it checks that record is still there unchanged (one
read), finds the end of the trail in a few lookups (:func:`evidence.audit.last_seq`)
and applies only the new records: an ``ingest`` names the segments it stored, so only
those manifests are read; the device's new event-log pieces are picked up from just
after the last one the index has; custody receipts are read per recording when first
shown (:meth:`Follower.load_receipts`). The work is proportional to what is new.
A trail that no longer holds the record the index saw last (altered, cut) is never
papered over: :class:`IndexStale` asks for a rebuild, and the rebuilt index keeps the
finding as a problem.

**Rebuild** (``bodycam-evidence reindex``, or a missing, old or damaged index): from
the store alone — the whole trail, then every device's manifests and event log
read in parallel (a thread pool: S3 GETs are latency-bound), committed device
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
from common.manifest import read_checked_manifest, read_manifest
from evidence import audit, packs
from evidence.state import REDACTION_APPROVAL
from evidence.store import EvidenceStore

PENDING_S = 600          # after an ingest, keep looking for the device's event log this long
CHECK_EVERY_US = 2_000_000  # … every this often
BATCH = 256              # records or manifests read in parallel, then committed together
PACKED_FROM = 100        # records read at once from which a pack is worth a listing and a GET
                         # (a chunk of the trail, BATCH * 4, never crosses a pack's block)
MAX_INGEST = 100_000     # segments one docking can name (11 days of 10-s segments, recorded without a break)

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
    deleted: list[str] = field(default_factory=list)   # recordings whose deletion this refresh applied
    users_changed: list[str] = field(default_factory=list)  # console users whose record changed

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
        self._prev: bytes | None = None   # SHA-256 of the last record applied (in this chunk)

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
        while done < end:  # a chunk never crosses a pack's block, so a whole block is one pack
            chunk = list(range(done + 1, min(end, done + BATCH * 4, packs.block_of(done + 1) + packs.BLOCK - 1) + 1))
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                if int(self._meta("audit_seq") or 0) != done:  # another process applied them meanwhile
                    self.conn.execute("ROLLBACK")
                    return self.follow_trail(load, progress, upto)
                self._prev = bytes.fromhex(self._meta("audit_digest") or "") or None
                for seq, record, packed in self._trail(chunk):
                    self._apply_record(seq, record, load)
                    if record is not None and not packed and packs.lists_md5(self.store.backend):
                        self.conn.execute("INSERT OR REPLACE INTO pack_staging VALUES (?, ?)", (seq, record))
                self._set("audit_seq", chunk[-1])
                self._set("audit_digest", self._prev.hex() if self._prev else "")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            done = chunk[-1]
            self._pack_trail(done)
            if progress:
                progress("trail", done, end)
        return end - start

    def _trail(self, seqs: list[int]) -> Iterator[tuple[int, bytes | None, bool]]:
        """(seq, record or None if gone, whether from a pack) for ``seqs`` (within one block):
        many at once from the block's pack, checked against a listing (:mod:`evidence.packs`)."""
        backend = self.store.backend
        keys = [audit._key(s) for s in seqs]
        if len(seqs) < PACKED_FROM or not packs.lists_md5(backend):
            for key, record in self._read_many(keys):
                yield int(key[6:18]), record, False
            return
        md5 = dict(backend.listing(f"{audit.PREFIX}/", audit._key(seqs[0] - 1), until=keys[-1]))
        members, trouble = packs.read_packs(backend, self.pool, [packs.audit_pack_key(packs.block_of(seqs[0]))],
                                            "audit")
        for text in trouble:
            self.problem(f"pack:{packs.audit_pack_key(packs.block_of(seqs[0]))}", text)
        for key, record, packed in packs.read_through(backend, self.pool, [(k, md5.get(k)) for k in keys], members):
            yield int(key[6:18]), record, packed

    def _pack_trail(self, upto: int) -> None:
        """Pack every whole block of records read one by one up to ``upto``; forget the
        rest of those blocks (a record that vanished or did not verify leaves it unpacked)."""
        last_whole = packs.block_of(upto + 1) - 1
        if last_whole <= 0:
            return
        rows = self.conn.execute("SELECT seq, record FROM pack_staging WHERE seq <= ? ORDER BY seq",
                                 (last_whole,)).fetchall()
        blocks: dict[int, dict[str, bytes]] = {}
        for seq, record in rows:
            blocks.setdefault(packs.block_of(seq), {})[f"{seq:012d}.cbor"] = record
        for first, members in blocks.items():
            if len(members) == packs.BLOCK:
                trouble = packs.write(self.store.backend, packs.audit_pack_key(first), packs.encode("audit", members))
                if trouble:  # only a copy: the next rebuild reads these one by one again
                    self.report.problems.append(trouble)
        self.conn.execute("DELETE FROM pack_staging WHERE seq <= ?", (last_whole,))

    def _apply_record(self, seq: int, record: bytes | None, load: bool) -> None:
        self.report.records += 1
        prev_digest, self._prev = self._prev, signed.digest(record) if record is not None else None
        if record is None:
            self.problem(f"audit:{seq}", f"audit record {seq} vanished while the index read it")
            return
        try:
            body = audit._decode(record, seq)
            entry = audit._entry(body, record)
        except signed.SignatureError as exc:
            self.problem(f"audit:{seq}", f"audit record {seq} cannot be read ({exc}); run: bodycam-evidence "
                                         "audit --verify")
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
        if ok and not self._may(entry, known):
            self.problem(f"audit:{seq}:role", f"audit record {seq} ({entry.action}) is signed by a {known[0]} key, "
                                              "which may not record it; it is shown, not acted on")
        elif ok:
            self._fold(entry, load)  # a record nobody entitled signed is shown, never acted on

    @staticmethod
    def _may(entry: audit.Entry, known: Any) -> bool:
        """Only a dock records ingests; a camera's revocation a dock or the office; the
        office records its decisions (a dock's revocation among them)."""
        role = known[0] if known else ""
        if entry.action == "revoke":
            return role in ("dock", "office")
        return role == ("dock" if entry.action == "ingest" else "office")

    def _fold(self, e: audit.Entry, load: bool) -> None:
        """What a record means for the office's state (as :class:`evidence.state.State` folds it)."""
        c, rec, d = self.conn, e.recording or "", e.details
        try:
            if e.action == "init":
                if self._meta("initialised") != "1":
                    self._set("demo", int(bool(d.get("demo", False))))  # the first init decides, for good
                self._set("initialised", 1)
                self._set("retention_days", int(d.get("retention_days", 14)))
                self._set("supervisors", json.dumps(list(d.get("supervisors", []))))
                self._set("retention_approval", "")
                if d.get("redaction_approval") in REDACTION_APPROVAL:
                    self._set("redaction_approval", str(d["redaction_approval"]))
            elif e.action == "approve-retention":
                self._set("retention_approval", json.dumps({"retention_days": int(d["retention_days"]), "by": e.by,
                                                             "audit_seq": e.seq}))
            elif e.action == "approve-release":
                c.execute("INSERT OR REPLACE INTO release_requests VALUES (?, ?, ?, ?, ?)",
                          (rec, str(d["reason"]), e.by, str(d.get("why", "")), e.seq))
            elif e.action == "hold":
                case = str(d.get("case", ""))
                c.execute("INSERT OR REPLACE INTO holds VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (e.seq, rec, str(d["reason"]), case, case_key(case), e.by, e.utc_us))
                self._held(rec)
            elif e.action == "release":
                c.execute("DELETE FROM holds WHERE recording = ? AND reason = ?", (rec, str(d["reason"])))
                c.execute("DELETE FROM release_requests WHERE recording = ? AND reason = ?", (rec, str(d["reason"])))
                self._held(rec)
            elif e.action == "approve-delete":
                c.execute("INSERT OR REPLACE INTO approvals VALUES (?, ?, ?)", (rec, str(d["role"]), e.by or ""))
            elif e.action == "officer" and isinstance(d.get("id"), str):
                names = json.loads(self._meta("officers") or "{}")
                if d.get("name"):
                    names[d["id"]] = str(d["name"])[:200]
                else:
                    names.pop(d["id"], None)
                self._set("officers", json.dumps(names, ensure_ascii=False, sort_keys=True))
            elif e.action == "decline":   # a request or consent declined: it no longer stands
                if d.get("what") == "release":
                    c.execute("DELETE FROM release_requests WHERE recording = ? AND reason = ?",
                              (rec, str(d.get("reason", ""))))
                elif d.get("what") == "delete":
                    c.execute("DELETE FROM approvals WHERE recording = ?", (rec,))
                elif d.get("what") == "retention":
                    self._set("retention_approval", "")
            elif e.action in ("delete", "purge"):
                # Whoever deleted destroys the footage right after this record: look for it
                # for a while (another office's deletion), so the index learns it is gone.
                c.execute("INSERT OR REPLACE INTO deletions (recording, audit_seq, action, by, utc_us, "
                          "check_until_us) VALUES (?, ?, ?, ?, ?, ?)",
                          (rec, e.seq, e.action, e.by, e.utc_us, self.now_us() + PENDING_S * 1_000_000 if load else 0))
                c.execute("UPDATE recordings SET deleted = 1 WHERE id = ?", (rec,))
                self.report.deleted.append(rec)
            elif e.action == "user":
                c.execute("INSERT OR REPLACE INTO users VALUES (?, ?, ?, ?)",
                          (str(d["id"]), str(d["role"]), e.seq, str(d.get("state", "active"))))
                self.report.users_changed.append(str(d["id"]))
            elif e.action == "export":
                c.execute("INSERT OR REPLACE INTO exports VALUES (?, ?, ?, ?, ?, ?)",
                          (e.seq, rec, e.by, e.utc_us, str(d.get("file", "")), str(d.get("sha256", ""))))
            elif e.action == "revoke" and e.device:  # the first revocation of a camera counts
                c.execute("INSERT OR IGNORE INTO revocations VALUES (?, ?, ?, ?, ?)",
                          (e.device, e.utc_us, str(d.get("reason", ""))[:300], e.by or "", e.seq))
            elif e.action == "revoke-dock" and isinstance(d.get("dock_key"), str):
                c.execute("INSERT OR IGNORE INTO dock_revocations VALUES (?, ?, ?, ?, ?, ?)",
                          (d["dock_key"], str(d.get("dock_id") or ""), e.utc_us, str(d.get("reason", ""))[:300],
                           e.by or "", e.seq))
            elif e.action == "ingest" and e.device:
                named = d.get("segments", [])
                seqs = [s for s in named[:MAX_INGEST] if isinstance(s, int) and not isinstance(s, bool)
                        and 0 < s < 2**53]
                if len(seqs) != len(named):
                    self.problem(f"audit:{e.seq}:segments", f"audit record {e.seq} (ingest) names {len(named)} "
                                 f"segments, {len(named) - len(seqs)} of them not segment numbers or beyond "
                                 f"{MAX_INGEST} in one docking; those are left out (reindex reads the store whole)")
                self._ingested(e.device, e.seq, e.utc_us, seqs)
                if load:
                    self.load_segments(e.device, seqs)
        except (KeyError, TypeError, ValueError) as exc:
            self.problem(f"audit:{e.seq}:details", f"audit record {e.seq} ({e.action}) has unusable details: {exc}")

    def _held(self, rec: str) -> None:
        self.conn.execute("UPDATE recordings SET held = (SELECT COUNT(*) FROM holds WHERE recording = ?) "
                          "WHERE id = ?", (rec, rec))

    def _ingested(self, device: str, seq: int, utc_us: int, seqs: list[int]) -> None:
        self.conn.execute(
            "INSERT INTO devices (id, last_ingest_seq, last_ingest_us, pending_until_us, next_check_us) "
            "VALUES (?, ?, ?, ?, 0) ON CONFLICT(id) DO UPDATE SET last_ingest_seq = excluded.last_ingest_seq, "
            "last_ingest_us = excluded.last_ingest_us, pending_until_us = excluded.pending_until_us, next_check_us = 0",
            (device, seq, utc_us, self.now_us() + PENDING_S * 1_000_000))
        if seqs:  # receipts of segments stored before may have been added: read them again when shown
            self.conn.execute("DELETE FROM receipts_loaded WHERE recording IN (SELECT DISTINCT recording FROM "
                              "segments WHERE device = ? AND seq BETWEEN ? AND ?)", (device, min(seqs), max(seqs)))

    # ------------------------------------------------------------------ segments
    def load_segments(self, device: str, seqs: Iterable[int], footage: set[int] | None = None, *,
                      markers: bool = True, md5: dict[str, str | None] | None = None) -> None:
        """Read the manifests of ``device``'s segments ``seqs`` and index them; ``md5``:
        the listing's MD5 of each (a rebuild), so the device's packs can serve them."""
        keys = [f"devices/{device}/segments/{s:08d}.manifest" for s in sorted(set(seqs))]
        backend = self.store.backend
        members: dict[str, bytes] = {}
        if md5 is not None and packs.lists_md5(backend):
            pack_keys = backend.keys_after(packs.manifest_prefix(device), "")
            members, trouble = packs.read_packs(backend, self.pool, pack_keys, "manifests")
            for text in trouble:
                self.problem(f"pack:{text.split(':', 1)[0]}", text)
        touched: set[str] = set()
        rows = []
        unpacked: dict[int, bytes] = {}
        for key, record, packed in packs.read_through(backend, self.pool, [(k, (md5 or {}).get(k)) for k in keys],
                                                      members):
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
            rows.append((device, seq, m.recording_id, m.index, m.start_utc_us, m.end_utc_us, m.start_mono_us,
                         m.end_mono_us, m.first_pts_us, m.frames, m.size, m.sha256, int(m.complete), int(m.final),
                         record, signed.digest(record), 1 if footage is None else int(seq in footage)))
            touched.add(m.recording_id)
            if not packed:
                unpacked[seq] = record
        if unpacked and packs.lists_md5(backend):
            self._pack_manifests(device, unpacked)
        self.conn.executemany("INSERT OR REPLACE INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                              "?, ?)", rows)
        self.conn.executemany("DELETE FROM problems WHERE what = ?",
                              [(f"manifest:devices/{device}/segments/{r[1]:08d}.manifest",) for r in rows])
        self.report.segments += len(rows)
        self.conn.execute("INSERT OR IGNORE INTO devices (id) VALUES (?)", (device,))
        for rid in sorted(touched):
            self.recompute(rid, markers=markers)

    def _pack_manifests(self, device: str, records: dict[int, bytes]) -> None:
        """Pack manifests read one by one (a docking's, or a device's in a rebuild), so the
        next rebuild reads them in bulk."""
        seqs = sorted(records)
        for i in range(0, len(seqs), packs.MAX_MEMBERS):
            part = seqs[i:i + packs.MAX_MEMBERS]
            trouble = packs.write(self.store.backend, packs.manifest_pack_key(device, part[0], part[-1]),
                                  packs.encode("manifests", {f"{s:08d}.manifest": records[s] for s in part}))
            if trouble:
                self.report.problems.append(trouble)

    def recompute(self, rid: str, *, markers: bool = True) -> None:
        """The recording's row from its segments (officer, times, kind) and the office's state."""
        rows = self.conn.execute("SELECT seq, manifest, start_utc_us, end_utc_us, start_mono_us, end_mono_us, "
                                 "frames, complete, final, device FROM segments WHERE recording = ? "
                                 "ORDER BY idx, seq", (rid,)).fetchall()
        if not rows:
            return
        first, last = read_checked_manifest(rows[0]["manifest"]), rows[-1]
        end = last["end_utc_us"] if last["end_utc_us"] is not None else last["start_utc_us"]
        seqs = [r["seq"] for r in rows]
        self.conn.execute(
            "INSERT INTO recordings (id, device, officer, start_utc_us, end_utc_us, duration_us, segments, seqs, "
            "frames, announced, truncated, final, first_seq, last_seq, start_mono_us, end_mono_us, held, deleted) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT COUNT(*) FROM holds WHERE recording = ?1), "
            "EXISTS (SELECT 1 FROM deletions WHERE recording = ?1)) "
            "ON CONFLICT(id) DO UPDATE SET device = excluded.device, officer = excluded.officer, "
            "start_utc_us = excluded.start_utc_us, end_utc_us = excluded.end_utc_us, "
            "duration_us = excluded.duration_us, segments = excluded.segments, seqs = excluded.seqs, "
            "frames = excluded.frames, announced = excluded.announced, truncated = excluded.truncated, "
            "final = excluded.final, first_seq = excluded.first_seq, last_seq = excluded.last_seq, "
            "start_mono_us = excluded.start_mono_us, end_mono_us = excluded.end_mono_us, held = excluded.held, "
            "deleted = excluded.deleted",
            (rid, rows[0]["device"], first.officer_id, first.start_utc_us, end, end - first.start_utc_us,
             len(rows), json.dumps(seqs), sum(r["frames"] or 0 for r in rows), int(first.announced),
             int(any(not r["complete"] for r in rows)), int(bool(last["final"])), min(seqs), max(seqs),
             min(r["start_mono_us"] for r in rows),
             max(r["end_mono_us"] if r["end_mono_us"] is not None else r["start_mono_us"] for r in rows)))
        if markers:
            self._markers("id = ?", rid)

    def _markers(self, where: str, *args: Any) -> None:
        """Markers of recordings: the device's in the recording's window, and any naming it."""
        self.conn.execute(
            "UPDATE recordings SET markers = (SELECT COUNT(*) FROM events e WHERE e.device = recordings.device "
            "AND e.kind = 'marker' AND e.mono_us BETWEEN recordings.start_mono_us AND recordings.end_mono_us) + "
            "(SELECT COUNT(*) FROM events e WHERE e.recording = recordings.id AND e.kind = 'marker' AND NOT "
            f"(e.mono_us BETWEEN recordings.start_mono_us AND recordings.end_mono_us)) WHERE {where}", args)

    # ------------------------------------------------------------------ event log, receipts
    def follow_device(self, device: str, *, everything: bool = False) -> int:
        """New pieces of ``device``'s event log (all of them: ``everything``); how many."""
        row = self.conn.execute("SELECT events_after FROM devices WHERE id = ?", (device,)).fetchone()
        events_after = "" if everything or row is None else row["events_after"] or ""
        new_events = self._events(device, events_after)
        if new_events:
            lo, hi = min(m for m, _ in new_events), max(m for m, _ in new_events)
            rids = {r for _, r in new_events if r}
            self._markers("device = ? AND (id IN (SELECT value FROM json_each(?)) OR (start_mono_us <= ? AND "
                          "end_mono_us >= ?))", device, json.dumps(sorted(rids)), hi, lo)
        return len(new_events)

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
                self.conn.execute("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (
                    device, body.get("seq"), body.get("utc_us"), mono, str(body.get("kind")), rid,
                    json.dumps(jsonable(data_), ensure_ascii=False), str(body.get("state", ""))))
                added.append((mono, rid))
                self.report.events += 1
            if torn:
                self.problem(f"events:{key}:torn", f"{key}: {torn} bytes after the last record")
        return added

    def load_receipts(self, rid: str) -> None:
        """The custody receipts of one recording's segments, read from the store when first
        asked for (a page, an export): a listing from its first segment on, then one read
        per receipt. Kept once every segment has one (more may come with a later docking,
        whose ingest record makes them read again)."""
        span = self.conn.execute("SELECT device, MIN(seq), MAX(seq), COUNT(*) FROM segments WHERE recording = ?",
                                 (rid,)).fetchone()
        if span is None or span[0] is None:
            return
        device, lo, hi, count = span
        prefix = f"devices/{device}/receipts/segment-"
        keys = self.store.backend.keys_after(prefix, f"{prefix}{lo - 1:08d}-~", until=f"{prefix}{hi:08d}-~")
        for key, record in self._read_many(keys):
            if record is None:
                continue
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
                device, key.rsplit("/", 1)[1], "segment", body["seq"], str(body.get("dock_id")),
                str(body.get("dock_key")), stored if isinstance(stored, int) else None, str(body.get("location")), ok))
            self.report.receipts += 1
        covered = self.conn.execute("SELECT COUNT(DISTINCT r.seq) FROM receipts r JOIN segments s ON s.device = "
                                    "r.device AND s.seq = r.seq WHERE s.recording = ?", (rid,)).fetchone()[0]
        if covered == count:
            self.conn.execute("INSERT OR IGNORE INTO receipts_loaded VALUES (?)", (rid,))

    def follow_pending(self) -> None:
        """Devices that docked recently: their event log is stored after the ingest record.
        Each is looked at every few seconds, and no longer once a new piece arrived."""
        now = self.now_us()
        for (device,) in self.conn.execute("SELECT id FROM devices WHERE pending_until_us > ? AND next_check_us <= ?",
                                           (now, now)).fetchall():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                found = self.follow_device(device)
                self.conn.execute("UPDATE devices SET next_check_us = ?, pending_until_us = CASE WHEN ? THEN 0 "
                                  "ELSE pending_until_us END WHERE id = ?", (now + CHECK_EVERY_US, found > 0, device))
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
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
        listed = self.store.backend.listing(f"devices/{device}/segments/", "")
        keys = [k for k, _ in listed]
        manifests = [int(k.rsplit("/", 1)[1][:8]) for k in keys if k.endswith(".manifest")
                     and k.rsplit("/", 1)[1][:8].isdigit()]
        footage = {int(k.rsplit("/", 1)[1][:8]) for k in keys if k.endswith(".ts.age")
                   and k.rsplit("/", 1)[1][:8].isdigit()}
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for table in ("segments", "events"):
                self.conn.execute(f"DELETE FROM {table} WHERE device = ?", (device,))
            self.conn.execute("INSERT OR IGNORE INTO devices (id) VALUES (?)", (device,))
            self.load_segments(device, manifests, footage, markers=False, md5=dict(listed))
            self.follow_device(device, everything=True)
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
