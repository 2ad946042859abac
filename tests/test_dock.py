"""The dock and the camera, end to end over real ptys (socat), with real keys and files.

Camera: the whole simulated runtime, its link service answering on its side of the
cable. Dock: a bay worker (or the hotplug service) on the other side.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from common import age_format, keys, link_auth, signed
from common.manifest import read_manifest
from device import config as device_config
from device.identity import DeviceIdentity
from dock import config as dock_config
from dock.bay import Bay
from evidence.store import FsEvidenceStore
from dock.registry import Registry, RegistryError
from dock.session import DockSession, Refused
from simulator.device_sim import SimDevice
from simulator.docking import serve_docked
from simulator.serial_link import PtyCable
from common.link import Link, open_port


@dataclass
class Env:
    root: Path
    dock_key: Path
    dock_pub: Path
    registry: Registry
    store: FsEvidenceStore
    staging: Path
    watch: Path
    config: dock_config.DockConfig


@pytest.fixture
def env(tmp_path, key_dir) -> Env:
    dk = keys.create_device_key(tmp_path / "dock-keys", name="dock")
    (tmp_path / "dock.toml").write_text(
        f'[dock]\nid = "dock-test"\nkey = "{dk.private}"\nstate = "state"\nstore = "evidence"\n'
        f'watch = "by-id"\n[transfer]\ntimeout_s = 5\nwindow = 8\n')
    config = dock_config.load(tmp_path / "dock.toml")
    registry = Registry(tmp_path / "state")
    registry.enroll("test-cam", key_dir / "device.pub.pem")
    registry.add_officer("KOD-7", "Erika Muster", "2026-01-15")
    registry.assign("test-cam", "KOD-7")
    return Env(tmp_path, dk.private, dk.public, registry, FsEvidenceStore(tmp_path / "evidence"),
               tmp_path / "state" / "incoming", tmp_path / "by-id", config)


def camera(tmp: Path, identity: DeviceIdentity, dock_pubs: list[Path], steps: list[dict], *,
           run_until: float, segment_seconds: float = 2, name: str = "cam") -> SimDevice:
    cfg = device_config.from_dict({
        "camera": {"width": 320, "height": 240, "fps": 15, "bitrate": 400_000, "audio": False},
        "recording": {"pre_record_seconds": 1, "segment_seconds": segment_seconds},
        "storage": {"warn_free_mb": 100, "full_free_mb": 20}, "device": {"store": "store"},
        "link": {"dock_keys": [str(p) for p in dock_pubs]}}, base_dir=tmp / name)
    sim = SimDevice.create(cfg, identity, noise=30)
    sim.runtime.boot()
    for s in steps:
        sim.schedule(s)
    sim.run_until(run_until)
    return sim


SHIFT = [{"at": 2, "action": "press"}, {"at": 9, "action": "hold", "seconds": 3.2},
         {"at": 14, "action": "double"}, {"at": 19, "action": "hold", "seconds": 3.2}]


def dock(env: Env, sim: SimDevice, *, key: Path | None = None, cut_after: int | None = None,
         node: str = "usb-bodycam-test-cam", unplug_when_waiting: list[str] | None = None) -> tuple[Bay, str]:
    """One docking: cable, camera serving in a thread, a bay worker; returns (bay, camera's end)."""
    cam_node = env.root / "cam" / f"{node}.tty"
    cable = PtyCable(env.watch / node, cam_node)
    ended: list[str] = []
    t = threading.Thread(target=lambda: ended.append(serve_docked(sim, cam_node, timeout_s=60)))
    t.start()
    bay = Bay(str(env.watch / node), key=keys.load_signing_key(key or env.dock_key), dock_id="dock-test",
              registry=env.registry, store=env.store, staging=env.staging, window=8, timeout=5,
              retry_s=0.05, retry_max_s=0.2)
    if unplug_when_waiting is not None:
        def watch_store() -> None:
            while bay.status.state != "waiting for store" and not done.is_set():
                threading.Event().wait(0.005)
            waited.append(bay.status.message)
            cable.unplug()
        done, waited = threading.Event(), unplug_when_waiting
        threading.Thread(target=watch_store, daemon=True).start()
    if cut_after is not None:
        # pulled in the bay's own thread as the byte count passes cut_after: a watcher thread
        # polling the count lost that race on a loaded CI machine (the whole segment arrived first)
        from dock.offload import Progress

        class PullAt(Progress):
            def add(self, n: int) -> None:
                super().add(n)
                if self.done >= cut_after and not pulled:
                    pulled.append(True)
                    cable.unplug()
        pulled: list[bool] = []
        bay.progress = PullAt()
    bay.start()
    bay.join(60)
    if unplug_when_waiting is not None:
        done.set()
    cable.unplug()
    t.join(60)
    return bay, ended[0] if ended else "?"


def start_serving(sim: SimDevice, cam_node: Path, timeout_s: float = 30) -> threading.Thread:
    """The camera starts answering on its end of the cable; returns once it listens (opening a
    serial port flushes what is waiting, so a request sent earlier would be lost)."""
    before = sim.runtime.link
    t = threading.Thread(target=serve_docked, args=(sim, cam_node), kwargs={"timeout_s": timeout_s})
    t.start()
    deadline = threading.Event()
    for _ in range(2000):
        if sim.runtime.link is not before:
            return t
        deadline.wait(0.005)
    raise AssertionError("the camera did not start serving")


def on_camera(sim: SimDevice) -> list[str]:
    return sorted(p.name for p in sim.runtime.store.dir.iterdir())


def kinds(sim: SimDevice) -> list[str]:
    return [e["kind"] for e in sim.runtime.events.entries]


def test_full_offload_frees_the_camera_only_after_receipts(env, identity, device_public, authority, tmp_path):
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT, run_until=24)
    listed = sorted(p.name for p in sim.runtime.store.dir.glob("*.manifest"))
    assert len(listed) >= 6
    bay, ended = dock(env, sim)
    assert ended == "bye" and bay.status.state == "done", bay.status
    report = bay.report
    assert report.stored == report.freed == list(range(1, len(listed) + 1))
    assert on_camera(sim) == []  # every segment freed, after its receipt
    assert env.store.segments("test-cam") == report.stored
    receipts = sorted((env.root / "evidence/devices/test-cam/receipts").glob("segment-*.cbor"))
    assert len(receipts) == len(listed)
    body = signed.open_signed(receipts[0].read_bytes(), keys.load_verify_key(env.dock_pub))
    assert body["command"] == "receipt" and body["device_id"] == "test-cam" and body["seq"] == 1
    stored_dir = env.root / "evidence/devices/test-cam/segments"
    m1 = read_manifest((stored_dir / "00000001.manifest").read_bytes(), device_public)
    assert body["sha256"] == m1.sha256
    k = kinds(sim)
    assert k.count("segment_freed") == len(listed) and "clock_set" in k and "officer_assigned" in k
    assert "events_freed" in k and report.events_stored > 10
    assert sim.runtime.identity.officer_id == "KOD-7"
    # What the store holds verifies as the camera's chain, byte for byte.
    from common.manifest import verify_manifest_chain
    records = [p.read_bytes() for p in sorted(stored_dir.glob("*.manifest"))]
    ms = verify_manifest_chain(records, device_public, prev=None, first_seq=1)
    for m in ms:
        assert hashlib.sha256((stored_dir / m.file).read_bytes()).digest() == m.sha256
    assert age_format.recover((stored_dir / ms[0].file).read_bytes(), authority[1]).complete
    # The camera's own event log now starts after what the dock took.
    records, _ = signed.split_sequence(sim.runtime.events.path.read_bytes())
    assert signed.open_signed(records[0], None)["seq"] > report.events_stored


