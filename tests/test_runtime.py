"""Device runtime scenarios in virtual time, through gpiozero's MockFactory pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from common import signed
from common.manifest import verify_manifest_chain
from device import config as device_config
from device.event_log import EventLog, read_event_log
from device.runtime import State
from dock.verify import verify_store
from simulator.device_sim import SimDevice

PRE = 5.0


def make_config(tmp: Path, **sections) -> device_config.Config:
    base = {
        "camera": {"width": 320, "height": 240, "fps": 30, "bitrate": 300_000, "audio": False},
        "recording": {"pre_record_seconds": PRE, "segment_seconds": 4},
        "storage": {"warn_free_mb": 100, "full_free_mb": 20},
        "cues": {"reminder_interval_s": 20},
        "device": {"store": "store"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return device_config.from_dict(base, base_dir=tmp)


@pytest.fixture
def sim_factory(tmp_path, identity):
    sims = []

    def make(**sections) -> SimDevice:
        cfg = make_config(tmp_path, **sections)
        sim = SimDevice.create(cfg, identity)
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.runtime.close()


class RedWatch:
    """Samples the red LED's *pin* after every tick; records ticks where footage was written."""

    def __init__(self, sim: SimDevice) -> None:
        self.sim = sim
        self.violations: list[float] = []
        self.recording_ticks = 0
        rt = sim.runtime
        original = rt.tick

        def tick() -> None:
            original()
            if rt.recorder.recording:
                self.recording_ticks += 1
                if not rt.hw.red_pin_state():
                    self.violations.append(sim.clock.monotonic_us() / 1e6)
        rt.tick = tick  # type: ignore[method-assign]


def run(sim: SimDevice, steps: list[dict], tail: float = 3) -> dict:
    sim.run_script(steps, tail_s=tail)
    return sim.report()


def kinds(report: dict) -> list[str]:
    return [e["kind"] for e in report["events"]]


def states(report: dict) -> list[str]:
    return [e["state"] for e in report["events"] if e["kind"] == "state"]


def test_announced_recording(sim_factory, device_public):
    sim = sim_factory()
    watch = RedWatch(sim)
    rep = run(sim, [{"at": 8, "action": "press"}, {"at": 16, "action": "hold", "seconds": 3.5}])
    assert states(rep) == ["READY", "ANNOUNCING", "RECORDING", "READY"]
    assert len(sim.audio.played) == 1 and sim.audio.played[0]["wav"].endswith("announce.wav")
    (rec,) = rep["recordings"]
    assert rec["announced"] and rec["press"] == 8.0
    assert rec["start"] >= 8 + sim.audio.played[0]["duration_us"] / 1e6  # recording starts after the cue
    manifests = verify_manifest_chain([Path(s["manifest"]).read_bytes() for s in rec["segments"]], device_public)
    assert all(m.announced for m in manifests)
    first = manifests[0]
    covered = (first.press_pts_us - first.first_pts_us) / 1e6
    assert PRE <= covered < PRE + 1.0, "pre-record covers the window before the press, not before the cue end"
    assert watch.recording_ticks > 100 and watch.violations == []


def test_red_led_flashes_while_announcing_and_is_solid_while_recording(sim_factory):
    sim = sim_factory()
    rep = run(sim, [{"at": 7, "action": "press"}, {"at": 12, "action": "hold", "seconds": 3.5}])
    announcing = [l for l in rep["leds"] if l["state"] == "ANNOUNCING"]
    assert {l["red"] for l in announcing} == {True, False}
    recording = [l for l in rep["leds"] if l["state"] == "RECORDING"]
    assert recording and all(l["red"] for l in recording)
    assert not rep["leds"][-1]["red"] and rep["leds"][-1]["green"]


