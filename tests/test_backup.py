"""Backup and restore of the evidence store (evidence/backup.py): the restore drill — back
up, destroy, restore, verify, play — and what a backup must never do."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import keys
from evidence.cli import main as evidence_main
from evidence.store import FsEvidenceStore
from simulator.store_gen import StoreWriter, Take, TsFootage
from tests.conftest import need

DAY = 86_400_000_000


def cli(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = evidence_main([*args, "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else {"stderr": out.err})


def _city(tmp_path: Path) -> tuple[Path, Path, keys.AuthorityFiles, list[str]]:
    authority = keys.create_authority(tmp_path / "keys")
    office = keys.create_device_key(tmp_path / "keys", name="office").private
    store = tmp_path / "store"
    assert evidence_main(["--store", str(store), "--key", str(office), "init", "--supervisor", "sl", "--by", "sl",
                          "--demo"]) == 0
    now = time.time_ns() // 1000
    writer = StoreWriter(FsEvidenceStore(store), identity=keys.load_identity(authority.identity),
                         now_us=lambda: now - DAY)
    rids = writer.docking("cam-1", [Take(now - 2 * DAY, segments=2, segment_s=2, officer="KOD-1",
                                         footage=TsFootage(2.0)),
                                    Take(now - 2 * DAY + 600_000_000, segments=2, segment_s=2, officer="KOD-1",
                                         footage=TsFootage(2.0))])
    return store, office, authority, rids


def test_the_restore_drill_back_up_destroy_restore_verify_play(tmp_path, capsys):
    store, office, authority, rids = _city(tmp_path)
    backup = tmp_path / "backup"
    code, first = cli(capsys, "--store", str(store), "backup", "--to", str(backup), "--verify")
    assert code == 0 and first["copied"] == first["listed"] > 10 and first["verified"] == first["listed"]
    code, again = cli(capsys, "--store", str(store), "backup", "--to", str(backup))
    assert code == 0 and again["copied"] == 0 and again["unchanged"] == again["listed"]   # incremental
    shutil.rmtree(store)                                                                   # the loss
    restored = tmp_path / "restored"
    code, back = cli(capsys, "--store", str(restored), "restore", "--from", str(backup), "--verify")
    assert code == 0 and back["copied"] == first["listed"] and "reindex" in back["next"]
    assert evidence_main(["--store", str(restored), "reindex"]) == 0
    code, verified = cli(capsys, "--store", str(restored), "verify")
    assert code == 0 and verified["ok"] and {r["id"] for r in verified["recordings"]} == set(rids)
    code, exported = cli(capsys, "--store", str(restored), "--key", str(office), "export", "--recording", rids[0],
                         "--identity", str(authority.identity), "--out", str(tmp_path / "played.mp4"), "--by", "sl")
    assert code == 0, exported
    probe = subprocess.run([need("ffprobe"), "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv",
                            str(tmp_path / "played.mp4")], capture_output=True, text=True, check=True)
    assert "h264" in probe.stdout
    # a restore never mixes two stores
    code, refused = cli(capsys, "--store", str(restored), "restore", "--from", str(tmp_path / "other-backup"))
    assert code == 2 and "no evidence store" in refused["stderr"]
    for bad, message in (("", "needs a directory"), (str(tmp_path / "keys"), "holds other files")):
        code, refused = cli(capsys, "--store", str(restored), "backup", "--to", bad)
        assert code == 2 and message in refused["stderr"]
    other_store, _, _, _ = _city(tmp_path / "other")           # another store, with evidence of its own
    code, mixed = cli(capsys, "--store", str(other_store), "restore", "--from", str(backup))
    assert code == 2 and "restore only into an empty store" in mixed["stderr"]


def test_a_backup_deletes_what_the_law_deleted_and_keeps_what_only_tampering_removes(tmp_path, capsys):
    store, office, _, rids = _city(tmp_path)
    backup = tmp_path / "backup"
    assert cli(capsys, "--store", str(store), "backup", "--to", str(backup))[0] == 0
    # an early deletion in the store (officer and supervisor): its footage must leave the backup too
    for by in ("KOD-1", "sl"):
        assert cli(capsys, "--store", str(store), "--key", str(office), "delete", "--recording", rids[0],
                   "--by", by)[0] == 0
    gone = sorted(p.relative_to(backup).as_posix() for p in (backup / "devices/cam-1/segments").glob("*.ts.age")
                  if not (store / p.relative_to(backup)).exists())
    assert len(gone) == 2
    code, report = cli(capsys, "--store", str(store), "backup", "--to", str(backup))
    assert code == 0 and sorted(report["deleted_footage"]) == gone
    assert not any((backup / g).exists() for g in gone)
    assert (backup / "devices/cam-1/segments/00000001.manifest").exists()   # manifests stay, as in the store
    # a manifest removed from the store behind the office's back: never propagated, a finding
    victim = store / "devices/cam-1/segments/00000004.manifest"
    victim.chmod(0o644)
    victim.unlink()
    code, report = cli(capsys, "--store", str(store), "backup", "--to", str(backup))
    assert code == 1 and any("00000004.manifest" in p and "kept" in p for p in report["problems"])
    assert (backup / "devices/cam-1/segments/00000004.manifest").exists()


def test_a_killed_backup_is_resumed_by_the_next_run(tmp_path):
    store, _, _, _ = _city(tmp_path)
    backup = tmp_path / "backup"
    script = ("import os, signal, sys, threading\n"
              "from evidence.fs import FsBackend\n"
              "real, done, lock = FsBackend.put_once, [0], threading.Lock()\n"
              "def dying(self, *a, **k):\n"
              "    with lock:\n"
              "        if done[0] >= 5:   # five objects are in the backup: killed mid-backup\n"
              "            os.kill(os.getpid(), signal.SIGKILL)\n"
              "    out = real(self, *a, **k)\n"
              "    with lock:\n"
              "        done[0] += 1\n"
              "    return out\n"
              "FsBackend.put_once = dying\n"
              "from evidence.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    killed = subprocess.run([sys.executable, "-c", script, "--store", str(store), "backup", "--to", str(backup)],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert killed.returncode == -9
    partial = len(FsEvidenceStore(backup).backend.keys(""))
    assert 5 <= partial
    assert evidence_main(["--store", str(store), "backup", "--to", str(backup), "--verify"]) == 0
    assert len(FsEvidenceStore(backup).backend.keys("")) > partial


def test_a_backup_into_s3_with_object_lock_and_back(tmp_path, capsys, s3, bucket, monkeypatch):
    """The backup in a real S3 (SeaweedFS, Object Lock): copied write-once with the server's
    checksum, deleted footage destroyed there too (the office may bypass governance), and a
    restore from it into a new directory verifies."""
    from simulator.s3_server import CREDENTIALS
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "office")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", CREDENTIALS["office"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store, office, _, rids = _city(tmp_path)
    url = f"s3://{bucket}/backup"
    code, first = cli(capsys, "--store", str(store), "backup", "--to", url, "--verify")
    assert code == 0 and first["copied"] == first["listed"] == first["verified"]
    for by in ("KOD-1", "sl"):
        assert cli(capsys, "--store", str(store), "--key", str(office), "delete", "--recording", rids[1],
                   "--by", by)[0] == 0
    code, second = cli(capsys, "--store", str(store), "backup", "--to", url)
    assert code == 0 and len(second["deleted_footage"]) == 2 and second["copied"] >= 1   # the delete record
    restored = tmp_path / "restored"
    code, back = cli(capsys, "--store", str(restored), "restore", "--from", url)
    assert code == 0
    assert evidence_main(["--store", str(restored), "reindex"]) == 0
    code, verified = cli(capsys, "--store", str(restored), "verify")
    assert code == 0 and verified["ok"]
    deleted = next(r for r in verified["recordings"] if r["id"] == rids[1])
    assert deleted["deleted"]
