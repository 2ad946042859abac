"""``bodycam-evidence verify``: is every stored recording whole and genuine, is the audit
trail unbroken, and does the index agree with the store?

Per device, in seq order, every manifest must verify with the device key registered in
the store and chain on the one before (seq + 1, ``prev`` = its SHA-256), from seq 1;
every segment's footage must be there with the manifest's SHA-256 — unless the audit
trail records its deletion (then it must be gone). A gap in the chain is reported on
the recording after it (and, if the dock quarantined the missing segment, why).
Everything is read from the store; the index is checked against what was read (a
segment or manifest the index lacks or has otherwise is a problem, and ``reindex``
mends it).

Three scopes, one check per segment (:func:`check_segment`):

- one recording (its page, ``export``, ``verify --recording``): its manifests, the one
  before it (the chain link), its footage — O(recording); the result is kept in the
  index under the SHA-256 of its manifests, so it is not redone until they change;
- ``--since DATE``: the recordings of every docking since then (the daily check);
- everything: the audit trail (as ``audit --verify``), then every device, in parallel
  reads (a thread pool), with a progress bar, resumable: results of an interrupted run
  are kept and a rerun goes on from there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from common import signed
from common.manifest import SegmentManifest, read_manifest, segment_file_name
from evidence import audit
from evidence.index import Index
from evidence.index import transaction as _tx
from evidence.recordings import Recording
from evidence.state import State
from evidence.store import EvidenceStore, unknown_keys

Progress = Callable[[str, int, int], None]


@dataclass
class Result:
    id: str
    deleted: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ok": self.ok, "deleted": self.deleted, "problems": self.problems}


def cache_key(rec: Recording, state: State) -> bytes:
    """What a verification result depends on: the manifests and whether it was deleted."""
    h = hashlib.sha256(b"deleted" if rec.id in state.deleted else b"kept")
    for s in rec.segments:
        h.update(signed.digest(s.record))
    return h.digest()


def _read(store: EvidenceStore, key: str) -> bytes | None:
    try:
        return store.backend.read(key)
    except FileNotFoundError:
        return None


def check_manifest(store: EvidenceStore, device: str, seq: int, record: bytes | None, prev: tuple[int, bytes | None],
                   out: list[str], keys: dict[str, Any]) -> SegmentManifest | None:
    """Signature and chain of one manifest as the store holds it; problems go to ``out``."""
    if record is None:
        out.append(f"segment {seq}: its manifest is no longer in the store")
        return None
    try:
        m = read_manifest(record, None)
    except signed.SignatureError as exc:
        out.append(f"segment {seq}: manifest cannot be read: {exc}")
        return None
    if m.device_key not in keys:
        keys[m.device_key] = store.public_key(m.device_key)
    known = keys[m.device_key]
    if known is None or known[0] != "device" or known[1] != device:
        out.append(f"segment {seq}: its device key {m.device_key[:16]}… is not registered in the store for {device}")
    else:
        try:
            read_manifest(record, known[2])
        except signed.SignatureError as exc:
            out.append(f"segment {seq}: manifest does not verify: {exc}")
    prev_seq, prev_digest = prev
    if seq != prev_seq + 1:
        missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}–{seq - 1}"
        why = [f"{n} quarantined at the dock" for n in range(prev_seq + 1, min(seq, prev_seq + 50))
               if store.is_quarantined(device, segment_file_name(n))]
        out.append(f"segment {seq}: segments {missing} of {device} are missing before it"
                   + (f" ({', '.join(why)})" if why else ""))
    elif m.prev != prev_digest:
        out.append(f"segment {seq}: does not chain on from segment {prev_seq} "
                   "(prev hash differs: a manifest was replaced)")
    return m


def check_footage(store: EvidenceStore, device: str, seq: int, sha256: bytes, deleted: Any, out: list[str]) -> None:
    try:
        data = store.footage(device, seq)
    except FileNotFoundError:
        data = None
    if deleted is not None:
        if data is not None:
            out.append(f"segment {seq}: deleted per audit record {deleted.seq}, but its footage is still in the "
                       "store (run the deletion again to finish it)")
    elif data is None:
        out.append(f"segment {seq}: footage missing, and the audit trail records no deletion")
    elif hashlib.sha256(data).digest() != sha256:
        out.append(f"segment {seq}: footage does not match the SHA-256 in its manifest (altered)")


def check_recording(rec: Recording, device_last_seq: int, out: list[str]) -> None:
    indexes = [s.manifest.index for s in rec.segments]
    if indexes != list(range(len(indexes))):
        out.append(f"segments of the recording are missing (indexes {indexes})")
    if not rec.segments[-1].manifest.final and rec.segments[-1].seq < device_last_seq:
        out.append("the recording has no final segment, though later segments of the device are stored")


def _previous(index: Index, device: str, seq: int) -> tuple[int, bytes | None]:
    """The stored segment before ``seq`` (from the index) and its manifest's SHA-256 (from the store)."""
    row = index.conn().execute("SELECT MAX(seq) FROM segments WHERE device = ? AND seq < ?", (device, seq)).fetchone()
    prev_seq = row[0] or 0
    if not prev_seq:
        return 0, None
    record = _read(index.store, f"devices/{device}/segments/{prev_seq:08d}.manifest")
    return prev_seq, signed.digest(record) if record is not None else None


