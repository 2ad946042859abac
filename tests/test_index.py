"""The office's index: it follows the store, a rebuild from the store alone gives the same
index, and whatever goes wrong with it (missing, old, damaged, stale, killed mid-work)
is rebuilt or reported, never trusted over the store."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import keys
from evidence import audit
from evidence.index import Filters, Index, case_key
from evidence.index.query import local_day_bounds
from evidence.office import Office, Refused
from evidence.recordings import index as full_scan
from evidence.state import State
from evidence.store import EvidenceStore, FsEvidenceStore
from simulator.store_gen import StoreWriter, Take

T0 = 1_800_000_000_000_000                 # 2027-01-15
DAY = 86_400_000_000
COMPARED = {  # table: columns that must agree (what the store says; not cursors, caches, problems)
    "audit": "*", "keys": "*", "segments": "*", "recordings": "*", "holds": "*", "approvals": "*", "users": "*",
    "exports": "*", "events": "*", "release_requests": "*", "revocations": "*",
    "deletions": "recording, audit_seq, action, by, utc_us, footage_gone",
}
META = ("audit_seq", "audit_digest", "retention_days", "supervisors", "initialised", "demo", "retention_approval")


def dump(index: Index) -> dict[str, list[tuple]]:
    conn = index.conn()
    out = {t: sorted(tuple(r) for r in conn.execute(f"SELECT {cols} FROM {t}")) for t, cols in COMPARED.items()}
    out["meta"] = sorted((k, v) for k, v in index.meta().items() if k in META)
    return out


class World:
    """A store, the dock's writes (StoreWriter), an office acting through its own index."""

    def __init__(self, root: Path, store: EvidenceStore | None = None) -> None:
        self.root = root
        self.store = store if store is not None else FsEvidenceStore(root / "ev")
        self.clock = [T0]
        self.writer = StoreWriter(self.store, seed=7, now_us=self.now)
        self.key = keys.load_signing_key(keys.create_device_key(root / "k", name="office").private)
        self.office = Office(self.store, self.key, self.now, Index(self.store, root / "office-index", now_us=self.now))
        self.office.init(14, ["sl.schmidt"], by="admin", demo=True)  # purge may look ahead (virtual time)
        self.rids: list[str] = []

    def now(self) -> int:
        self.clock[0] += 1_000_000
        return self.clock[0]

    def dock(self, device: int, takes: int, segments: int, markers: int) -> None:
        start = self.clock[0] + 3_600_000_000
        self.rids += self.writer.docking(f"cam-{device}", [
            Take(start + i * 600_000_000, segments=segments, segment_s=2, markers=markers, officer=f"KOD-{device}",
                 announced=bool(i % 2 == 0)) for i in range(takes)])
        self.clock[0] = start + takes * 600_000_000

    def act(self, op: str, n: int, reason: str) -> None:
        if not self.rids:
            return
        rid = self.rids[n % len(self.rids)]
        officer = f"KOD-{rid.split('-')[1]}"
        try:
            if op == "hold":
                self.office.hold(rid, reason, f"AZ {n % 3}/27", by="anna")
            elif op == "release":
                self.office.release(rid, reason, by="anna", why="Verfahren eingestellt")
            elif op == "supervisor-release":
                self.office.release(rid, reason, by="sl.schmidt", why="Freigabe genehmigt")
            elif op == "officer-delete":
                self.office.delete(rid, by=officer)
            elif op == "supervisor-delete":
                self.office.delete(rid, by="sl.schmidt")
            elif op == "view":
                self.office.show(rid, by="anna")
            elif op == "purge":
                self.office.purge(self.clock[0] + 15 * DAY, by="cron")
        except Refused:
            pass  # not allowed now (held, nothing to release, already deleted): nothing changed