def test_emergency_double_press_records_at_once_without_cue(sim_factory, device_public):
    sim = sim_factory()
    watch = RedWatch(sim)
    rep = run(sim, [{"at": 7, "action": "double"}, {"at": 12, "action": "hold", "seconds": 3.5}])
    assert states(rep) == ["READY", "RECORDING", "READY"]
    assert sim.audio.played == []
    assert "announcement" not in kinds(rep)
    assert [c["pattern"] for c in rep["cues"] if c["kind"] == "tone"] == ["stop"]  # no start tone
    (rec,) = rep["recordings"]
    assert rec["announced"] is False and rec["start"] - 7 < 0.5
    manifests = verify_manifest_chain([Path(s["manifest"]).read_bytes() for s in rec["segments"]], device_public)
    assert [m.announced for m in manifests] == [False] * len(manifests)
    assert watch.violations == []


def test_short_hold_does_not_stop_and_hold_does(sim_factory):
    sim = sim_factory()
    rep = run(sim, [{"at": 6, "action": "double"}, {"at": 9, "action": "hold", "seconds": 1.5},
                    {"at": 14, "action": "hold", "seconds": 2.8}, {"at": 20, "action": "hold", "seconds": 3.2}])
    (rec,) = rep["recordings"]
    assert rec["markers"] == []
    assert rec["stop_reason"] == "button_hold" and rec["end"] == pytest.approx(23.0, abs=0.05)


def test_marker(sim_factory):
    sim = sim_factory()
    rep = run(sim, [{"at": 6, "action": "double"}, {"at": 9, "action": "press"}, {"at": 11, "action": "press"},
                    {"at": 14, "action": "hold", "seconds": 3.5}])
    (rec,) = rep["recordings"]
    assert rec["markers"] == [9.0, 11.0]
    assert kinds(rep).count("marker") == 2
    assert [c["pattern"] for c in rep["cues"] if c["kind"] == "tone"].count("marker") == 2


def test_standby_wipes_the_buffer_and_back(sim_factory):
    sim = sim_factory()
    sim.runtime.boot()
    sim.schedule({"at": 8, "action": "hold", "seconds": 6})
    sim.run_until(7.9)
    assert sim.runtime.buffer.nbytes > 0
    sim.run_until(16)
    assert sim.runtime.state == State.STANDBY
    assert sim.runtime.buffer.nbytes == 0 and sim.runtime.buffer.packet_count == 0
    assert not any(sim.runtime.hw.led_states().values())
    sim.schedule({"at": 17, "action": "hold", "seconds": 6})
    sim.run_until(24)
    assert sim.runtime.state == State.READY and sim.runtime.buffer.nbytes > 0


def test_recording_from_standby_has_no_pre_record(sim_factory, device_public):
    sim = sim_factory()
    rep = run(sim, [{"at": 7, "action": "hold", "seconds": 6}, {"at": 20, "action": "double"},
                    {"at": 25, "action": "hold", "seconds": 3.5}])
    (rec,) = rep["recordings"]
    first = verify_manifest_chain([Path(rec["segments"][0]["manifest"]).read_bytes()], device_public)[0]
    assert first.first_pts_us >= first.press_pts_us  # nothing from before the press


def test_storage_full_finishes_the_segment_stops_and_signals(sim_factory, device_public, authority):
    sim = sim_factory()
    rep = run(sim, [{"at": 6, "action": "double"}, {"at": 9, "action": "fill_storage", "free_mb": 50},
                    {"at": 12, "action": "fill_storage", "free_mb": 10}])
    assert "storage_low" in [e.get("warning") for e in rep["events"]]
    (rec,) = rep["recordings"]
    assert rec["stop_reason"] == "storage_full" and rec["end"] == pytest.approx(12, abs=1.1)
    assert rep["final_state"] == "ERROR"
    assert sim.runtime.hw.led_states() == {"red": False, "green": False, "amber": True}
    report = verify_store(sim.runtime.store.dir, device_public, identity=authority[1])
    assert report.ok and all(s.complete and not s.truncated for s in report.segments)
    # Nothing recorded is overwritten or removed, and a press in ERROR records nothing.
    before = sorted(p.name for p in sim.runtime.store.dir.iterdir())
    sim.schedule({"at": 16, "action": "double"})
    sim.run_until(18)
    assert sim.runtime.state == State.ERROR and not sim.runtime.recorder.recording
    assert sorted(p.name for p in sim.runtime.store.dir.iterdir()) == before


