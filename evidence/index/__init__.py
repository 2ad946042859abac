"""The evidence office's index: the store, cached in SQLite, so every page and command costs
what it shows, not what the store holds.

The store stays the only source of truth: the index is a cache that any office machine
builds from the store alone (``bodycam-evidence reindex``) and then follows
incrementally through the audit trail (:mod:`evidence.index.follow`). Several docks,
consoles and CLIs may share one store; each index converges on what the store holds.
An index that is missing, from another version, damaged, or that disagrees with the
store's trail is rebuilt, never trusted over the store. Queries: :mod:`evidence.index.query`.

It lives in a directory of its own (``--index DIR``, ``$BODYCAM_INDEX``; by default
beside a filesystem store as ``STORE.index``, or in the user's cache directory for S3),
mode 0700: it holds who recorded when, and the poster frames (``posters/``).

>>> import tempfile
>>> from evidence.store import FsEvidenceStore
>>> root = Path(tempfile.mkdtemp())
>>> index = Index(FsEvidenceStore(root / "ev"), root / "ev.index")
>>> index.refresh().records, index.page(Filters()).total
(0, 0)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

from evidence import audit
from evidence.audit import Entry
from evidence.events import RecordingEvents
from evidence.index import db, query
from evidence.index.db import IndexCorrupt
from evidence.index.follow import Follower, IndexStale, Progress, Report, case_key
from evidence.index.query import BadQuery, Filters, Page
from evidence.recordings import Recording
from evidence.state import State
from evidence.store import EvidenceStore, FsEvidenceStore

__all__ = ["BadQuery", "Filters", "Index", "IndexBusy", "IndexCorrupt", "IndexStale", "Page", "Report",
           "case_key", "default_location"]


class IndexBusy(RuntimeError):
    """Another process is rebuilding this index right now."""


def default_location(store: EvidenceStore) -> Path:
    """``$BODYCAM_INDEX``; else beside a filesystem store; else in the user's cache."""
    if os.environ.get("BODYCAM_INDEX"):
        return Path(os.environ["BODYCAM_INDEX"])
    if isinstance(store, FsEvidenceStore):
        return store.root.with_name(store.root.name + ".index")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in store.location.removeprefix("s3://"))
    return cache / "bodycam-evidence" / f"{name[:60]}-{hashlib.sha256(store.location.encode()).hexdigest()[:12]}"