OPS = st.one_of(
    st.tuples(st.just("dock"), st.integers(0, 2), st.integers(1, 2), st.integers(1, 3), st.integers(0, 2)),
    st.tuples(st.sampled_from(["hold", "release", "supervisor-release", "officer-delete", "supervisor-delete", "view",
                               "purge"]),
              st.integers(0, 50), st.sampled_from(["owi", "straf"])),
    st.just(("refresh",)))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=14))
def test_a_rebuild_gives_the_index_the_refreshes_built(tmp_path_factory, ops):
    """Random dockings and office actions, an index refreshed at random moments (another
    office's, so everything arrives through the store), then one rebuilt from the store
    alone: the same — and both agree with the full scan of the store the office used before."""
    w = World(tmp_path_factory.mktemp("world"))
    follower = Index(w.store, w.root / "follower", now_us=w.now)
    follower.refresh()
    for op in ops:
        if op[0] == "dock":
            w.dock(*op[1:])
        elif op[0] == "refresh":
            follower.refresh()
        else:
            w.act(*op)
    follower.refresh()
    rebuilt = Index(w.store, w.root / "rebuilt", now_us=w.now)
    rebuilt.rebuild()
    assert dump(follower) == dump(rebuilt)
    for rid in w.rids[:5]:  # custody receipts, read when first shown: the same through both
        rec = rebuilt.recording(rid)
        assert rec is not None and follower.receipts(rec) == rebuilt.receipts(rec) != {}
    # …and both say what the store says when read whole (the pre-index way)
    state = State.fold(audit.entries(w.store))
    scan = full_scan(w.store)
    got = rebuilt.state(list(scan))
    assert {r: [(h.reason, h.case, h.audit_seq) for h in hs] for r, hs in state.holds.items() if hs} == \
        {r: [(h.reason, h.case, h.audit_seq) for h in hs] for r, hs in got.holds.items()}
    assert {r: e.seq for r, e in state.deleted.items()} == {r: e.seq for r, e in got.deleted.items()}
    assert state.approvals == {r: a for r, a in got.approvals.items()}
    assert state.release_requests == got.release_requests and state.demo == got.demo is True
    rows = {r["id"]: r for r in rebuilt.page(Filters(), limit=10_000).rows}
    assert set(rows) == set(scan)
    for rid, rec in scan.items():
        assert (rows[rid]["device"], rows[rid]["officer"], rows[rid]["start_utc_us"], rows[rid]["end_utc_us"],
                rows[rid]["segments"]) == (rec.device_id, rec.officer_id, rec.start_utc_us, rec.end_utc_us,
                                           len(rec.segments))


# ---------------------------------------------------------------------- the clerk's questions

@pytest.fixture(scope="module")
def city(tmp_path_factory) -> World:
    """Six cameras over ten days, some recordings held under case numbers."""
    w = World(tmp_path_factory.mktemp("city"))
    for day in range(10):
        for cam in range(6):
            w.clock[0] = T0 + day * DAY + cam * 3_600_000_000
            w.dock(cam, 2, 1, cam % 2)
    for n, rid in enumerate(w.rids[::7]):
        w.office.hold(rid, "straf" if n % 2 else "owi", "AZ 4711/27" if n < 3 else f"OWi-{n}", by="anna")
    w.office.refresh()
    return w


def test_keyset_pages_cover_everything_once_in_order(city):
    idx = city.office.idx()
    seen, after, page = [], None, None
    while True:
        page = idx.page(Filters(), sort="start_desc", after=after, limit=7)
        seen += [r["id"] for r in page.rows]
        assert page.total == len(city.rids)
        if page.next is None:
            break
        after = page.next
    assert len(seen) == len(set(seen)) == len(city.rids)
    starts = [idx.row(r)["start_utc_us"] for r in seen]
    assert starts == sorted(starts, reverse=True)
    # and back again, page by page, from the last page
    back = idx.page(Filters(), sort="start_desc", before=page.prev, limit=7)
    assert [r["id"] for r in back.rows] == seen[-len(page.rows) - 7:-len(page.rows)]
    assert back.first == len(seen) - len(page.rows) - 7 + 1