def test_battery_low_warns_and_critical_stops_and_shuts_down(sim_factory, device_public, authority):
    sim = sim_factory()
    rep = run(sim, [{"at": 6, "action": "double"}, {"at": 8, "action": "battery", "level": 15},
                    {"at": 10, "action": "battery", "level": 3}, {"at": 30, "action": "press"}])
    assert [e.get("warning") for e in rep["events"] if e["kind"] == "warning"] == ["battery_low"]
    (rec,) = rep["recordings"]
    assert rec["stop_reason"] == "battery_critical"
    assert rep["final_state"] == "SHUTDOWN"
    assert verify_store(sim.runtime.store.dir, device_public, identity=authority[1]).ok
    assert not any(sim.runtime.hw.led_states().values())


def test_red_led_interlock_forces_the_light_on(sim_factory):
    sim = sim_factory()
    sim.runtime.boot()
    sim.schedule({"at": 6, "action": "double"})
    sim.run_until(7)
    sim.runtime.hw.red.off()  # a bug or a fault switches the light off mid-recording
    sim.run_until(7.2)
    assert sim.runtime.hw.red_pin_state()
    assert "red_led_forced_on" in [e["kind"] for e in sim.runtime.events.entries]


def test_reminder_tone_every_interval(sim_factory):
    sim = sim_factory()
    rep = run(sim, [{"at": 6, "action": "double"}, {"at": 50, "action": "hold", "seconds": 3.5}])
    reminders = [c["t"] for c in rep["cues"] if c.get("pattern") == "reminder"]
    start = rep["recordings"][0]["start"]
    assert reminders == pytest.approx([start + 20, start + 40], abs=0.05)


def test_dock_stops_recording_wipes_buffer(sim_factory):
    sim = sim_factory()
    rep = run(sim, [{"at": 6, "action": "double"}, {"at": 9, "action": "dock"}])
    assert rep["recordings"][0]["stop_reason"] == "docked"
    assert rep["final_state"] == "DOCKED" and sim.runtime.buffer.nbytes == 0


def test_without_espeak_the_cue_falls_back_to_buzzer_tones(sim_factory, monkeypatch):
    import device.hardware
    real_which = device.hardware.shutil.which
    monkeypatch.setattr(device.hardware.shutil, "which", lambda n: None if n == "espeak-ng" else real_which(n))
    sim = sim_factory(cues={"wav": "cues/missing.wav"})
    rep = run(sim, [{"at": 6, "action": "press"}, {"at": 12, "action": "hold", "seconds": 3.5}])
    assert sim.audio.played == []
    assert [c["pattern"] for c in rep["cues"]][0] == "announce"
    # press (0.15 s) + double-press window (0.4 s) + 1.8 s of tones, on 30 fps ticks
    assert rep["recordings"][0]["start"] == pytest.approx(6 + 0.15 + 0.4 + 1.8, abs=0.07)


