"""The reliability campaign: the camera runtime and the dock against a faulty cable, a dock
killed mid-offload, rogue peers and fuzzed input, in one table.

    python -m simulator.campaign            # the full campaign (./dev.sh campaign)
    python -m simulator.campaign --quick    # the reduced one CI runs

Every run checks the same invariants against what the camera recorded before it docked:

- **bytes lost**: a segment neither on the camera nor in the store;
- **corrupt accepted**: a stored segment whose bytes are not the ones the camera recorded;
- **premature frees**: a segment gone from the camera that the store does not hold;
- **hangs**: a bay (or a dock process) that did not end within its deadline;
- plus, for dock kills: anything left in the store that is not of its layout (an orphan)
  and event-log pieces that overlap or leave a gap.

The exit status is 1 if any of these is not zero, so CI fails on it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from common import keys
from device import config as device_config
from device.identity import DeviceIdentity
from dock.bay import Bay
from dock.registry import Registry
from evidence.store import FsEvidenceStore, unknown_keys
from simulator.device_sim import SimDevice
from simulator.powercut import FsyncTracker, disk_image
from simulator.docking import serve_docked
from simulator.serial_link import PtyCable

ROOT = Path(__file__).resolve().parent.parent
SHIFT = [{"at": 2, "action": "press"}, {"at": 9, "action": "hold", "seconds": 3.2},
         {"at": 14, "action": "double"}, {"at": 19, "action": "hold", "seconds": 3.2}]
BAY_DEADLINE_S = 90.0       # a bay that has not ended by then is a hang
MAX_DOCKINGS = 6            # re-docks allowed until a camera must be empty


@dataclass
class Row:
    """One line of the table."""
    name: str
    runs: int = 0
    faults: int = 0
    bytes_lost: int = 0
    corrupt_accepted: int = 0
    premature_frees: int = 0
    hangs: int = 0
    violations: int = 0         # anything else a row checks (memory growth, pts gaps, orphans, overlaps)
    detections: int = 0
    dockings: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.bytes_lost or self.corrupt_accepted or self.premature_frees or self.hangs
                    or self.violations)


# ---------------------------------------------------------------------- a camera and a dock
@dataclass
class Rig:
    """Keys, a registry and a filesystem store in one directory, as a dock would have them."""
    root: Path
    identity: DeviceIdentity
    dock_key: Path
    dock_pub: Path
    registry: Registry
    store: FsEvidenceStore
    config: Path

    @classmethod
    def create(cls, root: Path, keys_dir: Path) -> "Rig":
        dk = keys.create_device_key(root / "dock-keys", name="dock")
        config = root / "dock.toml"
        config.write_text(f'[dock]\nid = "dock-c"\nkey = "{dk.private}"\nstate = "state"\nstore = "evidence"\n'
                          f'watch = "by-id"\n[transfer]\ntimeout_s = 1\nwindow = 8\n')
        registry = Registry(root / "state")
        registry.enroll("cam-c", keys_dir / "device.pub.pem")
        identity = DeviceIdentity.load("cam-c", keys_dir / "device.key",
                                       [keys.recipient_of(keys.load_identity(keys_dir / "authority.key"))])
        return cls(root, identity, dk.private, dk.public, registry, FsEvidenceStore(root / "evidence"), config)

    def camera(self, seed: int, template: Path | None = None) -> SimDevice:
        """A camera that recorded a short shift (SHIFT: an announced and a danger recording).
        With ``template``, the shift is recorded once and its store copied into later runs
        (encoding is most of a run's time, and the faults are what varies)."""
        if template is not None and template.exists():
            shutil.copytree(template, self.root / "cam" / "store")
            sim = self._device(seed)
            sim.runtime.boot()
            return sim
        sim = self._device(seed)
        sim.runtime.boot()
        for s in SHIFT:
            sim.schedule(s)
        sim.run_until(24)
        if template is not None:
            sim.runtime.events.sync()
            shutil.copytree(self.root / "cam" / "store", template)
        return sim

    def boot(self, seed: int) -> SimDevice:
        """The camera booted on the store it has (after a power cut: it seals what was open)."""
        sim = self._device(seed)
        sim.runtime.boot()
        return sim

    def _device(self, seed: int) -> SimDevice:
        cfg = device_config.from_dict({
            "camera": {"width": 320, "height": 240, "fps": 15, "bitrate": 400_000, "audio": False},
            "recording": {"pre_record_seconds": 1, "segment_seconds": 2},
            "storage": {"warn_free_mb": 100, "full_free_mb": 20}, "device": {"store": "store"},
            "link": {"dock_keys": [str(self.dock_pub)]}}, base_dir=self.root / "cam")
        return SimDevice.create(cfg, self.identity, noise=30, seed=seed)

    def bay(self, node: Path) -> Bay:
        return Bay(str(node), key=keys.load_signing_key(self.dock_key), dock_id="dock-c", registry=self.registry,
                   store=self.store, staging=self.root / "state" / "incoming", window=8, timeout=1,
                   retry_s=0.05, retry_max_s=0.2)


def switch_off(sim: SimDevice, *, power_cut: bool = False) -> None:
    """Release what a simulated camera holds (gpiozero's hold thread polls until its pins
    close; a campaign of hundreds of cameras would otherwise keep hundreds of them)."""
    if power_cut:
        sim.runtime.hw.close()   # nothing more reaches its disk
    else:
        sim.runtime.close()
    sim.runtime.camera.close()


def recorded(sim: SimDevice) -> dict[int, tuple[str, int]]:
    """seq → (SHA-256, size) of every segment on the camera."""
    out = {}
    for seg in sim.runtime.store.dir.glob("*.ts.age"):
        data = seg.read_bytes()
        out[int(seg.name.split(".")[0])] = (hashlib.sha256(data).hexdigest(), len(data))
    return out


def check(row: Row, truth: dict[int, tuple[str, int]], sim: SimDevice, rig: Rig, dev: str = "cam-c") -> bool:
    """Count losses, corrupt acceptances and premature frees; True when the camera is empty."""
    on_camera = {int(p.name.split(".")[0]) for p in sim.runtime.store.dir.glob("*.ts.age")}
    stored = set(rig.store.segments(dev))
    for seq, (sha, size) in truth.items():
        if seq in stored:
            got = hashlib.sha256(rig.store.footage(dev, seq)).hexdigest()
            if got != sha:
                row.corrupt_accepted += 1
                row.notes.append(f"segment {seq}: stored {got[:16]}…, the camera recorded {sha[:16]}… "
                                 f"({len(rig.store.footage(dev, seq))} of {size} bytes)")
        elif seq not in on_camera:
            row.bytes_lost += size
            row.premature_frees += 1
    return not on_camera


# ---------------------------------------------------------------------- a cable that damages
class FaultyCable:
    """Two pty pairs joined by a relay that damages what passes, seeded: a flipped bit, a
    chunk dropped, a delay, or the cable pulled. ``dock_node`` and ``camera_node`` are
    symlinks to the ptys' far ends, as a USB serial device's by-id node is."""

    def __init__(self, dock_node: Path, camera_node: Path, rng: random.Random, *, flip: float, drop: float,
                 delay: float, disconnect_after: int | None) -> None:
        self.dock_node, self.camera_node, self.rng = dock_node, camera_node, rng
        self.p_flip, self.p_drop, self.p_delay = flip, drop, delay
        self.disconnect_after = disconnect_after
        self.faults = 0
        self.chunks = 0
        self._fds: list[int] = []
        self._masters: list[int] = []
        for node in (camera_node, dock_node):
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            node.parent.mkdir(parents=True, exist_ok=True)
            node.unlink(missing_ok=True)
            node.symlink_to(os.ttyname(slave))
            self._masters.append(master)
            self._fds += [master, slave]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        cam, dock = self._masters
        peer = {cam: dock, dock: cam}
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([cam, dock], [], [], 0.05)
                for fd in ready:
                    try:
                        data = os.read(fd, 4096)
                    except BlockingIOError:
                        continue
                    if not data:
                        continue
                    self.chunks += 1
                    if self.disconnect_after is not None and self.chunks >= self.disconnect_after:
                        self.faults += 1
                        self.unplug()
                        return
                    r = self.rng.random()
                    if r < self.p_flip:
                        i = self.rng.randrange(len(data))
                        data = data[:i] + bytes([data[i] ^ (1 << self.rng.randrange(8))]) + data[i + 1:]
                        self.faults += 1
                    elif r < self.p_flip + self.p_drop:
                        self.faults += 1
                        continue
                    elif r < self.p_flip + self.p_drop + self.p_delay:
                        self.faults += 1
                        time.sleep(self.rng.uniform(0.05, 0.4))
                    self._write(peer[fd], data)
        except OSError:
            pass  # unplugged

    def _write(self, fd: int, data: bytes) -> None:
        """All of ``data``, unless the cable is pulled meanwhile (a peer that stopped reading
        must not keep the relay from its stop)."""
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                time.sleep(0.001)

    def unplug(self) -> None:
        self._stop.set()
        for node in (self.dock_node, self.camera_node):
            if node.is_symlink():
                node.unlink()
        if threading.current_thread() is not self._thread:
            # The relay must be out of its read/write first: a descriptor closed under it is
            # reused by the next file this process opens, and the relay would write into it.
            self._thread.join()
        fds, self._fds = self._fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def link_faults(rig_for: Callable[[int], Rig], runs: int, seed: int, template: Path) -> Row:
    row = Row("link faults (relay: flips, drops, delays, pulls)")
    for run in range(runs):
        rng = random.Random(seed * 1000 + run)
        rig = rig_for(run)
        sim = rig.camera(seed=run, template=template)
        truth = recorded(sim)
        row.runs += 1
        for attempt in range(MAX_DOCKINGS):
            cable = FaultyCable(rig.root / "by-id" / "usb-c", rig.root / "cam" / "c.tty", rng,
                                flip=0.01, drop=0.005, delay=0.01,
                                disconnect_after=rng.randrange(20, 400) if rng.random() < 0.2 else None)
            bay, hung = docking(rig, sim, cable)
            row.dockings += 1
            row.faults += cable.faults
            row.detections += bay.retried + bay.bad_frames + (bay.status.state != "done")
            if hung:
                row.hangs += 1
                row.notes.append(f"run {run}: docking {attempt} did not end ({bay.status.state})")
                break
            if check(Row("scratch"), truth, sim, rig) and bay.status.state == "done":
                break
        if not check(row, truth, sim, rig):
            row.notes.append(f"run {run}: camera not empty after {MAX_DOCKINGS} dockings")
            row.hangs += 1
        switch_off(sim)
        shutil.rmtree(rig.root, ignore_errors=True)
    return row


# ---------------------------------------------------------------------- the camera's power cut
def camera_power_cuts(rig_for: Callable[[int], Rig], runs: int, seed: int, template: Path) -> Row:
    """The camera loses power at a random moment of an offload (mid-read, between a receipt
    and its unlink, while its event log is replaced): its store is cut back to what was
    fsync'd (simulator/powercut.py), it boots from that, and is docked again until empty."""
    row = Row("camera power cut mid-offload, then reboot")
    rng = random.Random(seed + 1)
    tracker = FsyncTracker().install()
    try:
        for run in range(runs):
            rig = rig_for(run)
            sim = rig.camera(seed=run, template=template)
            _sync_tree(sim.runtime.store.root)   # a recording's files are durable once sealed
            truth = recorded(sim)
            row.runs += 1
            cable = PtyCable(rig.root / "by-id" / "usb-c", rig.root / "cam" / "c.tty")
            # the power goes 0–0.5 s in (a docking takes about that): the camera's loop ends where it is
            _, hung = docking(rig, sim, cable, cut_after_s=rng.uniform(0.0, 0.5))
            row.faults += 1
            row.dockings += 1
            if hung:
                row.hangs += 1
                continue
            store_dir = sim.runtime.store.root
            image = disk_image(tracker, store_dir, rig.root / "cut" / "store")
            switch_off(sim, power_cut=True)
            shutil.rmtree(store_dir)
            shutil.move(str(image), str(store_dir))
            sim = rig.boot(seed=run)             # boots from what the cut left
            if sim.runtime.error:
                row.notes.append(f"run {run}: the camera did not boot after the cut: {sim.runtime.error}")
                row.hangs += 1
                switch_off(sim)
                continue
            row.detections += int(bool(list(sim.runtime.store.dir.glob("*.ts.age"))))
            check(row, truth, sim, rig)         # nothing freed early, even cut
            for _ in range(MAX_DOCKINGS):
                row.dockings += 1
                if _dock_once(rig, sim) and check(Row("scratch"), truth, sim, rig):
                    break
            if not check(row, truth, sim, rig):
                row.hangs += 1
                row.notes.append(f"run {run}: camera not empty after {MAX_DOCKINGS} dockings")
            switch_off(sim)
            shutil.rmtree(rig.root, ignore_errors=True)
    finally:
        tracker.uninstall()
    return row


def _dock_once(rig: Rig, sim: SimDevice) -> bool:
    bay, _ = docking(rig, sim, PtyCable(rig.root / "by-id" / "usb-c", rig.root / "cam" / "c.tty"))
    return bay.status.state == "done"


def docking(rig: Rig, sim: SimDevice, cable: "FaultyCable | PtyCable", *,
            cut_after_s: float | None = None) -> tuple[Bay, bool]:
    """One docking over ``cable``: the camera serves in a thread, a bay offloads; the cable
    is pulled when the bay ends (or after ``cut_after_s``). Returns the bay and whether
    either side failed to end within its deadline (a hang)."""
    served = threading.Thread(target=serve_docked, args=(sim, cable.camera_node), kwargs={"timeout_s": 60},
                              daemon=True)
    served.start()
    bay = rig.bay(cable.dock_node)
    bay.start()
    if cut_after_s is not None:
        time.sleep(cut_after_s)
        cable.unplug()
    bay.join(BAY_DEADLINE_S)
    cable.unplug()
    served.join(30)
    return bay, bay.is_alive() or served.is_alive()


def _sync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------- the soak
def soak(rig: Rig, hours: float, activations: int, dockings: int, seed: int) -> Row:
    """A long shift in virtual time: ``activations`` recordings (announced and danger,
    1–5 min) and ``dockings`` real dockings spread over ``hours``. Memory must stay flat
    (the slope of RSS after the first hour — a quarter of a short soak — in MB/h), every recording's segments must follow
    on without a gap in pts, and every segment must end up in the store. The camera runs at
    160×120, 5 fps: the soak is about the runtime, not the picture."""
    row = Row(f"soak: {hours:g} h shift in virtual time, {activations} recordings, {dockings} dockings")
    rng = random.Random(seed + 2)
    cfg = device_config.from_dict({
        "camera": {"width": 160, "height": 120, "fps": 5, "bitrate": 100_000, "audio": False},
        "recording": {"pre_record_seconds": 5, "segment_seconds": 10},
        "storage": {"warn_free_mb": 100, "full_free_mb": 20}, "device": {"store": "store"},
        "link": {"dock_keys": [str(rig.dock_pub)]}}, base_dir=rig.root / "cam")
    sim = SimDevice.create(cfg, rig.identity, noise=10, seed=seed)
    sim.runtime.boot()
    total_s = hours * 3600
    slot = total_s / activations
    for i in range(activations):
        start = i * slot + rng.uniform(60, slot / 4)
        sim.schedule({"at": start, "action": "press" if i % 3 else "double"})
        sim.schedule({"at": start + rng.uniform(60, 300), "action": "hold", "seconds": 3.2})
    dock_at = [total_s * (k + 1) / dockings for k in range(dockings)]   # the last one at the shift's end
    samples: list[tuple[float, float]] = []
    page = os.sysconf("SC_PAGE_SIZE")
    t = 0.0
    while t < total_s:
        t = min(t + 600, total_s)
        sim.run_until(t)
        samples.append((t / 3600, int(Path("/proc/self/statm").read_text().split()[1]) * page / 2**20))
        if dock_at and t >= dock_at[0]:
            dock_at.pop(0)
            row.dockings += 1
            if not _dock_once(rig, sim):
                row.notes.append(f"docking at {t / 3600:.1f} h did not end 'done'")
    row.runs = 1
    warm = [(h, mb) for h, mb in samples if h >= min(1.0, hours / 4)] or samples  # after warming up
    n = len(warm)
    mean_h, mean_mb = sum(h for h, _ in warm) / n, sum(mb for _, mb in warm) / n
    var = sum((h - mean_h) ** 2 for h, _ in warm) or 1.0
    slope = sum((h - mean_h) * (mb - mean_mb) for h, mb in warm) / var
    row.notes.append(f"RSS {samples[0][1]:.0f} → {samples[-1][1]:.0f} MB, slope after warming up "
                     f"{slope:+.2f} MB/h ({n} samples{'' if hours >= 4 else '; too short to judge'})")
    if hours >= 4 and slope > 2.0:   # a shorter soak has too few samples to judge a slope
        row.violations += 1
    from common.manifest import read_manifest
    dev = rig.identity.device_id
    manifests = [read_manifest(rig.store.manifest(dev, q), None) for q in rig.store.segments(dev)]
    by_rec: dict[str, list] = {}
    for m in manifests:
        by_rec.setdefault(m.recording_id, []).append(m)
    frame_us = 1_000_000 // 5
    gaps = 0
    for segs in by_rec.values():
        segs.sort(key=lambda m: m.index)
        for a, b in zip(segs, segs[1:]):
            if a.last_pts_us is None or not 0 < b.first_pts_us - a.last_pts_us <= frame_us * 3 // 2:
                gaps += 1
    row.violations += gaps
    on_camera = list(sim.runtime.store.dir.glob("*.ts.age"))
    row.notes.append(f"{len(by_rec)} recordings, {len(manifests)} segments stored, {gaps} pts gaps, "
                     f"{len(on_camera)} left on the camera")
    if len(by_rec) != activations or on_camera or [m.seq for m in manifests] != list(range(1, len(manifests) + 1)):
        row.violations += 1
    switch_off(sim)
    return row


# ---------------------------------------------------------------------- a dock killed
def dock_kills(rig_for: Callable[[int], Rig], runs: int, seed: int, template: Path) -> Row:
    """``bodycam-dock run`` as a real process, SIGKILLed at a random moment of an offload
    (handshake, listing, transfer, store, anchor, receipts, events), then started again:
    the camera must empty, with nothing lost or duplicated and no orphan left."""
    row = Row("dock SIGKILL mid-offload, then restart")
    rng = random.Random(seed)
    cmd = [sys.executable, "-m", "dock.cli"]
    for run in range(runs):
        rig = rig_for(run)
        sim = rig.camera(seed=run, template=template)
        truth = recorded(sim)
        row.runs += 1
        config = ["--config", str(rig.config), "run", "--no-ui"]
        proc = subprocess.Popen([*cmd, *config], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        _wait_for(lambda: (rig.root / "state" / "status.json").exists(), 20)
        cable = PtyCable(rig.root / "by-id" / "usb-c", rig.root / "cam" / "c.tty")
        served = threading.Thread(target=serve_docked, args=(sim, cable.camera_node), kwargs={"timeout_s": 60},
                                  daemon=True)
        served.start()
        time.sleep(rng.uniform(0.05, 0.8))  # plug to done takes about 0.5–1 s here
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        row.faults += 1
        cable.unplug()
        served.join(30)
        check(row, truth, sim, rig)             # nothing freed that is not stored, even killed
        if any(sim.runtime.store.dir.glob("*.ts.age")):
            row.detections += 1                 # killed with work left: the restart must take it up
        again = subprocess.Popen([*cmd, *config, "--until-idle", "2"], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: (rig.root / "state" / "status.json").exists(), 20)
        time.sleep(0.5)
        cable = PtyCable(rig.root / "by-id" / "usb-c", rig.root / "cam" / "c.tty")
        served = threading.Thread(target=serve_docked, args=(sim, cable.camera_node), kwargs={"timeout_s": 60},
                                  daemon=True)
        served.start()
        served.join(BAY_DEADLINE_S)
        cable.unplug()
        try:
            out, err = again.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            again.kill()
            row.hangs += 1
            row.notes.append(f"run {run}: the restarted dock did not end")
            switch_off(sim)
            continue
        if served.is_alive():
            row.hangs += 1
        if not check(row, truth, sim, rig):
            row.hangs += 1
            row.notes.append(f"run {run}: camera not empty after the restart: {out.strip()[-200:]} {err[-300:]}")
        row.detections += err.count("left in the store")   # the restarted dock removed a killed write's copy
        leftovers = rig.store.remove_orphans() + unknown_keys(rig.store.backend.keys(""))
        if leftovers:
            row.violations += 1
            row.notes.append(f"run {run}: left in the store: {leftovers[:3]}")
        problem = _event_pieces_problem(rig)
        if problem:
            row.violations += 1
            row.notes.append(f"run {run}: {problem}")
        row.dockings += 2
        switch_off(sim)
        shutil.rmtree(rig.root, ignore_errors=True)
    return row


def _event_pieces_problem(rig: Rig, dev: str = "cam-c") -> str | None:
    pieces = sorted((int(m[1]), int(m[2])) for k in rig.store.backend.keys(f"devices/{dev}/events/")
                    if (m := re.search(r"(\d{8,})-(\d{8,})\.cbors$", k)))
    expect = 1
    for first, last in pieces:
        if first != expect:
            return f"event pieces {'overlap' if first < expect else 'leave a gap'} at {first} (expected {expect})"
        expect = last + 1
    return None


def _wait_for(cond: Callable[[], bool], within_s: float) -> None:
    until = time.monotonic() + within_s
    while not cond() and time.monotonic() < until:
        time.sleep(0.05)


# ---------------------------------------------------------------------- rogue peers, fuzzing
def pytest_row(name: str, args: list[str], env: dict[str, str] | None = None) -> Row:
    """Regression suites (rogue peers, deterministic kill points, fuzzing) as one row each:
    every test is a run; a failing one counts as a hang or a loss, whichever it guards."""
    row = Row(name)
    junit = Path(tempfile.mkdtemp()) / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, **(env or {})})
    import xml.etree.ElementTree as ET
    suite = ET.parse(junit).getroot().find("testsuite") if junit.exists() else None
    if suite is None:
        row.hangs += 1
        row.notes.append(proc.stdout[-500:] + proc.stderr[-500:])
        return row
    row.runs = int(suite.get("tests", 0)) - int(suite.get("skipped", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    row.detections = row.runs - failed
    row.faults = row.runs
    if failed:
        row.hangs += failed
        row.notes += [tc.get("name", "?") for tc in suite.iter("testcase")
                      if tc.find("failure") is not None or tc.find("error") is not None]
    shutil.rmtree(junit.parent, ignore_errors=True)
    return row


# ---------------------------------------------------------------------- the table
def table(rows: list[Row]) -> str:
    head = ["", "runs", "faults injected", "bytes lost", "corrupt accepted", "premature frees", "hangs",
            "other violations", "detections", "dockings", "seconds"]
    lines = [head] + [[r.name, str(r.runs), str(r.faults), str(r.bytes_lost), str(r.corrupt_accepted),
                       str(r.premature_frees), str(r.hangs), str(r.violations), str(r.detections),
                       str(r.dockings or "–"),
                       f"{r.seconds:.0f}"] for r in rows]
    out = ["| " + " | ".join(cells) + " |" for cells in lines]
    out.insert(1, "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator.campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the reduced campaign (CI): fewer runs of each kind")
    parser.add_argument("--seed", type=int, default=17, help="seed of every fault plan (default 17)")
    parser.add_argument("--link-runs", type=int, help="offloads through the faulty relay (full 100, quick 5)")
    parser.add_argument("--kill-runs", type=int, help="dock processes killed (full 50, quick 4)")
    parser.add_argument("--cut-runs", type=int, help="camera power cuts mid-offload (full 50, quick 4)")
    parser.add_argument("--soak-hours", type=float, help="length of the soak shift in virtual time (full 12, quick 1)")
    parser.add_argument("--workdir", type=Path, help="where to keep the runs (default: a temporary directory)")
    args = parser.parse_args(argv)
    link_runs = args.link_runs if args.link_runs is not None else (5 if args.quick else 100)
    kill_runs = args.kill_runs if args.kill_runs is not None else (4 if args.quick else 50)
    cut_runs = args.cut_runs if args.cut_runs is not None else (4 if args.quick else 50)
    soak_hours = args.soak_hours if args.soak_hours is not None else (1.0 if args.quick else 12.0)
    if min(link_runs, kill_runs, cut_runs) < 0 or not 0.5 <= soak_hours <= 48:
        parser.error("run counts must be 0 or more, --soak-hours between 0.5 and 48")
    if shutil.which("socat") is None:
        parser.error("socat is not installed (apt-get install socat): the dock-kill runs join ptys with it")
    if args.workdir is not None and args.workdir.exists() and not args.workdir.is_dir():
        parser.error(f"--workdir {args.workdir} is a file; name a directory (it is made if missing)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bodycam-campaign-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    keys_dir = work / "keys"
    if not (keys_dir / "device.key").exists():
        keys.create_authority(keys_dir)
        keys.create_device_key(keys_dir)

    def rig_for(kind: str) -> Callable[[int], Rig]:
        def make(run: int) -> Rig:
            root = work / f"{kind}-{run:03d}"
            shutil.rmtree(root, ignore_errors=True)
            return Rig.create(root, keys_dir)
        return make

    started = time.monotonic()
    jobs: list[Callable[[], Row]] = [
        lambda: link_faults(rig_for("link"), link_runs, args.seed, work / "camera-template"),
        lambda: dock_kills(rig_for("kill"), kill_runs, args.seed, work / "camera-template"),
        lambda: camera_power_cuts(rig_for("cut"), cut_runs, args.seed, work / "camera-template"),
        lambda: soak(rig_for("soak")(0), soak_hours, 20 if soak_hours >= 6 else 4, 4 if soak_hours >= 6 else 2,
                     args.seed),
        lambda: pytest_row("camera power cut while recording (every packet around rotations; SIGKILLs)",
                           ["tests/test_power_cut.py"], {"POWERCUT_RUNS": "8" if args.quick else "50"}),
        lambda: pytest_row("rogue peers, kill points, replays (regression tests)",
                           ["tests/test_dock_hostile.py", "tests/test_dock.py", "-k",
                            "hostile or lying or babbling or damages or status_json or peer or receipt or replay "
                            "or killed or orphan or overlap or event_pieces or stalled or reading"]),
        lambda: pytest_row("fuzzing (hypothesis: frames, messages, manifests, event logs, listings)",
                           ["tests/test_fuzz.py", "tests/test_link.py"]
                           + ([] if args.quick else ["--hypothesis-profile=long"]))]
    rows = []
    for job in jobs:
        t0 = time.monotonic()
        rows.append(job())
        rows[-1].seconds = time.monotonic() - t0
        print(f"  … {rows[-1].name}: {rows[-1].runs} runs in {rows[-1].seconds:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))
    for r in rows:
        for note in r.notes[:10]:
            print(f"  {r.name}: {note}")
    given = list(argv if argv is not None else sys.argv[1:])
    kept: list[str] = []
    while given:  # everything but where the runs were kept
        a = given.pop(0)
        if a == "--workdir" and given:
            given.pop(0)
        elif not a.startswith("--workdir="):
            kept.append(a)
    again = " ".join(shlex.quote(a) for a in kept)
    print(f"{'quick' if args.quick else 'full'} campaign, seed {args.seed}, {time.monotonic() - started:.0f} s; "
          f"reproduce: ./dev.sh campaign {again}".rstrip())
    failed = [r.name for r in rows if r.failed]
    if failed:
        print("FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