def test_filters_officer_camera_local_dates_held_due_and_case(city):
    idx = city.office.idx()
    everything = idx.page(Filters(), limit=10_000).rows
    officer = idx.page(Filters(officer="KOD-3"), limit=10_000).rows
    assert officer and all(r["officer"] == "KOD-3" for r in officer)
    assert len(officer) == sum(r["officer"] == "KOD-3" for r in everything)
    assert all(r["device"] == "cam-2" for r in idx.page(Filters(device="cam-2"), limit=10_000).rows)
    # a local calendar day (Europe/Berlin, CET in January: UTC+1)
    day = dt.date(2027, 1, 17)
    since, until = local_day_bounds(day, day)
    assert since == int(dt.datetime(2027, 1, 16, 23, 0, tzinfo=dt.timezone.utc).timestamp() * 1e6)
    on_day = idx.page(Filters(since_us=since, until_us=until), limit=10_000).rows
    assert on_day and all(since <= r["start_utc_us"] < until for r in on_day)
    assert len(on_day) == sum(since <= r["start_utc_us"] < until for r in everything)
    held = idx.page(Filters(held=True), limit=10_000)
    assert held.total == len(city.rids[::7]) and idx.page(Filters(held=False)).total == len(city.rids) - held.total
    assert idx.page(Filters(reason="owi"), limit=10_000).total + idx.page(Filters(reason="straf")).total == held.total
    case = idx.page(Filters(case="4711"), limit=10_000)
    assert case.total == 3 and {r["id"] for r in case.rows} == set(city.rids[::7][:3])
    assert {r["id"] for r in idx.case("az 4711 / 27").rows} == set(city.rids[::7][:3])  # spelled otherwise
    # due within N days: not held, and expires within N whole days of now
    now = city.clock[0]
    due = idx.page(Filters(due_days=3), limit=10_000).rows
    for r in everything:
        days_left = (r["end_utc_us"] + 14 * DAY - idx.now_us()) // DAY
        assert (r["id"] in {d["id"] for d in due}) == (not r["held"] and not r["deleted"] and days_left <= 3), now


def test_a_dst_day_has_23_hours():
    since, until = local_day_bounds(dt.date(2027, 3, 28), dt.date(2027, 3, 28))
    assert until - since == 23 * 3_600_000_000


def test_case_keys_ignore_case_spaces_and_separators():
    assert case_key("AZ 4711/27") == case_key("az4711-27") == "az471127"
    assert case_key(" / - ") == ""


# ---------------------------------------------------------------------- never trusted over the store

def _small(root: Path) -> World:
    w = World(root)
    w.dock(0, 2, 2, 1)
    w.dock(1, 1, 3, 0)
    return w


def test_missing_old_damaged_and_foreign_indexes_are_rebuilt(tmp_path):
    w = _small(tmp_path)
    idx = Index(w.store, tmp_path / "idx")
    idx.refresh()
    want = dump(idx)
    current = idx.dir / idx.gens.current_name()
    # an index of another schema version
    conn = sqlite3.connect(current)
    conn.execute("UPDATE meta SET v = '0' WHERE k = 'schema'")
    conn.commit()
    conn.close()
    idx.close()
    idx = Index(w.store, tmp_path / "idx")
    idx.refresh()
    assert dump(idx) == want and idx.dir / idx.gens.current_name() != current
    # a damaged file (garbage over it)
    current = idx.dir / idx.gens.current_name()
    idx.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{current}{suffix}").unlink(missing_ok=True)
    current.write_bytes(b"this is not SQLite" * 100)
    idx = Index(w.store, tmp_path / "idx")
    idx.refresh()
    assert dump(idx) == want
    # the index of another store at this path
    other = FsEvidenceStore(tmp_path / "other")
    idx.close()
    assert Index(other, tmp_path / "idx").refresh().records == 0
    idx = Index(w.store, tmp_path / "idx")
    idx.refresh()
    assert dump(idx) == want