def verify_recording(index: Index, rec: Recording, state: State, *, use_cache: bool = True,
                     pool: ThreadPoolExecutor | None = None) -> dict[str, Any]:
    """One recording, from the store: O(its segments). Cached in the index by its manifests."""
    key = cache_key(rec, state)
    if use_cache:
        cached = index.verification(rec.id, key)
        if cached is not None:
            return _revoked({**cached, "deleted": rec.id in state.deleted, "cached": True}, index, rec)
    store, device = index.store, rec.device_id
    out = Result(rec.id, rec.id in state.deleted)
    keys: dict[str, Any] = {}
    mapper = pool.map if pool is not None else map
    records = list(mapper(lambda s: _read(store, f"devices/{device}/segments/{s.seq:08d}.manifest"), rec.segments))
    prev = _previous(index, device, rec.segments[0].seq)
    for s, record in zip(rec.segments, records):
        m = check_manifest(store, device, s.seq, record, prev, out.problems, keys)
        if record is not None and signed.digest(record) != signed.digest(s.record):
            out.problems.append(f"segment {s.seq}: the index holds another manifest than the store "
                                "(run: bodycam-evidence reindex)")
        prev = (s.seq, signed.digest(record) if record is not None else None)
        if m is None:
            continue
    deleted = state.deleted.get(rec.id)
    footage: list[list[str]] = list(mapper(
        lambda s: _footage_problems(store, device, s.seq, s.manifest.sha256, deleted), rec.segments))
    for problems in footage:
        out.problems += problems
    last = index.conn().execute("SELECT MAX(seq) FROM segments WHERE device = ?", (device,)).fetchone()[0] or 0
    check_recording(rec, last, out.problems)
    result = out.to_json()
    index.save_verification(rec.id, key, result)
    return _revoked({**result, "cached": False}, index, rec)