def test_next_recording_carries_officer_and_clock_offset(env, identity, tmp_path, device_public):
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done"
    sim.runtime.undock()
    sim.schedule({"at": 16, "action": "double"})
    sim.schedule({"at": 19, "action": "hold", "seconds": 3.2})
    sim.run_until(24)
    m = read_manifest(sorted(sim.runtime.store.dir.glob("*.manifest"))[-1].read_bytes(), device_public)
    assert m.officer_id == "KOD-7"
    assert m.clock is not None and m.clock["dock_id"] == "dock-test" and isinstance(m.clock["offset_us"], int)
    assert [e for e in sim.runtime.events.entries if e["kind"] == "clock_set"][0]["data"]["offset_us"] == \
        m.clock["offset_us"]


def test_link_cut_mid_transfer_resumes_at_the_next_docking(env, identity, tmp_path):
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14, segment_seconds=30)
    (segment,) = sim.runtime.store.dir.glob("*.ts.age")
    size = segment.stat().st_size
    assert size > 600_000
    bay, ended = dock(env, sim, cut_after=size // 2)
    assert bay.status.state == "unplugged" and ended == "unplugged", bay.status
    assert "resumes" in bay.status.message
    assert segment.exists() and env.store.segments("test-cam") == []  # nothing freed, nothing stored
    part = env.staging / "test-cam" / f"{segment.name}.part"
    staged = part.stat().st_size
    assert 0 < staged < size
    again, ended = dock(env, sim)
    assert again.status.state == "done" and ended == "bye", again.status
    assert again.report.bytes == size - staged  # resumed, not restarted
    assert env.store.segments("test-cam") == [1] and not segment.exists()


def test_unenrolled_dock_can_neither_free_nor_set_time(env, identity, tmp_path):
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    before = on_camera(sim)
    rogue = keys.create_device_key(tmp_path / "rogue", name="dock")
    bay, _ = dock(env, sim, key=rogue.private)
    assert bay.status.state == "refused" and "not enrolled" in bay.status.message
    assert on_camera(sim) == before and sim.runtime.clock.offset_us == 0
    assert "dock_refused" in kinds(sim)
    # Talking straight to the camera without authenticating: every request refused.
    cam_node = tmp_path / "cam" / "direct.tty"
    with PtyCable(tmp_path / "by-id" / "direct", cam_node) as cable:
        t = start_serving(sim, cam_node, 20)
        session = DockSession(Link(open_port(str(cable.dock_node))), keys.load_signing_key(rogue.private),
                              "rogue", lambda d: identity.signing_key.public_key(), timeout=5)
        fake = link_auth.sign_command(keys.load_signing_key(rogue.private), "rogue", bytes(32), "receipt",
                                      device_id="test-cam", kind="segment", seq=1, file="00000001.ts.age",
                                      sha256=bytes(32), size=1, location="x", stored_utc_us=1)
        for op, args in (("receipt", {"record": fake}), ("set_time", {"record": fake}), ("list", {}),
                         ("read", {"file": "events.cbors", "offset": 0, "length": 10})):
            with pytest.raises(Refused) as refused:
                session.call(op, args)
            assert refused.value.code == "not_authenticated"
        with pytest.raises(Refused, match="not enrolled"):
            session.handshake()
        with pytest.raises(Refused, match="authenticate first"):
            session.call("bye")
        cable.unplug()
        t.join(30)
    assert on_camera(sim) == before and sim.runtime.clock.offset_us == 0


def test_unenrolled_camera_is_refused_and_nothing_stored(env, tmp_path, authority):
    stranger = keys.create_device_key(tmp_path / "stranger")
    ident = DeviceIdentity.load("stranger-cam", stranger.private, [authority[2]])
    sim = camera(tmp_path, ident, [env.dock_pub], SHIFT[:2], run_until=14)
    bay, _ = dock(env, sim, node="usb-bodycam-stranger")
    assert bay.status.state == "refused" and "not enrolled" in bay.status.message
    assert not (env.root / "evidence" / "devices").exists()
    assert on_camera(sim)


def test_impostor_with_an_enrolled_id_is_refused(env, tmp_path, authority):
    impostor = keys.create_device_key(tmp_path / "impostor")
    ident = DeviceIdentity.load("test-cam", impostor.private, [authority[2]])
    sim = camera(tmp_path, ident, [env.dock_pub], SHIFT[:2], run_until=14)
    bay, _ = dock(env, sim)
    assert bay.status.state == "refused" and "not its enrolled key" in bay.status.message
    assert not (env.root / "evidence" / "devices").exists()


def test_corrupted_segment_is_quarantined_and_stays_on_the_camera(env, identity, tmp_path):
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT, run_until=24)
    victim = sorted(sim.runtime.store.dir.glob("*.ts.age"))[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    bay, _ = dock(env, sim)
    report = bay.report
    assert bay.status.state == "done with problems"
    (q,) = report.quarantined
    assert q["name"] == victim.name and "SHA-256" in q["reason"]
    assert victim.exists() and victim.name not in [f"{s:08d}.ts.age" for s in env.store.segments("test-cam")]
    assert (env.root / "evidence/quarantine/test-cam" / f"{victim.name}.reason.json").exists()
    assert len(report.stored) == report.listed - 1 and sorted(report.freed) == report.stored
    assert on_camera(sim) == sorted([victim.name, victim.name.replace(".ts.age", ".manifest")])


def test_replayed_receipts_are_refused(env, identity, tmp_path):
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT, run_until=24)
    first = sorted(sim.runtime.store.dir.glob("*.manifest"))[0]
    cam_node = tmp_path / "cam" / "replay.tty"
    dock_key = keys.load_signing_key(env.dock_key)
    with PtyCable(tmp_path / "by-id" / "replay", cam_node) as cable:
        t = start_serving(sim, cam_node, 30)
        s1 = DockSession(Link(open_port(str(cable.dock_node))), dock_key, "dock-test",
                         env.registry.device_key, timeout=5)
        s1.handshake()
        m = read_manifest(first.read_bytes(), None)
        fields = dict(device_id="test-cam", kind="segment", seq=m.seq, file=m.file, sha256=m.sha256, size=m.size,
                      location="x", stored_utc_us=1)
        receipt = s1.receipt_record(**fields)
        assert s1.call("receipt", {"record": receipt}) == {"freed": 1}
        # the same receipt again in its session (its answer lost on the cable): answered
        # alike, acting once
        assert s1.call("receipt", {"record": receipt}) == {"freed": 1}
        assert kinds(sim).count("segment_freed") == 1
        s2 = DockSession(s1.link, dock_key, "dock-test", env.registry.device_key, timeout=5)
        s2.handshake()
        m2 = read_manifest(sorted(sim.runtime.store.dir.glob("*.manifest"))[0].read_bytes(), None)
        old_session = link_auth.sign_command(dock_key, "dock-test", s1.session, "receipt",
                                             **{**fields, "seq": m2.seq, "file": m2.file, "sha256": m2.sha256,
                                                "size": m2.size})
        with pytest.raises(Refused, match="another session"):
            s2.call("receipt", {"record": old_session})
        wrong_hash = s2.receipt_record(**{**fields, "seq": m2.seq, "file": m2.file, "size": m2.size})
        with pytest.raises(Refused, match="another file"):
            s2.call("receipt", {"record": wrong_hash})
        s2.call("bye")
        t.join(30)
    assert (sim.runtime.store.dir / m2.file).exists()
    assert kinds(sim).count("receipt_refused") == 2