def test_a_trail_altered_behind_the_index_is_noticed_and_rebuilt(tmp_path):
    w = _small(tmp_path)
    idx = Index(w.store, tmp_path / "idx")
    idx.refresh()
    head = int(idx.meta()["audit_seq"])
    # someone replaces the last record the index saw (a filesystem store cannot refuse its admin)
    path = w.store.root / "audit" / f"{head:012d}.cbor"
    os.chmod(path, 0o644)
    record = audit.read(w.store, head)[1]
    path.write_bytes(record[:-1] + bytes([record[-1] ^ 1]))
    report = idx.refresh()
    assert any("no longer holds record" in p for p in report.problems)
    assert any("no longer holds record" in p for p in idx.problems())   # kept: never hidden


def test_unreadable_manifest_and_records_are_problems_not_crashes(tmp_path):
    w = _small(tmp_path)
    manifest = w.store.root / "devices" / "cam-1" / "segments" / "00000002.manifest"
    os.chmod(manifest, 0o644)
    manifest.write_bytes(b"\xa1garbage")
    idx = Index(w.store, tmp_path / "idx")
    report = idx.refresh()
    assert any("manifest 00000002 cannot be read" in p for p in report.problems)
    assert idx.page(Filters()).total == 3                     # the rest is there
    (w.store.root / "audit" / f"{audit.last_seq(w.store) + 1:012d}.cbor").write_bytes(b"junk")
    report = idx.refresh()
    assert any("cannot be read" in p and "audit --verify" in p for p in report.problems)


def test_verify_checks_the_index_against_the_store(tmp_path):
    from evidence.verify import verify_all
    w = _small(tmp_path)
    idx = w.office.idx()
    idx.refresh()
    assert verify_all(idx)["ok"]
    # a segment in the store the index does not hold (as after a dock killed between storing and
    # its ingest record, whose segments no refresh then names)
    dev = w.writer.device("cam-0")
    w.writer.docking("cam-0", [Take(w.clock[0] + DAY, segments=1, officer="KOD-0")])
    idx.refresh()
    with idx.conn() as conn:
        conn.execute("DELETE FROM segments WHERE device = 'cam-0' AND seq = ?", (dev.seq,))
    result = verify_all(idx, restart=True)
    assert not result["ok"]
    assert any(f"segment {dev.seq} is in the store but not in the index" in p for p in result["problems"])
    idx.rebuild()
    assert verify_all(idx, restart=True)["ok"]


def test_a_deletion_by_another_office_reaches_this_index(tmp_path):
    w = _small(tmp_path)
    mine = Index(w.store, tmp_path / "mine", now_us=w.now)
    mine.refresh()
    rid = w.rids[0]
    w.office.delete(rid, by="KOD-0")
    w.office.delete(rid, by="sl.schmidt")
    mine.refresh()
    assert mine.row(rid)["deleted"] == 1
    assert mine.conn().execute("SELECT footage_gone FROM deletions WHERE recording = ?", (rid,)).fetchone()[0] == 1


REBUILD = textwrap.dedent("""
    import sys
    from evidence.index import Index
    from evidence.store import EvidenceStore, FsEvidenceStore
    import evidence.index.follow as follow
    follow.BATCH = 2          # many small commits: more places to be killed at
    def progress(phase, done, total):
        print(phase, done, total, flush=True)
        sys.stdin.readline()  # the test decides when to go on (or to kill)
    Index(FsEvidenceStore(sys.argv[1]), sys.argv[2]).rebuild(progress)
""")