def _revoked(result: dict[str, Any], index: Index, rec: Recording) -> dict[str, Any]:
    """A recording that began after its camera was revoked (dock/revocation.py): named, never
    mixed in silently (the revocation may come after the cached check, so it is looked at here)."""
    result = _stored_by_revoked_dock(result, index, rec)
    row = index.conn().execute("SELECT utc_us, reason, by, audit_seq FROM revocations WHERE device = ?",
                               (rec.device_id,)).fetchone()
    if row is None or rec.start_utc_us < row[0]:
        return result
    when = dt.datetime.fromtimestamp(row[0] / 1e6, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    problem = (f"recorded after camera {rec.device_id} was revoked ({when}, by {row[2]}: {row[1]}; audit record "
               f"{row[3]}): examine before relying on it")
    return {**result, "ok": False, "problems": [*result["problems"], problem]}


def _stored_by_revoked_dock(result: dict[str, Any], index: Index, rec: Recording) -> dict[str, Any]:
    """A recording a dock stored after the office revoked that dock's key
    (evidence/dock_revocations.py): named, whatever its signatures say. Costs nothing
    while no dock is revoked, and then the ingests that dock signed after its revocation."""
    conn = index.conn()
    seqs = {s.seq for s in rec.segments}
    for key, dock_id, utc_us, reason, by, audit_seq in conn.execute(
            "SELECT dock_key, dock_id, utc_us, reason, by, audit_seq FROM dock_revocations").fetchall():
        for (details,) in conn.execute("SELECT details FROM audit WHERE signer = ? AND action = 'ingest' AND seq > ? "
                                       "AND device = ?", (key, audit_seq, rec.device_id)):
            named = json.loads(details or "{}").get("segments", [])
            if seqs.intersection(s for s in named if isinstance(s, int)):
                when = dt.datetime.fromtimestamp(utc_us / 1e6, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
                problem = (f"stored by dock {dock_id or key[:16]} after the office revoked its key ({when}, by {by}: "
                           f"{reason}; audit record {audit_seq}): examine before relying on it")
                return {**result, "ok": False, "problems": [*result["problems"], problem]}
    return result


def _footage_problems(store: EvidenceStore, device: str, seq: int, sha256: bytes, deleted: Any) -> list[str]:
    out: list[str] = []
    check_footage(store, device, seq, sha256, deleted, out)
    return out


def verify_since(index: Index, since_us: int, *, progress: Progress | None = None) -> dict[str, Any]:
    """The recordings of every docking since ``since_us`` (and the index's own check of the trail)."""
    index.refresh()
    pairs: set[tuple[str, int]] = set()
    for row in index.conn().execute("SELECT device, details FROM audit WHERE action = 'ingest' AND utc_us >= ?",
                                    (since_us,)):
        for seq in json.loads(row["details"]).get("segments", []):
            pairs.add((row["device"], seq))
    rids = sorted({r[0] for device, seq in pairs for r in index.conn().execute(
        "SELECT recording FROM segments WHERE device = ? AND seq = ?", (device, seq))})
    return _verify_many(index, rids, progress)


def _verify_many(index: Index, rids: list[str], progress: Progress | None) -> dict[str, Any]:
    results = []
    with ThreadPoolExecutor(8) as pool:
        for i, rid in enumerate(rids, start=1):
            rec = index.recording(rid)
            if rec is None:
                continue
            results.append(verify_recording(index, rec, index.state([rid]), use_cache=False, pool=pool))
            if progress:
                progress("recordings", i, len(rids))
    general = index.problems()
    ok = not general and all(r["ok"] for r in results)
    return {"ok": ok, "recordings": [{k: r[k] for k in ("id", "ok", "deleted", "problems")} for r in results],
            "problems": general}


def verify_all(index: Index, *, progress: Progress | None = None, restart: bool = False,
               workers: int = 16) -> dict[str, Any]:
    """Every device's chain and footage, read from the store, and the index against it.

    Resumable: each device's results are kept in the index under this run; a run that
    was interrupted is continued by the next (``restart`` starts over). The index file is
    read through first: a damaged one raises ``sqlite3.DatabaseError`` (the CLI then sets
    it aside, rebuilds it from the store and verifies again)."""
    index.refresh()
    store = index.store
    conn = index.conn()
    if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
        raise sqlite3.DatabaseError("SQLite's quick_check finds the index file damaged")
    meta = index.meta()
    run = meta.get("verify_run", "")
    if restart or not run or meta.get("verify_done") == run:
        run = str(index.now_us())
        with _tx(conn):
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('verify_run', ?)", (run,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('verify_devices', '[]')")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('verify_general', '[]')")
    done_devices = set(json.loads(index.meta().get("verify_devices", "[]")))
    general: list[str] = json.loads(index.meta().get("verify_general", "[]"))
    devices = store.devices()
    with ThreadPoolExecutor(workers) as pool:
        if "(audit trail)" not in done_devices:
            general += _verify_trail(index, pool, progress)
            done_devices.add("(audit trail)")
            with _tx(conn):
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('verify_devices', ?)",
                             (json.dumps(sorted(done_devices)),))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('verify_general', ?)", (json.dumps(general),))
        for n, device in enumerate(devices, start=1):
            if device not in done_devices:
                found = _verify_device(index, device, pool, run)
                general += found
                done_devices.add(device)
                with _tx(conn):
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('verify_devices', ?)",
                                 (json.dumps(sorted(done_devices)),))
                    conn.execute("INSERT OR REPLACE INTO meta VALUES ('verify_general', ?)", (json.dumps(general),))
            if progress:
                progress("devices", n, len(devices))
    general += [f"removed a copy an interrupted write left in the store: {p}" for p in store.remove_orphans()]
    general += [f"{k}: not an object of the store's layout (docs/FORMAT.md §10); look at it, then remove it"
                for k in unknown_keys(store.backend.keys(""))[:100]]
    indexed = {r[0] for r in conn.execute("SELECT DISTINCT device FROM segments")}
    general += [f"{d}: in the index but not in the store (run: bodycam-evidence reindex)"
                for d in sorted(indexed - set(devices))]
    with _tx(conn):
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('verify_done', ?)", (run,))
    results = [{"id": r["recording"], "ok": bool(r["ok"]), "deleted": bool(r["deleted"]),
                "problems": json.loads(r["problems"])}
               for r in conn.execute("SELECT v.*, COALESCE(rec.deleted, 0) AS deleted FROM verifications v "
                                     "LEFT JOIN recordings rec ON rec.id = v.recording WHERE v.run = ? "
                                     "ORDER BY rec.start_utc_us, v.recording", (run,))]
    general += index.problems()
    ok = not general and all(r["ok"] for r in results)
    return {"ok": ok, "recordings": results, "problems": general, "run": run}