def test_event_log_is_signed_and_chained(sim_factory, device_public):
    sim = sim_factory()
    run(sim, [{"at": 6, "action": "double"}, {"at": 8, "action": "hold", "seconds": 3.5}])
    bodies = read_event_log(sim.runtime.events.path, device_public)
    assert [b["seq"] for b in bodies] == list(range(1, len(bodies) + 1))
    assert {"boot", "gesture_double", "recording_stop"} <= {b["kind"] for b in bodies}
    assert all(b["utc_us"] - b["mono_us"] == bodies[0]["utc_us"] - bodies[0]["mono_us"] for b in bodies)
    data = bytearray(sim.runtime.events.path.read_bytes())
    data[len(data) // 2] ^= 1
    sim.runtime.events.path.write_bytes(bytes(data))
    with pytest.raises((signed.SignatureError, signed.ChainError)):
        read_event_log(sim.runtime.events.path, device_public)


def test_event_log_survives_a_torn_append(tmp_path, identity):
    from common.clock import VirtualClock
    log = EventLog(tmp_path, identity, VirtualClock())
    for i in range(3):
        log.append("x", "READY", i=i)
    with open(log.path, "ab") as f:
        f.write(b"\xd2\x84\x43")  # the first bytes of a record, then the power went
    again = EventLog(tmp_path, identity, VirtualClock())
    assert again.seq == 3
    again.append("boot", "BOOTING")
    assert [b["seq"] for b in read_event_log(again.path, identity.signing_key.public_key())] == [1, 2, 3, 4]


def test_camera_failure_finalises_the_recording_and_enters_error(sim_factory, device_public, authority):
    sim = sim_factory()
    rt = sim.runtime
    real_packets = rt.camera.packets

    def failing():
        for i, p in enumerate(real_packets()):
            if i == 30 * 10:
                raise OSError("CSI-2 link lost")
            if i == 30 * 6:
                sim.pin.drive_low(); sim.pin.drive_high(); sim.pin.drive_low()  # a double press
            if i == 30 * 6 + 3:
                sim.pin.drive_high()
            yield p
    rt.camera.packets = failing  # type: ignore[method-assign]
    assert rt.run() == State.ERROR and rt.error == "camera_failure"
    (rec,) = rt.recordings
    assert rec.stop_reason == "camera_failure" and rec.segments
    assert verify_store(rt.store.dir, device_public, identity=authority[1]).ok
    assert rt.hw.led_states() == {"red": False, "green": False, "amber": True}


def test_boot_after_a_power_cut_seals_the_segment_and_warns(tmp_path, identity, device_public, authority):
    import shutil
    cfg = make_config(tmp_path / "a")
    first = SimDevice.create(cfg, identity)
    first.runtime.boot()
    first.schedule({"at": 6, "action": "double"})
    first.run_until(10.8)  # 1.8 s into the segment that began at 9 s
    assert first.runtime.recorder.recording
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the disk as the power cut left it
    first.runtime.close()
    again = SimDevice.create(make_config(tmp_path / "b"), identity)
    again.runtime.boot()
    kinds_ = [e["kind"] for e in again.runtime.events.entries]
    assert "segment_sealed_after_interruption" in kinds_
    assert "interrupted_recording" in again.runtime.warnings and again.runtime.hw.led_states()["amber"]
    report = verify_store(again.runtime.store.dir, device_public, identity=authority[1])
    assert report.ok and report.segments[-1].truncated and report.segments[-1].plaintext_bytes > 0
    # The event log continues the same chain across the reboot.
    bodies = read_event_log(again.runtime.events.path, device_public)
    assert [b["seq"] for b in bodies] == list(range(1, len(bodies) + 1))
    again.runtime.close()


def test_disk_error_mid_segment_seals_what_reached_the_disk_and_recovers(sim_factory, monkeypatch,
                                                                          device_public, authority):
    import errno
    import io
    import device.segment_writer as segment_writer

    disk_full = {"on": False}

    class FailingFile(io.FileIO):
        def write(self, data):
            if disk_full["on"]:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    monkeypatch.setattr(segment_writer, "open", lambda path, mode, buffering=-1: FailingFile(path, mode[0]),
                        raising=False)
    sim = sim_factory()
    rt = sim.runtime
    rt.boot()
    sim.schedule({"at": 6, "action": "double"})
    sim.run_until(10.5)
    disk_full["on"] = True
    sim.run_until(13)
    assert rt.state == State.ERROR and rt.error == "storage_error" and not rt.recorder.recording
    assert "segment_close_failed" in [e["kind"] for e in rt.events.entries]
    assert not rt.hw.red_pin_state() and rt.hw.led_states()["amber"]
    report = verify_store(rt.store.dir, device_public, identity=authority[1])
    assert report.ok, report.to_json()
    assert report.segments[-1].truncated and not report.segments[-1].complete
    sim.schedule({"at": 13.5, "action": "double"})  # a failed disk is not trusted by itself
    sim.run_until(14.5)
    assert rt.state == State.ERROR and len(rt.recordings) == 1
    disk_full["on"] = False  # serviced in the dock
    sim.schedule({"at": 14.6, "action": "dock"})
    sim.schedule({"at": 14.8, "action": "undock"})
    sim.schedule({"at": 15, "action": "double"})
    sim.schedule({"at": 18, "action": "hold", "seconds": 3.5})
    sim.run_until(23)
    assert rt.state == State.READY and len(rt.recordings) == 2 and rt.recordings[1].stop_reason == "button_hold"
    assert verify_store(rt.store.dir, device_public, identity=authority[1]).ok


def test_corrupt_journal_at_boot_is_error_not_a_crash(tmp_path, identity):
    """A journal that cannot be read blocks sealing: the camera shows ERROR (store_error)
    and stays there through a docking, instead of crashing or recording over it."""
    cfg = make_config(tmp_path)
    sim = SimDevice.create(cfg, identity)
    (sim.runtime.store.dir / "00000001.open").write_bytes(b"\xff\xfe")
    sim.runtime.boot()
    assert sim.runtime.state == State.ERROR and sim.runtime.error == "store_error"
    sim.schedule({"at": 1, "action": "dock"})
    sim.schedule({"at": 2, "action": "undock"})
    sim.schedule({"at": 3, "action": "double"})
    sim.run_until(5)
    assert sim.runtime.state != State.RECORDING and not sim.runtime.recordings
    assert "seal_failed" in [e["kind"] for e in sim.runtime.events.entries]
    sim.runtime.close()


def test_systemd_notify_ready_watchdog_and_stopping(sim_factory, tmp_path):
    """Type=notify and WatchdogSec: a real AF_UNIX datagram socket stands where systemd's is,
    read as systemd does (concurrently); a socket nobody reads never stalls the loop."""
    import socket
    import threading
    from common.service_notify import ServiceNotifier
    path = tmp_path / "notify"
    got: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(0.5)

        def read() -> None:
            try:
                while True:
                    got.append(server.recv(4096).decode())
            except (TimeoutError, OSError):
                pass
        reader = threading.Thread(target=read)
        reader.start()
        sim = sim_factory()
        rt = sim.runtime
        rt.service = ServiceNotifier.from_env({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000"})
        real_packets = rt.camera.packets

        def some():
            for i, p in enumerate(real_packets()):
                if i == 30 * 4:
                    return
                yield p
        rt.camera.packets = some  # type: ignore[method-assign]
        rt.run()
        reader.join()
    assert got[0].startswith("READY=1\nSTATUS=") and got[-1].startswith("STOPPING=1")
    assert "WATCHDOG=1" in got[1:-1]
    # Nobody reading: the buffer fills, pings are dropped, the loop goes on.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as deaf:
        deaf.bind(str(tmp_path / "deaf"))
        n = ServiceNotifier(str(tmp_path / "deaf"), watchdog_usec=1)
        results = [n.send("WATCHDOG=1") for _ in range(5000)]
    assert results[0] and not results[-1]


def test_the_event_log_stays_one_chain_when_two_threads_log(tmp_path, identity):
    """Found by CI: a test's thread logged while the camera's loop did, and a record was
    popped twice. The log takes one writer at a time: one chain, every record once."""
    import threading

    from common.clock import VirtualClock
    from device.event_log import read_event_log
    log = EventLog(tmp_path, identity, VirtualClock())

    def writer(name: str) -> None:
        for i in range(300):
            log.append(name, "READY", i=i)
            if i % 50 == 0:
                log.sync()
    threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    entries = read_event_log(tmp_path / "events.cbors", identity.signing_key.public_key())
    assert [e["seq"] for e in entries] == list(range(1, 901))