@pytest.mark.parametrize("kill_at", [1, 2, 3, 5, 7, 8])
def test_a_rebuild_killed_at_any_moment_is_finished_by_the_next(tmp_path, kill_at):
    """SIGKILL at the k-th step of a rebuild (mid-trail, between devices, …): the next start
    resumes it and ends with the index a clean rebuild gives."""
    w = World(tmp_path)
    for cam in range(6):
        w.dock(cam, 2, 2, 1)
    want_idx = Index(w.store, tmp_path / "want")
    want_idx.rebuild()
    want = dump(want_idx)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", REBUILD, str(w.store.root), str(tmp_path / "idx")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    steps = []
    for _ in range(kill_at):
        steps.append(proc.stdout.readline().strip())
        if len(steps) < kill_at:
            proc.stdin.write("\n")
            proc.stdin.flush()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert steps[-1], "the rebuild ended before the kill"
    idx = Index(w.store, tmp_path / "idx")
    assert not idx.usable() and idx.status()["unfinished_rebuild"]
    idx.refresh()                              # resumes the rebuild, then follows
    assert dump(idx) == want
    assert len(idx.gens.numbers()) == 1        # no half-built generation is left behind


REFRESH = REBUILD.replace(").rebuild(progress)", ").refresh(progress)").replace("BATCH = 2", "BATCH = 1")


