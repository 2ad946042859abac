"""``bodycam-evidence`` on both backends: a real shift offloaded by the real dock into a
directory or into SeaweedFS, then the evidence office's commands as a user runs them.

On S3 the office's commands use the office's credentials (Admin) through the usual
boto3 environment; the dock used its own (Read/Write/List only).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from common import keys
from evidence.cli import main as evidence_main
from evidence.s3 import S3EvidenceStore
from evidence.store import FsEvidenceStore
from simulator.s3_server import CREDENTIALS, s3_client
from tests.conftest import need
from tests.tcp_relay import Relay
from tests.test_dock import SHIFT, camera, dock, env, on_camera  # noqa: F401 (env: a fixture)


@dataclass
class Office:
    url: str
    key: Path
    store: object
    capsys: object
    backend: str
    s3: str | None = None

    def run(self, *args: str, key: bool = True) -> tuple[int, dict]:
        self.capsys.readouterr()
        argv = ["--store", self.url, *(["--key", str(self.key)] if key else []), "--json", *args]
        code = evidence_main(argv)
        out = self.capsys.readouterr()
        try:
            return code, json.loads(out.out) if out.out.strip() else {"stderr": out.err}
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON: {out.out!r} {out.err!r}") from None

    def ok(self, *args: str) -> dict:
        code, result = self.run(*args)
        assert code == 0, result
        return result

    def footage_present(self, device: str, seq: int) -> bool:
        return self.store.has_footage(device, seq)

    def audit_count(self) -> int:
        return self.ok("audit")["entries"][-1]["seq"]


@pytest.fixture(params=["fs", "s3"])
def office(request, env, identity, tmp_path, capsys, monkeypatch) -> Office:
    """A store initialised by the office, then one shift (two recordings) docked into it."""
    key = keys.create_device_key(tmp_path / "office-keys", name="office").private
    if request.param == "fs":
        url = str(tmp_path / "evidence")
        env.store = FsEvidenceStore(tmp_path / "evidence")
        s3 = None
    else:
        s3 = request.getfixturevalue("s3")
        bucket = f"office-{request.node.name.replace('[', '-').replace(']', '').replace('_', '-')[-30:]}".lower()
        url = f"s3://{bucket}/kod"
        for name, value in (("AWS_ENDPOINT_URL", s3), ("AWS_ACCESS_KEY_ID", "office"),
                            ("AWS_SECRET_ACCESS_KEY", CREDENTIALS["office"]), ("AWS_DEFAULT_REGION", "us-east-1")):
            monkeypatch.setenv(name, value)
        env.store = S3EvidenceStore(url, client=s3_client(s3, "dock"))
    o = Office(url, key, env.store, capsys, request.param, s3)
    result = o.ok("init", "--supervisor", "sup.schmidt", "--by", "anna", "--demo")  # purge --now looks ahead
    assert result["retention_days"] == 14
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT, run_until=24)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done" and on_camera(sim) == [], bay.status
    return o


def recordings(o: Office) -> list[dict]:
    rows = o.ok("list")["recordings"]
    assert len(rows) == 2
    return rows


def test_list_show_verify_and_the_ingest_on_record(office):
    rows = recordings(office)
    assert [r["announced"] for r in rows] == [True, False]  # a press, then a double press
    assert all(r["officer"] and not r["held"] and r["deleted"] is None for r in rows)
    assert office.ok("list", "--officer", rows[0]["officer"], "--since", rows[1]["start_utc"])["recordings"] \
        == [rows[1]]
    assert office.ok("list", "--device", "other")["recordings"] == []
    result = office.ok("verify")
    assert result["ok"] and [r["ok"] for r in result["recordings"]] == [True, True]
    shown = office.ok("show", "--recording", rows[0]["id"], "--by", "anna")
    assert [m["seq"] for m in shown["manifests"]] == rows[0]["segments"]
    actions = [e["action"] for e in office.ok("audit")["entries"]]
    assert actions == ["init", "ingest", "view"]
    trail = office.ok("audit", "--verify")
    assert trail["ok"] and sorted(s["role"] for s in trail["signers"].values()) == ["dock", "office"]


def test_index_commands_reindex_case_paging_and_daily_verify(office, tmp_path):
    """The office's index through the CLI, on both backends: a second office machine builds
    its own index from the store alone and sees the same; a case by its Aktenzeichen; pages."""
    first, second = recordings(office)
    office.ok("hold", "--recording", first["id"], "--reason", "straf", "--case", "AZ 77/26", "--by", "anna")
    office.ok("hold", "--recording", second["id"], "--reason", "owi", "--case", "az 77-26", "--by", "anna")
    case = office.ok("case", "--case", "AZ 77/26")
    assert [r["id"] for r in case["recordings"]] == [first["id"], second["id"]]
    other = tmp_path / "other-office-index"
    code, built = office.run("reindex")
    assert code == 0 and built["usable"] and built["recordings"] == 2 and built["read"]["problems"] == []
    elsewhere = Office(office.url, office.key, office.store, office.capsys, office.backend, office.s3)
    elsewhere_rows = _run_with_index(elsewhere, other, "list")["recordings"]
    assert elsewhere_rows == office.ok("list")["recordings"]
    assert _run_with_index(elsewhere, other, "reindex", "--status")["audit_seq"] == office.audit_count()
    page1 = office.ok("list", "--limit", "1")
    assert page1["total"] == 2 and len(page1["recordings"]) == 1 and page1["next"]
    page2 = office.ok("list", "--limit", "1", "--after", page1["next"])
    assert [r["id"] for r in page1["recordings"] + page2["recordings"]] == [first["id"], second["id"]]
    assert page2["next"] is None
    assert office.ok("list", "--case", "77")["total"] == 2 and office.ok("list", "--reason", "owi")["total"] == 1
    daily = office.ok("verify", "--since", (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat())
    assert daily["ok"] and {r["id"] for r in daily["recordings"]} == {first["id"], second["id"]}
    newest = office.ok("audit", "--limit", "2")
    assert [e["seq"] for e in newest["entries"]] == [newest["total"] - 1, newest["total"]]
    older = office.ok("audit", "--limit", "2", "--before", str(newest["entries"][0]["seq"]))
    assert [e["seq"] for e in older["entries"]] == [newest["total"] - 3, newest["total"] - 2]


def _run_with_index(o: Office, index: Path, *args: str) -> dict:
    o.capsys.readouterr()
    code = evidence_main(["--store", o.url, "--key", str(o.key), "--index", str(index), "--json", *args])
    out = o.capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_purge_deletes_exactly_the_expired_unheld_recordings(office):
    held, other = recordings(office)
    office.ok("hold", "--recording", held["id"], "--reason", "straf", "--case", "AZ 12/26", "--by", "anna")
    end = dt.datetime.fromisoformat(other["end_utc"])
    early = office.ok("purge", "--now", (end + dt.timedelta(days=13, hours=23)).isoformat())
    # nothing is due: both are within retention (counted, not listed: a city holds 25,000 of them)
    assert early == {"deleted": [], "kept": [], "within_retention": 2}
    after = (end + dt.timedelta(days=14, seconds=1)).isoformat()
    result = office.ok("purge", "--now", after)
    assert result["deleted"] == [other["id"]]
    assert result["kept"] == [{"id": held["id"], "reason": "held: straf AZ 12/26"}]
    assert not any(office.footage_present("test-cam", s) for s in other["segments"])
    assert all(office.footage_present("test-cam", s) for s in held["segments"])
    assert office.ok("purge", "--now", after) == {"deleted": [], "kept": result["kept"],  # idempotent
                                                  "within_retention": 0}
    verified = office.ok("verify")  # deleted on record is not a problem; the chain still verifies
    assert verified["ok"] and [r["deleted"] for r in verified["recordings"]] == [False, True]
    if office.backend == "s3":  # the store itself refuses: legal hold beats even the office's bypass
        c = s3_client(office.s3, "office")
        key = f"kod/devices/test-cam/segments/{held['segments'][0]:08d}.ts.age"
        version = c.head_object(Bucket=office.store.bucket, Key=key)["VersionId"]
        assert c.get_object_legal_hold(Bucket=office.store.bucket, Key=key)["LegalHold"]["Status"] == "ON"
        with pytest.raises(Exception, match="AccessDenied"):
            c.delete_object(Bucket=office.store.bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
    # Released, it goes at the next purge.
    office.ok("release", "--recording", held["id"], "--reason", "straf", "--why", "Verfahren eingestellt",
              "--by", "sup.schmidt")
    assert office.ok("purge", "--now", after)["deleted"] == [held["id"]]


def test_retention_cannot_be_bypassed(office, tmp_path, capsys):
    """As a hostile user would try it: purge in the future, shorten the retention alone,
    turn a real store into a demo store, lift a criminal-proceedings hold alone or without
    a reason. Nothing is deleted, nothing is released; every try is on record or refused."""
    first, second = recordings(office)
    # a real store (not made with --demo): purge may not look into the future
    key = keys.create_device_key(tmp_path / "k2", name="office").private
    real = str(tmp_path / "real")
    assert evidence_main(["--store", real, "--key", str(key), "init", "--supervisor", "sl.x", "--by", "admin"]) == 0
    capsys.readouterr()
    assert evidence_main(["--store", real, "--key", str(key), "purge", "--now", "2099-01-01T00:00Z"]) == 2
    assert "never the future" in capsys.readouterr().err
    assert evidence_main(["--store", real, "--key", str(key), "init", "--demo", "--by", "admin"]) == 2
    assert "cannot become one" in capsys.readouterr().err
    # shortening the retention of stored recordings: two people, one a supervisor
    proposed = office.ok("init", "--retention-days", "1", "--supervisor", "sup.schmidt", "--by", "anna")
    assert proposed["retention_days"] == 14 and proposed["waiting_for"]
    again = office.ok("init", "--retention-days", "1", "--supervisor", "sup.schmidt", "--by", "anna")
    assert again["retention_days"] == 14                                          # the same person again: no
    code, out = office.run("init", "--retention-days", "1", "--supervisor", "sup.schmidt", "--by", "bert")
    assert code == 2 and "needs a supervisor" in out["stderr"]                    # two clerks: no
    assert office.ok("list")["recordings"][0]["expires_utc"] == first["expires_utc"]
    done = office.ok("init", "--retention-days", "1", "--supervisor", "sup.schmidt", "--by", "sup.schmidt")
    assert done["retention_days"] == 1
    assert office.ok("init", "--retention-days", "30", "--supervisor", "sup.schmidt", "--by", "anna")[
        "retention_days"] == 30                                                   # lengthening: at once
    # a criminal-proceedings hold: a clerk only asks; a reason is always needed
    office.ok("hold", "--recording", first["id"], "--reason", "straf", "--case", "AZ 9/26", "--by", "anna")
    code, out = office.run("release", "--recording", first["id"], "--reason", "straf", "--why", "  ", "--by", "anna")
    assert code == 2 and "--why" in out["stderr"]
    asked = office.ok("release", "--recording", first["id"], "--reason", "straf", "--why", "eingestellt",
                      "--by", "anna")
    assert asked["held"] and asked["waiting_for"] == "supervisor"
    assert office.ok("list", "--held")["total"] == 1
    released = office.ok("release", "--recording", first["id"], "--reason", "straf", "--why", "StA: eingestellt",
                         "--by", "sup.schmidt")
    assert not released["held"]
    trail = office.ok("audit", "--limit", "3")["entries"]
    assert [e["action"] for e in trail[-2:]] == ["approve-release", "release"]
    assert trail[-1]["details"] == {"reason": "straf", "why": "StA: eingestellt", "requested_by": "anna"}


def test_early_deletion_needs_the_officer_and_a_supervisor(office):
    rec, _ = recordings(office)
    officer = rec["officer"]
    code, err = office.run("delete", "--recording", rec["id"], "--by", "somebody")
    assert code == 2 and "may not approve" in err["stderr"]
    first = office.ok("delete", "--recording", rec["id"], "--by", officer)
    assert first["deleted"] is False and first["waiting_for"] == "supervisor"
    assert office.ok("delete", "--recording", rec["id"], "--by", officer)["deleted"] is False  # same again
    assert all(office.footage_present("test-cam", s) for s in rec["segments"])
    if office.backend == "s3":  # without the office's bypass, the object lock refuses a plain delete
        c = s3_client(office.s3, "office")
        key = f"kod/devices/test-cam/segments/{rec['segments'][0]:08d}.ts.age"
        version = c.head_object(Bucket=office.store.bucket, Key=key)["VersionId"]
        with pytest.raises(Exception, match="AccessDenied"):
            c.delete_object(Bucket=office.store.bucket, Key=key, VersionId=version)
    done = office.ok("delete", "--recording", rec["id"], "--by", "sup.schmidt")
    assert done["deleted"] is True and done["approvals"] == {"officer": officer, "supervisor": "sup.schmidt"}
    assert not any(office.footage_present("test-cam", s) for s in rec["segments"])
    trail = [(e["action"], e["by"]) for e in office.ok("audit")["entries"] if e["recording"] == rec["id"]]
    assert trail == [("approve-delete", officer), ("approve-delete", "sup.schmidt"), ("delete", "sup.schmidt")]
    assert office.ok("verify")["ok"]


def test_a_held_recording_cannot_be_deleted(office):
    rec, _ = recordings(office)
    office.ok("hold", "--recording", rec["id"], "--reason", "affected-request", "--case", "Antrag 7", "--by", "anna")
    before = office.audit_count()
    code, err = office.run("delete", "--recording", rec["id"], "--by", rec["officer"])
    assert code == 2 and "held" in err["stderr"] and office.audit_count() == before


def test_export_opens_in_stock_tools_with_its_report(office, authority, tmp_path):
    rec, _ = recordings(office)
    out = tmp_path / "export" / "rec.mp4"
    out.parent.mkdir()
    result = office.ok("export", "--recording", rec["id"], "--identity", str(authority[0]), "--out", str(out),
                       "--by", "anna")
    probe = json.loads(subprocess.run(
        [need("ffprobe"), "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,nb_read_frames,duration:format=format_name,duration", "-of", "json", str(out)],
        check=True, capture_output=True, text=True).stdout)
    stream = probe["streams"][0]
    assert "mp4" in probe["format"]["format_name"] and stream["codec_name"] == "h264"
    assert int(stream["nb_read_frames"]) == rec["frames"] == result["frames"]
    assert abs(float(probe["format"]["duration"]) - result["duration_s"]) < 0.1
    assert abs(result["duration_s"] - rec["duration_s"]) < 0.2
    report = json.loads((tmp_path / "export" / "rec.report.json").read_text())
    assert report["recording"]["all_signatures_verified"] and report["export"]["sha256"] == result["sha256"]
    assert all(s["receipts"] and s["receipts"][0]["signature_verified"] for s in report["segments"])
    page = (tmp_path / "export" / "rec.report.html").read_text()
    assert rec["id"] in page and "Beweisbericht" in page and "Alle Signaturen geprüft" in page  # German
    # signers in words (the office's key is "the evidence office", not "office"), actions and their details
    # in German sentences, durations as a player shows them, no path of this machine
    assert "unbekannt" not in page and "Beweismittelstelle" in page and "Beweismittelstelle office" not in page
    assert ">Export<" in page and "Als MP4 mit Bericht exportiert." in page and ">export<" not in page
    assert f"0:{round(result['duration_s']):02d} (" in page and " s</td>" not in page.split("Dauer")[1][:40]
    assert str(tmp_path) not in page and (office.url if office.backend == "fs" else "/nonexistent") not in page
    assert report["language"] == "de" and report["labels"]["recording.officer"] == "Einsatzkraft"
    assert office.ok("audit")["entries"][-1]["action"] == "export"
    assert result["verification_problems"] == [] and result["excluded_segments"] == []
    # A segment lost from the store: the rest is exported, and the report names the gap.
    admin = office.store if office.backend == "fs" else S3EvidenceStore(office.url, client=s3_client(office.s3,
                                                                                                     "office"))
    lost = rec["segments"][1]
    admin.backend.destroy(admin.footage_key("test-cam", lost))
    gap = office.ok("export", "--recording", rec["id"], "--identity", str(authority[0]), "--out",
                    str(tmp_path / "export" / "gap.mp4"), "--by", "anna")
    assert gap["excluded_segments"] == [lost] and gap["frames"] < result["frames"]
    assert any("footage missing" in p for p in gap["verification_problems"])
    assert "NICHT EXPORTIERT" in (tmp_path / "export" / "gap.report.html").read_text()
    english = office.ok("export", "--recording", rec["id"], "--identity", str(authority[0]), "--out",
                        str(tmp_path / "export" / "en.mp4"), "--by", "anna", "--lang", "en")
    assert "Evidence report" in Path(english["report_html"]).read_text()
    # Bad input: nothing written, nothing recorded.
    before = office.audit_count()
    wrong = keys.create_authority(tmp_path / "other", name="other").identity
    for args in (["--identity", str(wrong), "--out", str(tmp_path / "w.mp4")],
                 ["--identity", str(authority[0]), "--out", str(out)],
                 ["--identity", str(authority[0]), "--out", str(tmp_path / "w.avi")],
                 ["--identity", str(tmp_path / "missing.key"), "--out", str(tmp_path / "w.mp4")]):
        code, err = office.run("export", "--recording", rec["id"], *args, "--by", "anna")
        assert code == 2, (args, err)
    assert not (tmp_path / "w.mp4").exists() and office.audit_count() == before
    # The identity protected with a passphrase (docs/keys.md): asked for, here on stdin.
    from common import custody
    protected = tmp_path / "authority.key.age"
    protected.write_bytes(custody.protect(keys.load_identity(authority[0]), "correct horse battery staple"))
    import io
    import sys
    errors = {}
    for passphrase, code_wanted in (("wrong passphrase here", 2), ("correct horse battery staple", 0)):
        real_stdin, sys.stdin = sys.stdin, io.StringIO(passphrase + "\n")
        try:
            code, err = office.run("export", "--recording", rec["id"], "--identity", str(protected), "--out",
                                   str(tmp_path / "export" / f"p{code_wanted}.mp4"), "--by", "anna")
        finally:
            sys.stdin = real_stdin
        assert code == code_wanted, err
        errors[code] = err
    assert "passphrase does not open" in errors[2]["stderr"]
    assert (tmp_path / "export" / "p0.mp4").exists() and not (tmp_path / "export" / "p2.mp4").exists()


def test_bad_input_changes_nothing(office, tmp_path):
    rec, _ = recordings(office)
    before = office.audit_count()
    for args in (["show", "--recording", "nope", "--by", "anna"],
                 ["hold", "--recording", rec["id"], "--reason", "straf", "--case", " ", "--by", "anna"],
                 ["hold", "--recording", "nope", "--reason", "straf", "--case", "x", "--by", "anna"],
                 ["release", "--recording", rec["id"], "--reason", "owi", "--why", "x", "--by", "anna"],
                 ["delete", "--recording", "nope", "--by", "anna"],
                 ["verify", "--recording", "nope"],
                 ["audit", "--verify", "--expect", "garbage"]):
        code, err = office.run(*args)
        assert code == 2, (args, err)
    with pytest.raises(SystemExit) as exc:  # argparse: a reason that is not one, a user name that is not one
        office.run("hold", "--recording", rec["id"], "--reason", "because", "--case", "x", "--by", "anna")
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        office.run("show", "--recording", rec["id"], "--by", "a b")
    code, err = office.run("show", "--recording", rec["id"], "--by", "anna", key=False)
    assert code == 2 and "signing key" in err["stderr"]
    other = keys.create_device_key(tmp_path / "k2", name="x").private
    code = evidence_main(["--store", office.url, "--key", str(other), "show", "--recording", rec["id"], "--by", "a"])
    assert code == 2 and office.audit_count() == before


def test_audit_trail_tampering_is_detected(office, tmp_path):
    rec, _ = recordings(office)
    office.ok("show", "--recording", rec["id"], "--by", "anna")
    office.ok("show", "--recording", rec["id"], "--by", "bert")
    good = office.ok("audit", "--verify")
    assert good["ok"] and good["count"] == 4
    head = good["head"]
    backend = office.store.backend
    original = backend.read("audit/000000000003.cbor")
    altered = original.replace(b"anna", b"anne")
    assert altered != original
    if office.backend == "fs":
        path = Path(backend.where("audit/000000000003.cbor"))
        path.chmod(0o644)
        path.write_bytes(altered)
    else:  # the office's credentials can write a newer version over it; the trail still shows it
        s3_client(office.s3, "office").put_object(Bucket=office.store.bucket, Key="kod/audit/000000000003.cbor",
                                                  Body=altered)
    code, bad = office.run("audit", "--verify")
    assert code == 1 and any("000000000003" in p for p in bad["problems"])
    if office.backend == "fs":  # a record taken out of the middle, and one cut off the end
        path.write_bytes(original)
        assert office.ok("audit", "--verify")["ok"]
        Path(backend.where("audit/000000000002.cbor")).unlink()
        code, bad = office.run("audit", "--verify")
        assert code == 1 and "records were deleted" in bad["problems"][0]
        shutil.rmtree(Path(backend.where("audit")))
        (Path(backend.where("audit"))).mkdir()
        code, bad = office.run("audit", "--verify", "--expect", head)
        assert code == 1 and "cut off" in bad["problems"][-1]


def test_store_that_is_not_one(tmp_path, capsys, s3, monkeypatch):
    key = keys.create_device_key(tmp_path / "k", name="office").private
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    for name, value in (("AWS_ENDPOINT_URL", s3), ("AWS_ACCESS_KEY_ID", "office"),
                        ("AWS_SECRET_ACCESS_KEY", CREDENTIALS["office"]), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    for store in (str(tmp_path / "empty"), str(tmp_path / "missing"), str(tmp_path / "file"), "s3://no-such-bucket",
                  "s3://", "ftp://x", "s3://b?x=1"):
        capsys.readouterr()
        assert evidence_main(["--store", store, "--key", str(key), "list"]) == 2, store
        err = capsys.readouterr().err
        assert err.startswith("bodycam-evidence: error:") and "Traceback" not in err
    assert not (tmp_path / "missing").exists()


def test_cli_as_a_process_with_office_key_from_the_environment(tmp_path):
    key = keys.create_device_key(tmp_path / "k", name="office").private
    exe = Path(sys.executable).parent / "bodycam-evidence"
    env = {**os.environ, "BODYCAM_OFFICE_KEY": str(key)}
    run = subprocess.run([str(exe), "--store", str(tmp_path / "ev"), "init", "--supervisor", "s1"], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([str(exe), "--store", str(tmp_path / "ev"), "list", "--json"], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0 and json.loads(run.stdout) == {"recordings": [], "total": 0, "next": None, "problems": []}


def test_s3_store_going_away_mid_offload_loses_nothing(env, identity, tmp_path, s3, bucket):
    """The dock uploads through a relay that is cut mid-offload: the bay waits and retries,
    nothing is receipted (nothing freed) while the store is away, then all arrives."""
    relay = Relay(int(s3.rsplit(":", 1)[1]))
    env.store = S3EvidenceStore(f"s3://{bucket}", client=s3_client(relay.endpoint, "dock"))
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT, run_until=24)
    before = on_camera(sim)
    during: list[list[str]] = []

    def cut_then_restore() -> None:
        while relay.upstream_bytes < 60_000:
            threading.Event().wait(0.001)
        relay.cut()
        while relay.refused < 3:  # the dock keeps trying, with backoff
            threading.Event().wait(0.005)
        during.append(on_camera(sim))
        relay.restore()

    t = threading.Thread(target=cut_then_restore, daemon=True)
    t.start()
    try:
        bay, _ = dock(env, sim)
    finally:
        relay.close()
    assert during == [before], "nothing may be freed while the store is away"
    assert bay.status.state == "done", bay.status
    assert on_camera(sim) == []
    direct = S3EvidenceStore(f"s3://{bucket}", client=s3_client(s3, "dock"))
    assert direct.segments("test-cam") == sorted(int(n[:8]) for n in before if n.endswith(".manifest"))


def test_demo_shift_into_s3_initialised_by_the_office(tmp_path, s3):
    """``bodycam-sim demo --store s3://bucket``: init (Object Lock) by the office, the shift
    end into it, the summary read back from S3; a second run into the same store is refused."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "AWS_ENDPOINT_URL": s3, "AWS_ACCESS_KEY_ID": "office",
           "AWS_SECRET_ACCESS_KEY": CREDENTIALS["office"], "AWS_DEFAULT_REGION": "us-east-1"}
    argv = [sys.executable, "-m", "simulator.cli", "demo", "--workdir", str(tmp_path / "demo"), "--devices", "2",
            "--store", "s3://demo-shift/kod", "--json"]
    done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["store"] == "s3://demo-shift/kod" and len(out["recordings"]) >= 2
    assert all(r["verified"] for r in out["recordings"]) and [d["segments_left"] for d in out["devices"]] == [0, 0]
    lock = s3_client(s3, "office").get_object_lock_configuration(Bucket="demo-shift")["ObjectLockConfiguration"]
    assert lock["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 14}
    again = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "already holds evidence" in again.stderr


def test_interrupted_deletion_is_reported_and_finished_by_a_rerun(office, monkeypatch):
    """Killed between the deletion record and the last destroyed segment: verify names the
    leftover footage, and purge (or delete again) finishes the job."""
    rec, _ = recordings(office)
    office.ok("delete", "--recording", rec["id"], "--by", rec["officer"])
    backend = type(office.store.backend)  # the CLI opens its own store: patch the class
    real = backend.destroy
    calls: list[str] = []

    def dies_after_one(self, key: str) -> None:
        if calls:
            raise KeyboardInterrupt("killed")  # what SIGKILL leaves: nothing after this point ran
        calls.append(key)
        real(self, key)
    monkeypatch.setattr(backend, "destroy", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        office.run("delete", "--recording", rec["id"], "--by", "sup.schmidt")
    monkeypatch.setattr(backend, "destroy", real)
    assert len(rec["segments"]) > 1 and len(calls) == 1
    code, report = office.run("verify")
    assert code == 1 and "still in the store" in " ".join(report["recordings"][0]["problems"])
    assert office.ok("purge")["deleted"] == []  # not purged again: finished, quietly
    assert office.ok("verify")["ok"]
    assert not any(office.footage_present("test-cam", s) for s in rec["segments"])


def test_concurrent_audit_appends_keep_one_unbroken_chain(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from evidence import audit
    store = FsEvidenceStore(tmp_path / "ev")
    signers = [Ed25519PrivateKey.generate() for _ in range(4)]
    for i, k in enumerate(signers):
        store.register_key("office", f"desk-{i}", k.public_key())

    def writer(k) -> None:
        for n in range(15):
            audit.append(store, k, "view", by="x", recording=str(n), now_us=n)
    threads = [threading.Thread(target=writer, args=(k,)) for k in signers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report = audit.verify(store)
    assert report.ok and report.count == 60, report.problems


def test_people_read_users_and_the_trail_check_without_raw_structures(tmp_path, capsys, monkeypatch):
    """`users list` and `audit --verify` in words, one line each, no JSON on the terminal."""
    import io
    key = keys.create_device_key(tmp_path / "office-keys", name="office").private
    base = ["--store", str(tmp_path / "ev"), "--key", str(key)]
    assert evidence_main([*base, "init", "--supervisor", "sl", "--by", "anna"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("ein langes passwort 1\n"))
    assert evidence_main([*base, "users", "add", "--id", "neu.clerk", "--role", "clerk"]) == 0
    capsys.readouterr()
    assert evidence_main([*base, "users", "list"]) == 0
    out = capsys.readouterr().out
    assert out.split() == ["neu.clerk", "clerk", "active"]
    assert evidence_main([*base, "audit", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "signers: office office (" in out and "{" not in out and "[" not in out.replace("problems: []", "")


def test_a_file_moved_in_across_mounts_is_copied_checked_and_only_then_removed(tmp_path, monkeypatch):
    """Under ProtectSystem=strict the dock's state and the store are separate mounts even on
    one filesystem: rename fails with EXDEV (seen on the booted system). The store copies,
    checks the hash it was promised, and removes the source only after."""
    import errno
    import hashlib
    from evidence import fs
    from evidence.errors import StoreConflict
    from evidence.fs import FsBackend
    store = FsBackend(tmp_path / "store")
    real = os.replace

    def cross_device(src, dst):
        if str(src).startswith(str(tmp_path / "incoming")):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)
    monkeypatch.setattr(fs.os, "replace", cross_device)
    (tmp_path / "incoming").mkdir()
    src = tmp_path / "incoming" / "seg.part"
    src.write_bytes(b"footage" * 1000)
    where = store.put_once("devices/cam/seg", src, hashlib.sha256(b"footage" * 1000).digest())
    assert Path(where).read_bytes() == b"footage" * 1000 and not src.exists()
    # bytes that are not what the dock hashed: refused, the source kept, nothing staged left
    src.write_bytes(b"other")
    with pytest.raises(StoreConflict):
        store.put_once("devices/cam/seg2", src, hashlib.sha256(b"expected").digest())
    assert src.exists() and not store.exists("devices/cam/seg2")
    assert list((tmp_path / "store" / ".staging").iterdir()) == []


def test_a_shared_store_makes_every_new_folder_group_writable_whatever_the_umask(tmp_path):
    """A dock and the office on one server share the store (flash.sh: 2770, group
    bodycam-evidence): a folder the office made with a technician's umask 022 must still take
    the dock's files."""
    root = tmp_path / "store"
    root.mkdir()
    os.chmod(root, 0o2770)
    old = os.umask(0o022)
    try:
        from evidence.fs import FsBackend
        FsBackend(root).replace("audit/0001.cbor", b"x")
    finally:
        os.umask(old)
    for d in (root / "audit", root / ".staging"):
        assert d.stat().st_mode & 0o7777 == 0o2770, d
