"""The index's SQLite files: schema, generations, one connection per thread.

An index directory holds generations ``index-N.sqlite`` (WAL) and ``current``, which
names the one in use. A rebuild writes a new generation beside the old one, which
keeps answering meanwhile; ``current`` is switched (atomic rename) when the new one is
complete, and threads reconnect on their next query. A new generation is never a file
renamed under open connections (that would pair it with the old one's WAL), so a crash
at any point leaves either the old index in use or a half-built new one that the next
rebuild resumes.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
from pathlib import Path

from common.fsutil import write_atomic

SCHEMA_VERSION = 1
_GEN = re.compile(r"index-(\d+)\.sqlite")

SCHEMA = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY, utc_us INTEGER, action TEXT, by TEXT, device TEXT, recording TEXT,
    details TEXT, signer TEXT, digest BLOB, signature_ok INTEGER);
CREATE INDEX audit_recording ON audit(recording, seq);
CREATE INDEX audit_action ON audit(action, seq);
CREATE INDEX audit_by ON audit(by, seq);
CREATE INDEX audit_signer ON audit(signer, action, seq);
CREATE TABLE keys (fp TEXT PRIMARY KEY, role TEXT, id TEXT, public BLOB);
CREATE TABLE devices (
    id TEXT PRIMARY KEY, last_ingest_seq INTEGER, last_ingest_us INTEGER,
    pending_until_us INTEGER DEFAULT 0, next_check_us INTEGER DEFAULT 0, events_after TEXT DEFAULT '');
CREATE TABLE segments (
    device TEXT, seq INTEGER, recording TEXT, idx INTEGER, start_utc_us INTEGER, end_utc_us INTEGER,
    start_mono_us INTEGER, end_mono_us INTEGER, first_pts_us INTEGER, frames INTEGER, size INTEGER,
    sha256 BLOB, complete INTEGER, final INTEGER, manifest BLOB, manifest_digest BLOB, footage INTEGER,
    PRIMARY KEY (device, seq)) WITHOUT ROWID;
CREATE INDEX segments_recording ON segments(recording, idx, seq);
CREATE TABLE recordings (
    id TEXT PRIMARY KEY, device TEXT, officer TEXT, start_utc_us INTEGER, end_utc_us INTEGER,
    duration_us INTEGER, segments INTEGER, seqs TEXT, frames INTEGER, announced INTEGER, truncated INTEGER,
    final INTEGER, first_seq INTEGER, last_seq INTEGER, held INTEGER DEFAULT 0, deleted INTEGER DEFAULT 0,
    markers INTEGER DEFAULT 0, start_mono_us INTEGER, end_mono_us INTEGER);
CREATE INDEX recordings_start ON recordings(start_utc_us, id);
CREATE INDEX recordings_officer ON recordings(officer, start_utc_us, id);
CREATE INDEX recordings_device ON recordings(device, start_utc_us, id);
CREATE INDEX recordings_end ON recordings(deleted, held, end_utc_us, id);
CREATE INDEX recordings_mono ON recordings(device, start_mono_us);
CREATE TABLE holds (
    audit_seq INTEGER PRIMARY KEY, recording TEXT, reason TEXT, case_ref TEXT, case_key TEXT, by TEXT,
    utc_us INTEGER);
CREATE INDEX holds_recording ON holds(recording);
CREATE INDEX holds_case ON holds(case_key, recording);
CREATE TABLE approvals (recording TEXT, role TEXT, by TEXT, PRIMARY KEY (recording, role));
CREATE TABLE release_requests (recording TEXT, reason TEXT, by TEXT, why TEXT, audit_seq INTEGER,
    PRIMARY KEY (recording, reason));
CREATE TABLE deletions (recording TEXT PRIMARY KEY, audit_seq INTEGER, action TEXT, by TEXT, utc_us INTEGER,
    footage_gone INTEGER DEFAULT 0, check_until_us INTEGER DEFAULT 0);
CREATE INDEX deletions_open ON deletions(footage_gone);
CREATE TABLE users (id TEXT PRIMARY KEY, role TEXT, audit_seq INTEGER, state TEXT);
CREATE TABLE exports (audit_seq INTEGER PRIMARY KEY, recording TEXT, by TEXT, utc_us INTEGER, file TEXT,
    sha256 TEXT);
CREATE INDEX exports_recording ON exports(recording);
CREATE TABLE events (
    device TEXT, seq INTEGER, utc_us INTEGER, mono_us INTEGER, kind TEXT, recording TEXT, data TEXT, state TEXT,
    PRIMARY KEY (device, seq)) WITHOUT ROWID;
CREATE INDEX events_mono ON events(device, kind, mono_us);
CREATE INDEX events_recording ON events(recording);
CREATE TABLE receipts (
    device TEXT, name TEXT, kind TEXT, seq INTEGER, dock_id TEXT, dock_key TEXT, stored_utc_us INTEGER,
    location TEXT, signature_ok INTEGER, PRIMARY KEY (device, name)) WITHOUT ROWID;
CREATE INDEX receipts_seq ON receipts(device, kind, seq);
CREATE TABLE receipts_loaded (recording TEXT PRIMARY KEY);
CREATE TABLE verifications (
    recording TEXT PRIMARY KEY, key BLOB, utc_us INTEGER, ok INTEGER, problems TEXT, run TEXT);
CREATE INDEX verifications_run ON verifications(run);
CREATE TABLE problems (what TEXT PRIMARY KEY, text TEXT, utc_us INTEGER);
CREATE TABLE revocations (device TEXT PRIMARY KEY, utc_us INTEGER, reason TEXT, by TEXT, audit_seq INTEGER);
CREATE TABLE dock_revocations (dock_key TEXT PRIMARY KEY, dock_id TEXT, utc_us INTEGER, reason TEXT, by TEXT,
    audit_seq INTEGER);
CREATE TABLE rebuild_devices (device TEXT PRIMARY KEY);
CREATE TABLE pack_staging (seq INTEGER PRIMARY KEY, record BLOB);  -- audit records read one by one, until their block is packed
"""