@pytest.mark.parametrize("kill_at", [1, 2, 3])
def test_a_refresh_killed_midway_leaves_an_index_the_next_refresh_completes(tmp_path, kill_at):
    w = World(tmp_path)
    idx = Index(w.store, tmp_path / "idx")
    idx.refresh()
    idx.close()
    for cam in range(12):                      # a backlog: twelve dockings since the last refresh
        w.dock(cam % 6, 1, 2, 1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", REFRESH, str(w.store.root), str(tmp_path / "idx")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    for n in range(kill_at):
        assert proc.stdout.readline().startswith("trail")
        if n < kill_at - 1:
            proc.stdin.write("\n")
            proc.stdin.flush()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    idx = Index(w.store, tmp_path / "idx")
    assert idx.usable()
    idx.refresh()
    want = Index(w.store, tmp_path / "want")
    want.rebuild()
    assert dump(idx) == dump(want)


def test_a_full_verify_also_checks_the_trail_and_the_index_copy_of_it(tmp_path):
    from evidence.verify import verify_all
    w = _small(tmp_path)
    idx = w.office.idx()
    assert verify_all(idx)["ok"]
    with idx.conn() as conn:  # the index's copy of record 2 differs from the store's
        conn.execute("UPDATE audit SET digest = ? WHERE seq = 2", (b"\0" * 32,))
    result = verify_all(idx, restart=True)
    assert not result["ok"] and any("other records than the store" in p and "first 2" in p
                                    for p in result["problems"])
    idx.rebuild()
    # a record in the middle of the trail altered in the store: the chain breaks there
    path = w.store.root / "audit" / f"{2:012d}.cbor"
    os.chmod(path, 0o644)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    result = verify_all(idx, restart=True)
    assert not result["ok"] and any(p.startswith("audit trail: audit/000000000002.cbor") for p in result["problems"])


def test_a_damaged_page_is_found_by_verify_and_a_damaged_read_sets_the_index_aside(tmp_path, capsys,
                                                                                  monkeypatch):
    from evidence.cli import main as evidence_main
    from evidence.verify import verify_all
    w = _small(tmp_path)
    idx = Index(w.store, tmp_path / "idx")
    idx.refresh()
    path = idx.dir / idx.gens.current_name()
    idx.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:  # garbage over data pages at the end of the file
        f.seek(size - size // 4)
        f.write(os.urandom(size // 4))
    with pytest.raises(sqlite3.DatabaseError):
        verify_all(Index(w.store, tmp_path / "idx"))
    capsys.readouterr()
    assert evidence_main(["--store", str(w.store.root), "--index", str(tmp_path / "idx"), "--json", "verify"]) == 0
    out = capsys.readouterr()
    assert "damaged" in out.err and json.loads(out.out)["ok"]      # set aside, rebuilt, verified
    # a query that meets a damaged page: the index is set aside and rebuilt; a read-only
    # command answers after the rebuild, a recorded one asks to be run again
    calls = []
    real = Index.page

    def damaged_once(self, *a, **kw):
        if not calls:
            calls.append(1)
            raise sqlite3.DatabaseError("database disk image is malformed")
        return real(self, *a, **kw)
    monkeypatch.setattr(Index, "page", damaged_once)
    base = ["--store", str(w.store.root), "--index", str(tmp_path / "idx2"), "--json"]
    capsys.readouterr()
    assert evidence_main([*base, "list"]) == 0
    out = capsys.readouterr()
    assert "damaged" in out.err and len(json.loads(out.out)["recordings"]) == 3


def test_an_index_on_a_full_disk_fails_clearly_and_a_rerun_with_room_finishes(tmp_path, capsys):
    """A real full filesystem (a tmpfs of 160 KiB) under the index: a clear error, exit 1,
    the store untouched; with room again, the same command answers."""
    from evidence.cli import main as evidence_main
    w = World(tmp_path)
    for cam in range(4):
        w.dock(cam, 3, 3, 1)
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        base = ["--store", str(w.store.root), "--index", str(mnt / "idx"), "--json"]
        capsys.readouterr()
        assert evidence_main([*base, "list"]) == 1
        err = capsys.readouterr().err
        assert "disk full" in err or "is its disk full" in err, err
        assert "Traceback" not in err
        subprocess.run(["mount", "-o", "remount,size=20m", str(mnt)], check=True)
        assert evidence_main([*base, "list"]) == 0
        assert len(json.loads(capsys.readouterr().out)["recordings"]) == 12
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_two_processes_refreshing_one_index_at_once_agree_with_a_rebuild(tmp_path):
    """The console's background refresh and a CLI on the same office machine (one index
    directory), both catching up on the same backlog at once."""
    w = World(tmp_path)
    idx = Index(w.store, tmp_path / "idx")
    idx.refresh()
    idx.close()
    for cam in range(12):
        w.dock(cam % 5, 2, 2, 1)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    code = textwrap.dedent("""
        import sys
        import evidence.index.follow as follow
        follow.BATCH = 1
        from evidence.index import Index
        from evidence.store import EvidenceStore, FsEvidenceStore
        Index(FsEvidenceStore(sys.argv[1]), sys.argv[2]).refresh()
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w.store.root), str(tmp_path / "idx")], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    want = Index(w.store, tmp_path / "want")
    want.rebuild()
    assert dump(Index(w.store, tmp_path / "idx")) == dump(want)


def test_an_ingest_record_naming_garbage_is_a_problem_not_a_crash(tmp_path):
    w = _small(tmp_path)
    idx = Index(w.store, tmp_path / "idx")
    idx.refresh()
    for details in ({"segments": ["x", 2**70, -1, True, 1]}, {"segments": {"a": 1}}, {"segments": "12345"}):
        audit.append(w.store, w.writer.dock_key, "ingest", device="cam-0", details=details, now_us=w.now())
        report = idx.refresh()
        assert any("ingest" in p or "details" in p for p in report.problems), report.problems
    assert idx.page(Filters()).total == 3                         # and the index goes on


def test_verify_names_overlapping_event_pieces_and_unknown_objects(tmp_path):
    from evidence.verify import verify_all
    w = _small(tmp_path)
    events = w.store.root / "devices" / "cam-0" / "events"
    first = sorted(events.iterdir())[0]
    a, b = first.name.removesuffix(".cbors").split("-")
    (events / f"{a}-{int(b) + 5:08d}.cbors").write_bytes(first.read_bytes())   # what an older dock could leave
    (w.store.root / "devices" / "cam-0" / "notes.txt").write_text("left by hand")
    result = verify_all(w.office.idx(), restart=True)
    assert any("overlaps the one before" in p for p in result["problems"]), result["problems"]
    assert any("notes.txt: not an object of the store's layout" in p for p in result["problems"])


def test_packs_let_a_cold_rebuild_from_s3_read_few_objects_and_change_nothing(s3, bucket, tmp_path, monkeypatch):
    """Packs (evidence.packs) are copies checked against the listing's MD5s: a rebuild that
    reads them gives exactly the index that reading every object gives, even with a pack
    that lies, a pack that is garbage, and an object destroyed that a pack still holds."""
    from evidence import packs
    from evidence.index import follow
    from evidence.s3 import S3Backend, S3EvidenceStore
    from simulator.s3_server import s3_client
    monkeypatch.setattr(packs, "BLOCK", 16)         # small blocks, so this trail makes several
    monkeypatch.setattr(follow, "PACKED_FROM", 4)
    store = S3EvidenceStore(f"s3://{bucket}/kod", client=s3_client(s3, "office"))
    monkeypatch.setattr(S3Backend, "LISTS_MD5", False)  # a store from before packs
    w = World(tmp_path, store)
    for cam in range(3):
        w.dock(cam, 3, 3, 1)
    for n in range(30):
        w.act("view", n, "owi")
    w.act("hold", 1, "owi")
    reads = [0]
    real_read = store.backend.read

    def counted(key: str) -> bytes:
        reads[0] += 1
        return real_read(key)
    monkeypatch.setattr(store.backend, "read", counted)

    def rebuilt(name: str, use_packs: bool = True) -> tuple[dict, int, list[str]]:
        monkeypatch.setattr(S3Backend, "LISTS_MD5", use_packs)
        reads[0] = 0
        index = Index(store, tmp_path / name, now_us=w.now)
        report = index.rebuild()
        got = dump(index), reads[0], report.problems
        index.close()
        return got

    want, one_by_one, _ = rebuilt("plain", use_packs=False)
    assert not store.backend.keys("packs")           # without MD5s in the listing, none are written
    first, first_reads, _ = rebuilt("first")           # reads one by one, and packs what it read
    written = store.backend.keys("packs")
    records = audit.last_seq(store)
    assert sum(k.startswith("packs/audit/") for k in written) == records // packs.BLOCK
    assert {k.split("/")[2] for k in written if k.startswith("packs/devices/")} == {"cam-0", "cam-1", "cam-2"}
    second, second_reads, problems = rebuilt("second")
    assert first == want and second == want and not problems
    assert second_reads * 3 < one_by_one, (second_reads, one_by_one)
    # a pack that lies about a manifest, and one that is not a pack: both read around
    manifest = "devices/cam-0/segments/00000001.manifest"
    lie = packs.encode("manifests", {"00000001.manifest": real_read(manifest)[:-1] + b"\0"})
    store.backend.put_once("packs/devices/cam-0/00000001-99999999.cbor", lie, __import__("hashlib").sha256(lie).digest())
    store.backend.put_once("packs/devices/cam-1/00000001-99999999.cbor", b"garbage",
                           __import__("hashlib").sha256(b"garbage").digest())
    lied, _, problems = rebuilt("lied")
    assert lied == want
    assert any("packs/devices/cam-1/00000001-99999999.cbor" in p and "one by one" in p for p in problems)
    # an object destroyed behind the index's back, still in a pack: the listing decides
    store.backend.destroy("devices/cam-2/segments/00000002.manifest")
    want_now, _, _ = rebuilt("plain-again", use_packs=False)
    assert rebuilt("after-destroy")[0] == want_now != want
    # in operation, the refresh after a docking packs that docking's manifests
    w.dock(0, 1, 2, 0)
    w.office.idx().refresh()
    assert "packs/devices/cam-0/00000010-00000011.cbor" in store.backend.keys("packs/devices/cam-0")