def _verify_trail(index: Index, pool: ThreadPoolExecutor, progress: Progress | None) -> list[str]:
    """The whole audit trail as ``audit --verify`` checks it (read in parallel), and each
    record against the one the index applied."""
    store, conn = index.store, index.conn()
    end = audit.last_seq(store)
    report = audit.AuditReport()
    disagree: list[int] = []

    def records() -> Any:
        for start in range(1, end + 1, 1024):
            seqs = list(range(start, min(end, start + 1023) + 1))
            got = pool.map(lambda s: _read(store, audit._key(s)), seqs)
            indexed = {r[0]: bytes(r[1]) for r in conn.execute(
                "SELECT seq, digest FROM audit WHERE seq BETWEEN ? AND ?", (seqs[0], seqs[-1]))}
            for seq, record in zip(seqs, got):
                if record is not None and indexed.get(seq) != signed.digest(record):
                    disagree.append(seq)
                yield seq, record
            if progress:
                progress("trail", seqs[-1], end)
    audit.check_records(store, records(), report)
    found = [f"audit trail: {p}" for p in report.problems]
    if disagree:
        found.append(f"audit trail: the index holds other records than the store for {len(disagree)} record(s), "
                     f"first {disagree[0]} (run: bodycam-evidence reindex)")
    return found


def _event_pieces(store: EvidenceStore, device: str) -> list[str]:
    """The stored pieces of the device's event log must follow each other: an overlap
    would count events twice, a gap lose them."""
    out, last = [], 0
    ranges = []
    for key in store.backend.keys_after(f"devices/{device}/events/", ""):
        name = key.rsplit("/", 1)[1].removesuffix(".cbors")
        first, _, end = name.partition("-")
        if first.isdigit() and end.isdigit():
            ranges.append((int(first), int(end), name))
    for first, end, name in sorted(ranges):
        if first <= last:
            out.append(f"{device}: event-log piece {name} overlaps the one before (events {first}–{min(end, last)} "
                       "twice)")
        elif last and first != last + 1:
            out.append(f"{device}: events {last + 1}–{first - 1} are missing before event-log piece {name}")
        last = max(last, end)
    return out


def _verify_device(index: Index, device: str, pool: ThreadPoolExecutor, run: str) -> list[str]:
    store, conn = index.store, index.conn()
    general: list[str] = []
    listed = store.backend.keys_after(f"devices/{device}/segments/", "")
    seqs = sorted(int(k.rsplit("/", 1)[1][:8]) for k in listed if k.endswith(".manifest"))
    indexed = {r["seq"]: (r["recording"], bytes(r["manifest_digest"])) for r in conn.execute(
        "SELECT seq, recording, manifest_digest FROM segments WHERE device = ?", (device,))}
    keys: dict[str, Any] = {}
    per_rec: dict[str, Result] = {}
    recs: dict[str, list[tuple[int, SegmentManifest]]] = {}
    prev: tuple[int, bytes | None] = (0, None)
    records = pool.map(lambda s: _read(store, f"devices/{device}/segments/{s:08d}.manifest"), seqs)
    footage_jobs = []
    for seq, record in zip(seqs, records):
        problems: list[str] = []
        m = check_manifest(store, device, seq, record, prev, problems, keys)
        prev = (seq, signed.digest(record) if record is not None else None)
        if m is None:
            general += [f"{device}: {p}" for p in problems]
            continue
        if seq not in indexed:
            general.append(f"{device}: segment {seq} is in the store but not in the index (run: bodycam-evidence "
                           "reindex)")
        elif indexed[seq][1] != signed.digest(record or b""):
            general.append(f"{device}: the index holds another manifest for segment {seq} than the store "
                           "(run: bodycam-evidence reindex)")
        res = per_rec.setdefault(m.recording_id, Result(m.recording_id))
        res.problems += problems
        recs.setdefault(m.recording_id, []).append((seq, m))
        footage_jobs.append((m.recording_id, seq, m.sha256))
    general += [f"{device}: segment {s} is in the index but not in the store" for s in sorted(set(indexed) - set(seqs))]
    general += _event_pieces(store, device)
    state = index.state(list(per_rec))
    found = pool.map(lambda job: (job[0], _footage_problems(store, device, job[1], job[2],
                                                            state.deleted.get(job[0]))), footage_jobs)
    for rid, problems in found:
        per_rec[rid].problems += problems
    last = seqs[-1] if seqs else 0
    with _tx(conn):
        for rid, res in per_rec.items():
            rec = index.recording(rid)
            if rec is not None:
                rec.segments = [s for s in rec.segments if s.seq in {q for q, _ in recs[rid]}] or rec.segments
                check_recording(rec, last, res.problems)
                key = cache_key(rec, state)
            else:
                res.problems.append("the recording is in the store but not in the index (run: bodycam-evidence "
                                    "reindex)")
                key = b""
            conn.execute("INSERT OR REPLACE INTO verifications VALUES (?, ?, ?, ?, ?, ?)",
                         (rid, key, index.now_us(), int(res.ok), json.dumps(res.problems), run))
    return general