# What a generation records as its schema: the version and a digest of the tables below,
# so an index made by any other table layout (an older version, a development build) is
# rebuilt rather than queried for columns it lacks.
SCHEMA_ID = f"{SCHEMA_VERSION}:{hashlib.sha256(SCHEMA.encode()).hexdigest()[:12]}"


class IndexCorrupt(Exception):
    """The index file cannot be used (not SQLite, damaged, another schema): rebuild it."""


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")   # a cache: after a power cut the last commit may be lost,
    conn.execute("PRAGMA foreign_keys=OFF")     # never torn; the next refresh re-reads it from the store
    return conn


def create(path: Path, store_location: str) -> sqlite3.Connection:
    conn = connect(path)
    with conn:
        conn.execute("BEGIN")
        conn.executescript(SCHEMA.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS").replace(
            "CREATE INDEX", "CREATE INDEX IF NOT EXISTS"))
        conn.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", [
            ("schema", SCHEMA_ID), ("store", store_location), ("complete", "0"), ("audit_seq", "0"),
            ("audit_digest", ""), ("retention_days", "14"), ("supervisors", "[]"), ("initialised", "0"), ("demo", "0"),
            ("retention_approval", "")])
    return conn


def meta(conn: sqlite3.Connection, key: str, default: str = "") -> str:
    row = conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
    return row[0] if row is not None else default


def set_meta(conn: sqlite3.Connection, key: str, value: object) -> None:
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))


def check(conn: sqlite3.Connection, store_location: str, *, thorough: bool = False) -> None:
    """IndexCorrupt unless this is a complete index of this schema for this store;
    ``thorough`` also reads every page of the file (``verify`` does)."""
    try:
        if thorough and conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check found damage")
        schema, store, complete = meta(conn, "schema"), meta(conn, "store"), meta(conn, "complete")
    except sqlite3.DatabaseError as exc:
        raise IndexCorrupt(f"the index file is damaged ({exc})") from None
    if schema != SCHEMA_ID:
        raise IndexCorrupt(f"the index has schema {schema or 'unknown'}, this version uses {SCHEMA_ID}")
    if store != store_location:
        raise IndexCorrupt(f"the index belongs to another store ({store})")
    if complete != "1":
        raise IndexCorrupt("the index was never completed (a rebuild was interrupted)")


class Generations:
    """The directory of generations and each thread's connection to the current one."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self._local = threading.local()

    def prepare(self) -> None:
        if self.dir.exists() and not self.dir.is_dir():
            raise NotADirectoryError(f"the index {self.dir} is a file, not a directory; name a directory "
                                     "(--index DIR or BODYCAM_INDEX)")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)  # personal data (officers, times): the office only

    def current_name(self) -> str | None:
        try:
            name = (self.dir / "current").read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return name if _GEN.fullmatch(name) else None

    def current_number(self) -> int:
        """The generation in use, 0 if none."""
        name = self.current_name()
        m = _GEN.fullmatch(name) if name else None
        return int(m.group(1)) if m else 0

    def numbers(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _GEN.fullmatch(p.name)))

    def path(self, n: int) -> Path:
        return self.dir / f"index-{n}.sqlite"

    def conn(self) -> sqlite3.Connection | None:
        """This thread's connection to the current generation (reopened after a switch)."""
        name = self.current_name()
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == name:
            return held[1]
        if held is not None:
            held[1].close()
            self._local.held = None
        if name is None or not (self.dir / name).exists():
            return None
        conn = connect(self.dir / name)
        self._local.held = (name, conn)
        return conn

    def switch(self, n: int) -> None:
        """Make generation ``n`` current and remove the older ones."""
        write_atomic(self.dir / "current", f"index-{n}.sqlite\n".encode())
        for old in self.numbers():
            if old < n:
                self.discard(old)

    def discard(self, n: int) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path(n)}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        held = getattr(self._local, "held", None)
        if held is not None:
            held[1].close()
            self._local.held = None