def test_store_failure_frees_nothing_and_the_bay_retries(env, identity, tmp_path, monkeypatch):
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    before = on_camera(sim)
    real, failures = env.store.put_segment, [0]
    freed_while_failing: list[list[str]] = []

    def flaky(*a, **k):
        if failures[0] < 3:  # the store is full/unreachable for a while
            failures[0] += 1
            freed_while_failing.append(on_camera(sim))
            raise OSError(28, "No space left on device")
        return real(*a, **k)
    monkeypatch.setattr(env.store, "put_segment", flaky)
    bay, _ = dock(env, sim)
    assert failures[0] == 3 and all(f == before for f in freed_while_failing)  # nothing freed meanwhile
    assert bay.status.state == "done" and on_camera(sim) == [], bay.status


def test_store_down_until_unplugged_frees_nothing(env, identity, tmp_path, monkeypatch):
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    before = on_camera(sim)

    def broken(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(env.store, "put_segment", broken)
    waited: list[str] = []
    bay, _ = dock(env, sim, unplug_when_waiting=waited)
    assert waited and "stays on the camera" in waited[0] and "retrying" in waited[0]
    assert bay.status.state == "unplugged"
    assert on_camera(sim) == before and "segment_freed" not in kinds(sim)


def test_hotplug_service_offloads_parallel_bays(env, identity, tmp_path, authority, capsys):
    from dock.hotplug import Dock, read_status
    other = keys.create_device_key(tmp_path / "cam2-keys")
    env.registry.enroll("cam-2", other.public)
    cams = [camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14, name="a"),
            camera(tmp_path, DeviceIdentity.load("cam-2", other.private, [authority[2]]), [env.dock_pub],
                   SHIFT[:2], run_until=14, name="b")]
    service = Dock(env.config)
    service.start()
    try:
        threads, cables = [], []
        for i, sim in enumerate(cams):
            cam_node = tmp_path / "cam" / f"{i}.tty"
            cables.append(PtyCable(env.watch / f"usb-bodycam-{i}", cam_node))
            threads.append(threading.Thread(target=serve_docked, args=(sim, cam_node), kwargs={"timeout_s": 60}))
            threads[-1].start()
        for t in threads:
            t.join(60)
    finally:
        for c in cables:
            c.unplug()
        service.stop()
    status = read_status(tmp_path / "state")
    assert sorted(b["device"] for b in status["bays"]) == ["cam-2", "test-cam"]
    import json
    from dock.cli import main as dock_main
    capsys.readouterr()
    assert dock_main(["--config", str(tmp_path / "dock.toml"), "status", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["dock_id"] == "dock-test" and len(printed["bays"]) == 2
    assert all(b["state"] == "done" for b in status["bays"]), json.dumps(status["bays"], indent=1)
    assert all(on_camera(sim) == [] for sim in cams)
    shutil.rmtree(tmp_path / "cam", ignore_errors=True)


def test_a_camera_that_answers_only_after_the_dock_first_knocked_is_tried_again_without_replug(
        env, identity, tmp_path):
    """A camera that boots in its bay (a power cut at the dock, a restart of its runtime)
    opens its port after the dock's first try timed out. The dock tries again, with backoff,
    while the camera stays plugged in (seen on the booted system: its footage stayed on the
    camera until someone re-docked it)."""
    import dataclasses
    import time
    from dock.hotplug import Dock, read_status
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    transfer = dataclasses.replace(env.config.transfer, timeout_s=1.0, retry_s=0.5, retry_max_s=1.0)
    service = Dock(dataclasses.replace(env.config, transfer=transfer))
    cam_node = tmp_path / "cam" / "late.tty"
    cable = PtyCable(env.watch / "usb-bodycam-late", cam_node)   # plugged in; the camera says nothing yet
    service.start()
    try:
        deadline = time.monotonic() + 30
        while not any(b["state"] == "not answering" for b in read_status(tmp_path / "state")["bays"]):
            assert time.monotonic() < deadline, read_status(tmp_path / "state")
            service.rescan()
            time.sleep(0.1)
        served = start_serving(sim, cam_node, timeout_s=60)    # the camera is up now: no re-plug
        while served.is_alive():
            service.rescan()
            time.sleep(0.1)
        assert on_camera(sim) == []
        assert read_status(tmp_path / "state")["bays"][-1]["state"] == "done"
    finally:
        cable.unplug()
        service.stop()


def test_demo_runs_a_shift_end_to_end(tmp_path):
    """The main job: cameras in their own processes, docked through ptys into parallel bays."""
    import json
    import subprocess
    import sys
    import os
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "simulator.cli", "demo", "--workdir", str(tmp_path / "demo"),
                           "--devices", "2", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    # the commands it prints run as printed (a shell without the venv on its PATH, no $USER)
    plain = {k: v for k, v in env.items() if k not in ("USER", "VIRTUAL_ENV")}
    plain["PATH"] = "/usr/bin:/bin"
    for what in ("list", "export"):
        assert "$" not in out[what]
        ran = subprocess.run(["bash", "-c", out[what]], cwd=tmp_path, env=plain, capture_output=True, text=True,
                             timeout=120)
        assert ran.returncode == 0, (what, out[what], ran.stderr[-2000:])
    assert "Stream #0:0" in ran.stderr and "h264" in ran.stderr   # ffprobe opened the export
    # the cameras' clocks agree with the wall clock: no segment ends after its receipt was
    # signed, nothing is dated after the demo ended (the shift is played back-dated)
    import time as _time
    store = FsEvidenceStore(Path(out["store"]))
    ended_us = _time.time_ns() // 1000
    for device in store.devices():
        receipts = {}
        for record in store.receipts(device):
            body = signed.open_signed(record, None)
            if body.get("kind") == "segment":
                receipts[body["seq"]] = body["stored_utc_us"]
        for seq in store.segments(device):
            m = read_manifest(store.manifest(device, seq), None)
            assert m.end_utc_us <= receipts[seq] <= ended_us, (device, seq, m.end_utc_us - receipts[seq])
    assert {"store", "identity", "recordings", "devices"} <= out.keys()
    recs = out["recordings"]
    assert {r["announced"] for r in recs} == {True, False}  # announced and emergency over the fleet
    assert all(r["verified"] and r["officer"] and r["segments"] and r["duration_s"] > 5 for r in recs)
    assert [d["segments_left"] for d in out["devices"]] == [0, 0] and not out["quarantine"]
    assert set(recs[0]) >= {"id", "device", "officer", "announced", "segments", "duration_s", "verified"}
    again = subprocess.run([sys.executable, "-m", "simulator.cli", "demo", "--workdir", str(tmp_path / "demo"),
                            "--devices", "1", "--json"], cwd=root, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and len(json.loads(again.stdout)["devices"]) == 1  # an earlier demo is replaced


def test_cli_refuses_to_assign_an_untrained_officer(tmp_path, key_dir, capsys):
    import json
    from dock.cli import main as dock_main
    cfg = tmp_path / "dock.toml"
    cfg.write_text('[dock]\nstate = "state"\n')
    base = ["--config", str(cfg)]
    assert dock_main([*base, "enroll", "--device-id", "cam-9", "--key", str(key_dir / "device.pub.pem")]) == 0
    assert dock_main([*base, "officers", "add", "--id", "KOD-9", "--name", "Neu Ling"]) == 0
    with pytest.raises(SystemExit) as refused:
        dock_main([*base, "assign", "--device", "cam-9", "--officer", "KOD-9"])
    assert refused.value.code == 2 and "no recorded body-cam training" in capsys.readouterr().err
    assert Registry(tmp_path / "state").assignments() == {}
    assert dock_main([*base, "officers", "add", "--id", "KOD-9", "--name", "Neu Ling", "--trained", "2026-05-04"]) == 0
    assert dock_main([*base, "assign", "--device", "cam-9", "--officer", "KOD-9"]) == 0
    capsys.readouterr()
    assert dock_main([*base, "officers", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"id": "KOD-9", "name": "Neu Ling", "trained": "2026-05-04",
                                                    "refresher_due": "2028-05-04"}]
    assert Registry(tmp_path / "state").assignments() == {"cam-9": "KOD-9"}
    # an officer who leaves: not while a camera is theirs
    with pytest.raises(SystemExit) as refused:
        dock_main([*base, "officers", "remove", "--id", "KOD-9"])
    assert refused.value.code == 2 and "is assigned cam-9" in capsys.readouterr().err
    assert dock_main([*base, "officers", "add", "--id", "KOD-10", "--name", "Nach Folger", "--trained",
                      "2026-06-01"]) == 0
    assert dock_main([*base, "assign", "--device", "cam-9", "--officer", "KOD-10"]) == 0
    assert dock_main([*base, "officers", "remove", "--id", "KOD-9"]) == 0
    assert [o.id for o in Registry(tmp_path / "state").officers()] == ["KOD-10"]


def test_a_lapsed_training_refuses_an_assignment_until_the_refresher(tmp_path, key_dir):
    import datetime as dt
    today = [dt.date(2027, 1, 31)]
    reg = Registry(tmp_path / "state", today=lambda: today[0])
    reg.enroll("cam-1", key_dir / "device.pub.pem")
    o = reg.add_officer("KOD-1", "A. Beispiel", "2026-01-31", refresher_months=13)
    assert o.refresher_due == "2027-02-28"                  # 31 January + 13 months: end of February
    reg.assign("cam-1", "KOD-1")
    today[0] = dt.date(2027, 2, 28)
    with pytest.raises(RegistryError, match="lapsed on 2027-02-28; record the refresher"):
        reg.assign("cam-1", "KOD-1")
    reg.add_officer("KOD-1", "A. Beispiel", "2027-02-27")   # the refresher
    reg.assign("cam-1", "KOD-1")
    with pytest.raises(RegistryError, match="refresher-months"):
        reg.add_officer("KOD-2", "B", "2027-01-01", refresher_months=0)


def test_dock_killed_between_store_and_anchor_resumes(env, identity, tmp_path):
    """A dock that dies after a segment reached the store but before its anchor moved: the
    next docking stores the same bytes again without error and frees the camera."""
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done"
    stored = env.store.segments("test-cam")
    # Put the camera's files back and the anchor before them: what a dock killed mid-way leaves.
    from evidence.store import Anchor, StoreConflict
    kept = env.store.anchor("test-cam")
    env.store.set_anchor("test-cam", Anchor(0, None, kept.event_seq, kept.event_prev))
    seg_dir = env.root / "evidence/devices/test-cam/segments"
    for seq in stored:
        for suffix in (".ts.age", ".manifest"):
            shutil.copy(seg_dir / f"{seq:08d}{suffix}", sim.runtime.store.dir)
    again, _ = dock(env, sim)
    assert again.status.state == "done", again.status.message
    assert again.report.stored == stored and on_camera(sim) == []
    # Different bytes under a stored name are refused, and nothing is replaced.
    other = tmp_path / "other.part"
    other.write_bytes(b"not the evidence")
    before = (seg_dir / "00000001.ts.age").read_bytes()
    with pytest.raises(StoreConflict):
        env.store.put_segment("test-cam", 1, (seg_dir / "00000001.manifest").read_bytes(), other)
    assert (seg_dir / "00000001.ts.age").read_bytes() == before


def test_dock_service_process_sigterm_mid_transfer_then_resumes(env, identity, tmp_path):
    """`bodycam-dock run` as a real process: SIGTERM while a bay transfers ends it cleanly
    (exit 0, nothing freed that is not stored); run again, the camera is emptied."""
    import json
    import signal
    import subprocess
    import sys
    import time
    root = Path(__file__).resolve().parent.parent
    from device.link_service import LinkService
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14, segment_seconds=30)
    cam_node = tmp_path / "cam" / "svc.tty"
    # The camera stalls after a few reads, so the signal lands mid-transfer.
    stall, reads, original_read = threading.Event(), [0], LinkService._op_read

    def slow_read(self, args):
        reads[0] += 1
        if reads[0] == 3:
            stall.wait(20)
        return original_read(self, args)
    LinkService._op_read = slow_read
    cmd = [sys.executable, "-m", "dock.cli", "--config", str(tmp_path / "dock.toml"), "run", "--no-ui"]
    dock_proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the service is up and watching
    cable = PtyCable(env.watch / "usb-bodycam-svc", cam_node)
    t = start_serving(sim, cam_node, 60)
    try:
        deadline = time.monotonic() + 30
        while reads[0] < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        dock_proc.send_signal(signal.SIGTERM)
        out, err = dock_proc.communicate(timeout=30)
    finally:
        stall.set()
        LinkService._op_read = original_read
    assert dock_proc.returncode == 0 and "Traceback" not in err, err
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["bays"][0]["state"] == "unplugged" and "resumes" in status["bays"][0]["message"]
    cable.unplug()
    t.join(30)
    assert on_camera(sim) and env.store.segments("test-cam") == []  # nothing stored, nothing freed
    again = subprocess.Popen([*cmd, "--until-idle", "2"], cwd=root, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    cable = PtyCable(env.watch / "usb-bodycam-svc", cam_node)
    t = start_serving(sim, cam_node, 60)
    t.join(60)
    cable.unplug()
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert on_camera(sim) == [] and "test-cam: done" in out, (out, err[-3000:])


def test_segment_deleted_between_dockings_is_caught(env, identity, tmp_path):
    """After a docking, the camera records more; one new segment (and its manifest) is deleted
    before the next docking. The dock's anchor catches the gap: reported, the segment after
    the gap quarantined and kept on the camera, the rest stored."""
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    first, _ = dock(env, sim)
    assert first.status.state == "done"
    sim.runtime.undock()
    for step in ({"at": 16, "action": "double"}, {"at": 26, "action": "hold", "seconds": 3.2}):
        sim.schedule(step)
    sim.run_until(31)
    new = sorted(sim.runtime.store.dir.glob("*.manifest"))
    assert len(new) >= 3
    gone = new[0]
    gone.unlink()
    gone.with_name(gone.name.replace(".manifest", ".ts.age")).unlink()
    second, _ = dock(env, sim)
    report = second.report
    assert second.status.state == "done with problems"
    assert any("segments in between are missing" in p for p in report.problems), report.problems
    after_gap = new[1].name.replace(".manifest", ".ts.age")
    assert [q["name"] for q in report.quarantined] == [after_gap]
    assert after_gap in on_camera(sim)  # kept on the camera
    assert report.stored == [int(p.name[:8]) for p in new[2:]]


def test_two_dockings_on_one_link_service_read_the_current_event_log(env, identity, tmp_path):
    """The camera's link service lives as long as its port (on the Pi, for good): after the
    event log was receipted and replaced, the next docking must read the new file."""
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    cam_node = tmp_path / "cam" / "same.tty"
    with PtyCable(env.watch / "same", cam_node) as cable:
        # As bodycam-device does: one link service for the life of the port, ticked by the runtime.
        service = sim.runtime.attach_link(Link(open_port(str(cam_node))))
        stop = threading.Event()

        def camera_loop() -> None:
            while not stop.is_set() and not service.closed:
                sim.runtime.tick()
                stop.wait(0.0005)
        t = threading.Thread(target=camera_loop)
        t.start()
        for round_ in range(2):
            if round_:
                sim.runtime.log("marker_between_dockings")
                sim.runtime.events.sync()
            bay = Bay(str(cable.dock_node), key=keys.load_signing_key(env.dock_key), dock_id="dock-test",
                      registry=env.registry, store=env.store, staging=env.staging, window=8, timeout=5)
            bay.start()
            bay.join(60)
            assert bay.status.state == "done", bay.status
        stop.set()
        t.join(30)
    ranges = sorted(p.name for p in (env.root / "evidence/devices/test-cam/events").glob("*.cbors"))
    assert len(ranges) == 2, ranges


def _event_pieces(env) -> list[tuple[int, int]]:
    names = sorted(p.name for p in (env.root / "evidence/devices/test-cam/events").iterdir())
    return sorted(tuple(int(x) for x in n.removesuffix(".cbors").split("-")) for n in names)


def test_dock_killed_between_events_and_their_anchor_stores_no_record_twice(env, identity, tmp_path, monkeypatch):
    """C2: a dock that dies after an event-log piece reached the store but before the anchor
    moved. The next docking chains on from the stored piece: the pieces stay contiguous and
    never overlap, and the camera is freed of nothing it should keep."""
    from evidence.errors import StoreUnavailable
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    real = type(env.store).set_anchor
    died: list[int] = []

    def dies_once_on_the_event_anchor(store, device, anchor):
        if anchor.event_seq != store.anchor(device).event_seq and not died:
            died.append(anchor.event_seq)  # the piece is stored; the anchor is not moved
            raise StoreUnavailable("the dock died between the event piece and its anchor")
        return real(store, device, anchor)
    monkeypatch.setattr(type(env.store), "set_anchor", dies_once_on_the_event_anchor)
    dock(env, sim, unplug_when_waiting=[])        # the dock "dies": this docking ends there
    assert died and env.store.anchor("test-cam").event_seq == 0 and _event_pieces(env)
    sim.run_until(30)                                                       # more events on the camera
    again, _ = dock(env, sim)
    assert again.status.state == "done", again.status.message
    pieces = _event_pieces(env)
    assert all(b[0] == a[1] + 1 for a, b in zip(pieces, pieces[1:])), pieces
    assert pieces[0][0] == 1 and env.store.anchor("test-cam").event_seq == pieces[-1][1]


def test_a_writer_killed_mid_write_leaves_no_copy_beside_the_evidence_and_deletion_removes_it(tmp_path):
    """C1: SIGKILL inside the filesystem store's write, after the bytes are staged and before
    they are linked into place: nothing appears in the store's tree or listing; the dock at
    its next start, verify, purge and delete remove the staged copy."""
    import os
    import subprocess
    import sys
    import textwrap
    from evidence.store import FsEvidenceStore
    root = tmp_path / "ev"
    code = textwrap.dedent("""
        import hashlib, os, signal, sys
        from pathlib import Path
        from evidence.store import FsEvidenceStore
        store = FsEvidenceStore(Path(sys.argv[1]))
        os.link = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)   # dies right before the link
        data = b"footage " * 1000
        store.backend.put_once("devices/cam/segments/00000001.ts.age", data, hashlib.sha256(data).digest())
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == -9
    store = FsEvidenceStore(root)
    left = [p for p in root.rglob("*") if p.is_file()]
    assert len(left) == 1 and left[0].parent.name == ".staging"           # staged only, not beside evidence
    assert store.backend.keys("") == []
    assert store.backend.orphans() == left
    assert store.remove_orphans() == [str(left[0])] and not left[0].exists()
    # an orphan of an older version, in the tree beside the evidence, is found by the deep walk
    (root / "devices/cam/segments").mkdir(parents=True, exist_ok=True)
    legacy = root / "devices/cam/segments/.00000001.ts.age.123.456.tmp"
    legacy.write_bytes(b"footage")
    assert store.remove_orphans(deep=False) == [] and store.remove_orphans() == [str(legacy)]


def test_a_revoked_camera_is_refused_by_every_dock_and_its_later_footage_is_flagged(env, identity, tmp_path, capsys,
                                                                                      key_dir):
    """bodycam-dock revoke at one dock: that dock and another one (learning it from the store)
    refuse the camera before anything is read or freed; the office names recordings that
    began after the revocation."""
    from dock.cli import main as dock_main
    from evidence.index import Index
    from evidence.verify import verify_recording
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    bay, _ = dock(env, sim)
    assert bay.status.state == "done"
    assert dock_main(["--config", str(env.root / "dock.toml"), "revoke", "--device-id", "test-cam",
                      "--reason", "gestohlen, Anzeige 123/26", "--by", "sl.schmidt"]) == 0
    assert "audit record" in capsys.readouterr().out
    assert (env.root / "evidence/revoked/devices/test-cam.cbor").exists()
    # the same dock refuses it: nothing set, read or freed
    sim.schedule({"at": sim.clock.monotonic_us() / 1e6 + 1, "action": "press"})
    sim.run_until(sim.clock.monotonic_us() / 1e6 + 6)
    sim.schedule({"at": sim.clock.monotonic_us() / 1e6 + 1, "action": "hold", "seconds": 3.2})
    sim.run_until(sim.clock.monotonic_us() / 1e6 + 6)
    before = on_camera(sim)
    assert before
    bay, _ = dock(env, sim)
    assert bay.status.state == "revoked" and "was revoked" in bay.status.message and "sl.schmidt" in bay.status.message
    assert on_camera(sim) == before
    # another dock, which never heard of it, learns it from the store and keeps it
    other = Env(env.root, env.dock_key, env.dock_pub, Registry(tmp_path / "other-state"), env.store,
                tmp_path / "other-state" / "incoming", env.watch, env.config)
    other.registry.enroll("test-cam", key_dir / "device.pub.pem")
    bay, _ = dock(other, sim, node="usb-bodycam-test-cam-2")
    assert bay.status.state == "revoked" and on_camera(sim) == before
    assert "test-cam" in other.registry.revoked()
    # the office: the revocation came after the stored recording, which stays clean; had it come
    # before (footage stored by a dock that did not know yet), the recording would be named
    index = Index(env.store, tmp_path / "office-index")
    index.refresh()
    (rid, start), = index.conn().execute("SELECT id, start_utc_us FROM recordings").fetchall()
    assert [tuple(r) for r in index.conn().execute("SELECT by, reason FROM revocations")] == [("sl.schmidt",
                                                                                      "gestohlen, Anzeige 123/26")]
    rec = index.recording(rid)
    with index.conn() as conn:  # (the simulated camera's clock runs ahead of the wall clock: set the time)
        conn.execute("UPDATE revocations SET utc_us = ? WHERE device = 'test-cam'", (rec.end_utc_us + 1,))
    assert verify_recording(index, rec, index.state([rid]), use_cache=False)["ok"]
    with index.conn() as conn:
        conn.execute("UPDATE revocations SET utc_us = ? WHERE device = 'test-cam'", (start - 1,))
    flagged = verify_recording(index, rec, index.state([rid]))   # also when the check itself was cached
    assert not flagged["ok"] and any("was revoked" in p and "sl.schmidt" in p for p in flagged["problems"])


def test_the_office_rotates_its_recipient_and_every_camera_takes_it_at_its_next_docking(env, identity, authority,
                                                                                         tmp_path, capsys):
    """bodycam-evidence recipients --set: the dock pushes the new recipient (dock-signed) at the
    next docking; footage from then on opens only with the new identity, footage from before
    with the old one; the camera keeps it across a reboot; export takes both identities."""
    from device.link_service import load_recipients
    from evidence.cli import main as evidence_main
    office = keys.create_device_key(tmp_path / "office", name="office")
    assert evidence_main(["--store", str(env.root / "evidence"), "--key", str(office.private), "init",
                          "--supervisor", "sl", "--by", "sl"]) == 0
    new = keys.create_authority(tmp_path / "new-authority")
    new_secret = keys.load_identity(new.identity)
    sim = camera(tmp_path, identity, [env.dock_pub], SHIFT[:2], run_until=14)
    assert evidence_main(["--store", str(env.root / "evidence"), "--key", str(office.private), "recipients",
                          "--set", str(new.recipient_file), "--by", "it.schmidt"]) == 0
    capsys.readouterr()
    bay, _ = dock(env, sim)                          # stores the old footage, hands over the new recipient
    assert bay.status.state == "done"
    old_seqs = env.store.segments("test-cam")
    assert sim.runtime.identity.recipients == (new.recipient,)
    assert load_recipients(sim.runtime.store.root, sim.runtime.dock_keys) == [new.recipient]   # after a reboot too
    assert "recipients_set" in kinds(sim)
    # the next shift: recorded after the docking, so encrypted to the new recipient only
    t0 = sim.clock.monotonic_us() / 1e6
    sim.schedule({"at": t0 + 1, "action": "press"})
    sim.schedule({"at": t0 + 8, "action": "hold", "seconds": 3.2})
    sim.run_until(t0 + 14)
    bay, _ = dock(env, sim, node="usb-bodycam-test-cam-2")
    assert bay.status.state == "done"
    new_seqs = [s for s in env.store.segments("test-cam") if s not in old_seqs]
    assert old_seqs and new_seqs
    for seq in old_seqs:
        age_format.recover(env.store.footage("test-cam", seq), authority[1])
        with pytest.raises(age_format.AgeError):
            age_format.recover(env.store.footage("test-cam", seq), new_secret)
    for seq in new_seqs:
        age_format.recover(env.store.footage("test-cam", seq), new_secret)
        with pytest.raises(age_format.AgeError):
            age_format.recover(env.store.footage("test-cam", seq), authority[1])
        assert age_format.recover(env.store.footage("test-cam", seq), [authority[1], new_secret]).complete
    # on record, and shown
    assert evidence_main(["--store", str(env.root / "evidence"), "recipients", "--json"]) == 0
    assert '"n": 1' in capsys.readouterr().out
    assert evidence_main(["--store", str(env.root / "evidence"), "--key", str(office.private), "recipients",
                          "--set", "age1nope", "--by", "it.schmidt"]) == 2


def test_the_office_revokes_a_dock_key_and_cameras_learn_it_at_their_next_docking_elsewhere(
        env, identity, tmp_path, capsys, key_dir):
    """bodycam-evidence revoke-dock: the revoked dock serves no camera; another dock pushes the
    revocation (dock-signed) to the camera, which then refuses the revoked key itself — also
    when that dock reaches it through a store that does not know — and keeps it across a
    reboot; the office names footage the dock stored after its revocation."""
    from device.link_service import load_revoked_docks
    from evidence.cli import main as evidence_main
    from evidence.index import Index
    from evidence.verify import verify_recording
    office = keys.create_device_key(tmp_path / "office", name="office")
    ev = ["--store", str(env.root / "evidence"), "--key", str(office.private)]
    assert evidence_main([*ev, "init", "--supervisor", "sl", "--by", "sl"]) == 0
    stolen = keys.create_device_key(tmp_path / "dock-b", name="dock")
    stolen_fp = keys.fingerprint(keys.load_verify_key(stolen.public))
    sim = camera(tmp_path, identity, [env.dock_pub, stolen.public], SHIFT[:2], run_until=14)
    bay, _ = dock(env, sim, key=stolen.private)                      # dock B stores the first recording
    assert bay.status.state == "done", bay.status.message
    capsys.readouterr()
    assert evidence_main([*ev, "revoke-dock", "--dock-key", str(stolen.public), "--reason",
                          "Dock-PC gestohlen, Anzeige 77/26", "--by", "it.schmidt"]) == 0
    assert stolen_fp in capsys.readouterr().out
    assert (env.root / f"evidence/revoked/docks/{stolen_fp}.cbor").exists()
    assert evidence_main([*ev, "revoke-dock", "--dock-key", stolen_fp, "--reason", "nochmal",
                          "--by", "it.schmidt"]) == 2                                  # revoked already
    assert "revoked already" in capsys.readouterr().err
    for garbage in ("", "abc", str(tmp_path / "nope.pem"), str(office.public)):
        assert evidence_main([*ev, "revoke-dock", "--dock-key", garbage, "--reason", "x", "--by", "it"]) == 2
    assert evidence_main(["--store", str(env.root / "evidence"), "revoke-dock", "--dock-key", stolen_fp,
                          "--reason", "x", "--by", "it"]) == 2                          # no office key: refused
    # the revoked dock itself serves no camera: nothing set, read or freed
    t0 = sim.clock.monotonic_us() / 1e6
    sim.schedule({"at": t0 + 1, "action": "press"})
    sim.schedule({"at": t0 + 7, "action": "hold", "seconds": 3.2})
    sim.run_until(t0 + 12)
    before = on_camera(sim)
    bay, _ = dock(env, sim, key=stolen.private, node="usb-bodycam-test-cam-2")
    assert bay.status.state == "dock revoked" and "it.schmidt" in bay.status.message, bay.status
    assert on_camera(sim) == before
    # dock A serves it, and hands over the revocation
    bay, _ = dock(env, sim, node="usb-bodycam-test-cam-3")
    assert bay.status.state == "done", bay.status.message
    assert sim.runtime.revoked_docks == {stolen_fp} and "docks_revoked" in kinds(sim)
    assert stolen_fp in env.registry.revoked_docks()
    assert load_revoked_docks(sim.runtime.store.root, sim.runtime.dock_keys) == {stolen_fp}   # after a reboot too
    # the stolen dock, with a store (and registry) that never heard of it: the camera refuses it
    sim.schedule({"at": sim.clock.monotonic_us() / 1e6 + 1, "action": "press"})
    sim.schedule({"at": sim.clock.monotonic_us() / 1e6 + 7, "action": "hold", "seconds": 3.2})
    sim.run_until(sim.clock.monotonic_us() / 1e6 + 12)
    before = on_camera(sim)
    thief = Env(env.root, stolen.private, stolen.public, Registry(tmp_path / "thief-state"),
                FsEvidenceStore(tmp_path / "thief-evidence"), tmp_path / "thief-state" / "incoming", env.watch,
                env.config)
    thief.registry.enroll("test-cam", key_dir / "device.pub.pem")
    bay, _ = dock(thief, sim, key=stolen.private, node="usb-bodycam-test-cam-4")
    assert bay.status.state == "refused" and "revoked" in bay.status.message, bay.status
    assert on_camera(sim) == before and thief.store.segments("test-cam") == []
    # the office: B's ingest came before the revocation (clean); one after it would be named
    index = Index(env.store, tmp_path / "office-index")
    index.refresh()
    assert [tuple(r) for r in index.conn().execute("SELECT dock_key, by FROM dock_revocations")] == [
        (stolen_fp, "it.schmidt")]
    first = index.conn().execute("SELECT id FROM recordings ORDER BY start_utc_us LIMIT 1").fetchone()[0]
    rec = index.recording(first)
    assert verify_recording(index, rec, index.state([first]), use_cache=False)["ok"]
    with index.conn() as conn:
        conn.execute("UPDATE dock_revocations SET audit_seq = 0")
    flagged = verify_recording(index, rec, index.state([first]))
    assert not flagged["ok"] and any("revoked its key" in p and "it.schmidt" in p for p in flagged["problems"])