class Index:
    """One store's index in ``directory``.

    ``refresh()`` follows the store; ``rebuild()`` builds it anew (resumable); the rest
    are queries. Thread-safe: each thread reads through its own connection."""

    def __init__(self, store: EvidenceStore, directory: Path | None = None, *,
                 now_us: Callable[[], int] = lambda: time.time_ns() // 1000, workers: int = 16) -> None:
        self.store = store
        self.dir = Path(directory) if directory is not None else default_location(store)
        self.gens = db.Generations(self.dir)
        self.now_us = now_us
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.rebuilding: dict[str, Any] | None = None    # {phase, done, total} while a rebuild runs
        self.last_refresh_us: int | None = None

    # ------------------------------------------------------------------ plumbing
    @property
    def pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="index-read")
            return self._pool

    def close(self) -> None:
        self.gens.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def conn(self) -> sqlite3.Connection:
        conn = self.gens.conn()
        if conn is None:
            raise IndexCorrupt(f"there is no index in {self.dir} yet; run: bodycam-evidence --store "
                               f"{self.store.location} reindex")
        return conn

    def usable(self) -> bool:
        """A complete index of this store and schema is in place. (A damaged page deeper in
        the file makes SQLite raise when it is read: :meth:`damaged` then sets the index
        aside; ``verify`` reads the whole file through.)"""
        try:
            conn = self.gens.conn()
            if conn is None:
                return False
            db.check(conn, self.store.location)
            return True
        except (IndexCorrupt, sqlite3.DatabaseError):
            return False

    def damaged(self, exc: BaseException) -> str:
        """SQLite found the index file damaged while reading it: stop using it (the next
        refresh rebuilds it from the store) and say so."""
        self.gens.close()
        (self.dir / "current").unlink(missing_ok=True)
        return (f"the index in {self.dir} is damaged ({exc}); it is rebuilt from the store "
                f"(or now: bodycam-evidence --store {self.store.location} reindex)")

    def meta(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.conn().execute("SELECT k, v FROM meta")}

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.gens.prepare()
        fd = os.open(self.dir / "rebuild.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexBusy(f"another process is rebuilding the index in {self.dir}; wait for it to "
                                "finish (its progress: bodycam-evidence … reindex --status)") from None
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ following the store
    def ensure(self, progress: Progress | None = None) -> Report | None:
        """Rebuild unless a usable index is in place (missing, old, damaged, another store)."""
        if self.usable():
            return None
        return self.rebuild(progress)

    def refresh(self, progress: Progress | None = None, *, rebuild: bool = True, pending: bool = True) -> Report:
        """Apply what the store gained since the last refresh, rebuilding first if the index
        is missing, unusable or stale. ``rebuild=False`` (a page being served): raise
        :class:`IndexCorrupt` or :class:`IndexStale` instead, and leave the rebuild to the
        background. ``pending=False``: leave recently docked devices' event logs to the next."""
        if not rebuild and not self.usable():
            raise IndexCorrupt(f"the index in {self.dir} is not ready (being built or damaged)")
        rebuilt = self.ensure(progress) if rebuild else None
        follower = Follower(self.store, self.conn(), self.pool, self.now_us)
        try:
            follower.check_head()
        except IndexStale as exc:
            if not rebuild:
                raise
            report = self.rebuild(progress, finding=str(exc))
            report.problems.insert(0, str(exc))
            return report
        follower.follow_trail(load=True, progress=progress)
        if pending:
            follower.follow_pending()
        self.last_refresh_us = self.now_us()
        if rebuilt is not None:
            follower.report.problems[:0] = rebuilt.problems
        return follower.report

    def rebuild(self, progress: Progress | None = None, *, finding: str | None = None) -> Report:
        """Build a new generation from the store alone, then switch to it. Resumes a
        rebuild that was interrupted (killed) where it stopped."""
        def report_progress(phase: str, done: int, total: int) -> None:
            self.rebuilding = {"phase": phase, "done": done, "total": total}
            if progress:
                progress(phase, done, total)
        with self._exclusive():
            n, conn = self._resumable(self.gens.current_number())
            try:
                follower = Follower(self.store, conn, self.pool, self.now_us)
                report_progress("trail", 0, 0)
                target = int(db.meta(conn, "rebuild_trail_to") or 0)
                if not target:
                    target = audit.last_seq(self.store)
                    db.set_meta(conn, "rebuild_trail_to", target)
                follower.follow_trail(load=False, progress=report_progress, upto=target)
                devices = self.store.devices()
                done = {r[0] for r in conn.execute("SELECT device FROM rebuild_devices")}
                for i, device in enumerate(devices, start=1):
                    if device not in done:
                        follower.rebuild_device(device)
                    report_progress("devices", i, len(devices))
                follower.follow_trail(load=True)       # what was appended meanwhile
                follower.follow_pending()
                if finding:
                    follower.problem("index:stale", finding)
                db.set_meta(conn, "complete", 1)
                db.set_meta(conn, "built_utc_us", self.now_us())
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
            self.gens.switch(n)
            self.rebuilding = None
            self.last_refresh_us = self.now_us()
            return follower.report

    def _resumable(self, current: int) -> tuple[int, sqlite3.Connection]:
        """An unfinished newer generation of this store and schema, else a new one."""
        for n in reversed([g for g in self.gens.numbers() if g > current]):
            try:
                conn = db.connect(self.gens.path(n))
                if (db.meta(conn, "schema") == db.SCHEMA_ID and db.meta(conn, "store") == self.store.location
                        and db.meta(conn, "complete") == "0"):
                    try:
                        Follower(self.store, conn, self.pool, self.now_us).check_head()
                        return n, conn
                    except IndexStale:
                        pass
                conn.close()
            except sqlite3.DatabaseError:
                pass
            self.gens.discard(n)
        n = max([current, *self.gens.numbers()]) + 1
        self.gens.discard(n)
        return n, db.create(self.gens.path(n), self.store.location)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": str(self.dir), "store": self.store.location, "usable": self.usable(),
                               "rebuilding": self.rebuilding}
        if out["usable"]:
            m = self.meta()
            conn = self.conn()
            out.update(audit_seq=int(m["audit_seq"]), recordings=conn.execute(
                "SELECT COUNT(*) FROM recordings").fetchone()[0], segments=conn.execute(
                "SELECT COUNT(*) FROM segments").fetchone()[0], problems=conn.execute(
                "SELECT COUNT(*) FROM problems").fetchone()[0], built_utc_us=int(m.get("built_utc_us") or 0))
        building = [g for g in self.gens.numbers() if g > self.gens.current_number()]
        if building:
            try:
                conn = db.connect(self.gens.path(building[-1]))
                total = len(self.store.devices())
                done = conn.execute("SELECT COUNT(*) FROM rebuild_devices").fetchone()[0]
                out["unfinished_rebuild"] = {"devices_done": done, "devices": total,
                                             "trail": int(db.meta(conn, "audit_seq") or 0)}
                conn.close()
            except sqlite3.DatabaseError:
                pass
        return out

    # ------------------------------------------------------------------ questions
    def page(self, f: Filters, *, sort: str = "start_desc", after: str | None = None, before: str | None = None,
             limit: int = query.PAGE) -> Page:
        m = self.meta()
        return query.page(self.conn(), f, sort=sort, after=after, before=before, limit=limit,
                          retention_days=int(m["retention_days"]), now_us=self.now_us())

    def recording(self, rid: str) -> Recording | None:
        return query.recording(self.conn(), rid)

    def row(self, rid: str) -> dict[str, Any] | None:
        r = self.conn().execute(f"SELECT {query.COLUMNS} FROM recordings WHERE id = ?", (rid,)).fetchone()
        return dict(r) if r is not None else None

    def state(self, rids: list[str]) -> State:
        return query.state(self.conn(), rids, self.meta())

    def summaries(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        s = self.state([r["id"] for r in rows])
        return [query.summary(r, s) for r in rows]

    def trail(self, rid: str, limit: int = 1000) -> list[Entry]:
        """The audit entries of one recording, oldest first (the newest ``limit``)."""
        rows = self.conn().execute("SELECT * FROM audit WHERE recording = ? ORDER BY seq DESC LIMIT ?",
                                   (rid, limit)).fetchall()
        return [query.entry(r) for r in reversed(rows)]

    def entries(self, since_seq: int = 0, limit: int = 1000) -> list[Entry]:
        rows = self.conn().execute("SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
                                   (since_seq, limit)).fetchall()
        return [query.entry(r) for r in rows]

    def waiting(self, limit: int = 200) -> dict[str, list[dict[str, Any]]]:
        """What waits for a supervisor (:func:`query.waiting`)."""
        return query.waiting(self.conn(), limit)

    def waiting_count(self) -> int:
        return query.waiting_count(self.conn())

    def audit_page(self, **kw: Any) -> Page:
        return query.audit_page(self.conn(), **kw)

    def signers(self) -> dict[str, tuple[str, str]]:
        return {r["fp"]: (r["role"], r["id"]) for r in self.conn().execute("SELECT fp, role, id FROM keys")}

    def events(self, rec: Recording) -> RecordingEvents:
        """The device's events naming the recording or while it ran (its monotonic window)."""
        first, last = rec.first, rec.segments[-1].manifest
        start, end = first.start_mono_us, (last.end_mono_us or last.start_mono_us)
        out = RecordingEvents()
        for e in self.conn().execute(
                "SELECT * FROM events WHERE device = ? AND (mono_us BETWEEN ? AND ? OR recording = ?) ORDER BY seq "
                "LIMIT 10000", (rec.device_id, start, end, rec.id)):
            data = json.loads(e["data"])
            out.events.append({"seq": e["seq"], "utc_us": e["utc_us"], "mono_us": e["mono_us"], "kind": e["kind"],
                               "data": {**data, "state": e["state"]} if e["kind"] == "state" else data})
            if e["kind"] == "marker":
                out.markers.append({"n": data.get("n"), "utc_us": e["utc_us"],
                                    "offset_s": round(max(0.0, (e["mono_us"] - first.first_pts_us) / 1e6), 3)})
        out.problems = [r[0] for r in self.conn().execute(
            "SELECT text FROM problems WHERE what LIKE ? LIMIT 20", (f"events:devices/{rec.device_id}/%",))]
        return out

    def receipts(self, rec: Recording) -> dict[int, list[dict[str, Any]]]:
        """The dock's custody receipts of the recording's segments, by seq (read from the
        store when first asked for, then kept)."""
        from evidence.recordings import iso
        out: dict[int, list[dict[str, Any]]] = {}
        conn = self.conn()
        if conn.execute("SELECT 1 FROM receipts_loaded WHERE recording = ?", (rec.id,)).fetchone() is None:
            with transaction(conn):
                Follower(self.store, conn, self.pool, self.now_us).load_receipts(rec.id)
        device, seqs = rec.device_id, [s.seq for s in rec.segments]
        for r in self.conn().execute("SELECT * FROM receipts WHERE device = ? AND kind = 'segment' AND seq BETWEEN "
                                     "? AND ? ORDER BY seq, stored_utc_us", (device, min(seqs), max(seqs))):
            out.setdefault(r["seq"], []).append({
                "dock_id": r["dock_id"], "dock_key": r["dock_key"],
                "stored_utc": iso(r["stored_utc_us"]) if r["stored_utc_us"] is not None else None,
                "stored_utc_us": r["stored_utc_us"],
                "location": r["location"], "signature_verified": bool(r["signature_ok"])})
        return out

    def case(self, case: str, limit: int = 1000) -> Page:
        """Every recording held under the Aktenzeichen ``case`` (compared as :func:`case_key`)."""
        key = case_key(case)
        if not key:
            raise BadQuery("an Aktenzeichen needs at least one letter or digit")
        conn = self.conn()
        rows = conn.execute(f"SELECT {query.COLUMNS} FROM recordings WHERE id IN (SELECT recording FROM holds "
                            f"WHERE case_key = ?) ORDER BY start_utc_us, id LIMIT ?", (key, limit)).fetchall()
        out = Page([dict(r) for r in rows], len(rows))
        query.attach_holds(conn, out.rows)
        return out

    def expired(self, now_us: int, limit: int = 10_000) -> list[str]:
        """Recordings past retention, not deleted, not held (the oldest first)."""
        days = int(self.meta()["retention_days"])
        return [r[0] for r in self.conn().execute(
            "SELECT id FROM recordings WHERE deleted = 0 AND held = 0 AND end_utc_us + ? <= ? ORDER BY end_utc_us "
            "LIMIT ?", (days * query.DAY_US, now_us, limit))]

    def expired_but_held(self, now_us: int, limit: int = 100) -> list[dict[str, Any]]:
        days = int(self.meta()["retention_days"])
        rows = [dict(r) for r in self.conn().execute(
            f"SELECT {query.COLUMNS} FROM recordings WHERE deleted = 0 AND held > 0 AND end_utc_us + ? <= ? "
            "ORDER BY end_utc_us LIMIT ?", (days * query.DAY_US, now_us, limit))]
        query.attach_holds(self.conn(), rows)
        return rows

    def count_within_retention(self, now_us: int) -> int:
        days = int(self.meta()["retention_days"])
        return self.conn().execute("SELECT COUNT(*) FROM recordings WHERE deleted = 0 AND end_utc_us + ? > ?",
                                   (days * query.DAY_US, now_us)).fetchone()[0]

    def unfinished_deletions(self, limit: int = 10_000) -> list[str]:
        return [r[0] for r in self.conn().execute(
            "SELECT recording FROM deletions WHERE footage_gone = 0 AND recording IN (SELECT id FROM recordings) "
            "LIMIT ?", (limit,))]

    def mark_destroyed(self, rid: str) -> None:
        """The recording's footage is gone from the store (this process destroyed it)."""
        conn = self.conn()
        with transaction(conn):
            conn.execute("UPDATE segments SET footage = 0 WHERE recording = ?", (rid,))
            conn.execute("UPDATE deletions SET footage_gone = 1, check_until_us = 0 WHERE recording = ?", (rid,))
        shutil.rmtree(self.poster_dir() / _safe(rid), ignore_errors=True)

    def verification(self, rid: str, key: bytes) -> dict[str, Any] | None:
        row = self.conn().execute("SELECT * FROM verifications WHERE recording = ? AND key = ?", (rid, key)).fetchone()
        if row is None:
            return None
        return {"id": rid, "ok": bool(row["ok"]), "problems": json.loads(row["problems"]), "utc_us": row["utc_us"]}

    def save_verification(self, rid: str, key: bytes, result: dict[str, Any], run: str = "") -> None:
        conn = self.conn()
        with transaction(conn):
            conn.execute("INSERT OR REPLACE INTO verifications VALUES (?, ?, ?, ?, ?, ?)",
                         (rid, key, self.now_us(), int(result["ok"]), json.dumps(result["problems"]), run))

    def problems(self, limit: int = 100) -> list[str]:
        return [r[0] for r in self.conn().execute("SELECT text FROM problems ORDER BY utc_us DESC LIMIT ?", (limit,))]

    def choices(self, column: str, limit: int = 500) -> list[str]:
        """Distinct officers or devices (for the filter's suggestions)."""
        if column not in ("officer", "device"):
            raise ValueError(column)
        return [r[0] for r in self.conn().execute(
            f"SELECT DISTINCT {column} FROM recordings WHERE {column} IS NOT NULL ORDER BY {column} LIMIT ?",
            (limit,))]

    def user(self, user_id: str) -> tuple[str, str, int] | None:
        """(role, state, audit seq of the last change) of a console user, as on record."""
        row = self.conn().execute("SELECT role, state, audit_seq FROM users WHERE id = ?", (user_id,)).fetchone()
        return (row[0], row[1], row[2]) if row is not None else None

    def poster_dir(self) -> Path:
        return self.dir / "posters"


def _safe(rid: str) -> str:
    return hashlib.sha256(rid.encode()).hexdigest()[:32]


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction (taken at once, so two writers queue instead of failing)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
