"""``bodycam-sim demo``: a whole shift, camera to evidence store, in virtual time.

What happens, in order:

1. keys: the evidence office's age identity, the dock's signing key, one device key
   per camera;
2. the dock: ``dock.toml``, trained officers registered, cameras enrolled, each camera
   assigned to an officer (``bodycam-dock`` does the same from the command line);
3. N cameras, each its own ``bodycam-sim device`` process, play scripted incidents
   (announced recordings and an emergency double press over the fleet);
4. each camera goes into the dock: a real pty pair (socat) appears in the dock's
   watched directory, the dock's hotplug service starts a bay for it, and the bays
   run in parallel: authenticate, set the clock, assign the officer, offload, verify,
   store, receipt — the camera frees what the dock has stored;
5. a summary: recordings, durations, officers, where they are, how to play one.

>>> # summary = run_demo(Path("run/demo"), devices=3)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import age_format, keys, signed
from common.manifest import read_manifest
from dock import config as dock_config
from dock.hotplug import Dock
from dock.registry import Registry
from simulator.serial_link import PtyCable

MARKER = ".bodycam-demo"
OFFICERS = [("KOD-101", "Anna Becker"), ("KOD-102", "Murat Yilmaz"), ("KOD-103", "Jana Schulz"),
            ("KOD-104", "Lukas Hoffmann"), ("KOD-105", "Sofia Wagner"), ("KOD-106", "Paul Richter"),
            ("KOD-107", "Emma Koch"), ("KOD-108", "Ben Klein")]
# Incidents per camera, cycled over the fleet: announced recordings with a marker, and
# an emergency start (double press: no announcement).
SCRIPTS = [
    [("press", 35), ("press", 42), ("hold", 50)],            # announced, pre-record 30 s, a marker
    [("double", 20), ("hold", 34)],                          # imminent danger: no announcement
    [("press", 12), ("hold", 22), ("double", 30), ("hold", 38)],
]


class DemoError(Exception):
    """The demo cannot run as asked; the message says why."""


def _script(steps: list[tuple[str, float]]) -> str:
    out = []
    for action, at in steps:
        out.append(f'[[steps]]\nat = {at}\naction = "{action}"\n' + ('seconds = 3.5\n' if action == "hold" else ""))
    out.append(f'[[steps]]\nat = {max(a for _, a in steps) + 6}\naction = "end"\n')
    return "\n".join(out)


def prepare_workdir(workdir: Path) -> Path:
    workdir = workdir.expanduser().absolute()
    if workdir.exists():
        if not workdir.is_dir():
            raise DemoError(f"--workdir {workdir} is a file")
        if any(workdir.iterdir()):
            if not (workdir / MARKER).exists():
                raise DemoError(f"--workdir {workdir} is not empty and not an earlier demo; name a new directory")
            shutil.rmtree(workdir)  # an earlier demo: start afresh
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by bodycam-sim demo; removed by the next demo run\n")
    return workdir


def provision(workdir: Path, devices: int) -> dict[str, Any]:
    """Keys, dock config, officers, enrolment, assignment, camera configs and scripts."""
    authority = keys.create_authority(workdir / "keys")
    dock_keys = keys.create_device_key(workdir / "dock" / "keys", name="dock")
    dock_toml = workdir / "dock" / "dock.toml"
    dock_toml.write_text('[dock]\nid = "dock-wache-1"\nkey = "keys/dock.key"\nstate = "state"\n'
                         f'store = "{workdir / "evidence"}"\nwatch = "{workdir / "dev" / "serial" / "by-id"}"\n'
                         '[transfer]\nwindow = 8\ntimeout_s = 20\n')
    registry = Registry(workdir / "dock" / "state")
    cams = []
    for i in range(devices):
        cam_id = f"kod-cam-{i + 1:02d}"
        officer_id, name = OFFICERS[i % len(OFFICERS)]
        registry.add_officer(officer_id, name, "2026-02-16")
        cam_dir = workdir / "cams" / cam_id
        dev = keys.create_device_key(cam_dir / "keys")
        registry.enroll(cam_id, dev.public)
        registry.assign(cam_id, officer_id)
        (cam_dir / "bodycam.toml").write_text(
            f'[device]\nid = "{cam_id}"\nkey = "keys/device.key"\nrecipients = ["{authority.recipient}"]\n'
            'store = "store"\n[camera]\nwidth = 640\nheight = 360\nfps = 15\nbitrate = 1500000\naudio = true\n'
            '[recording]\npre_record_seconds = 30\nsegment_seconds = 10\n'
            f'[link]\ndock_keys = ["{dock_keys.public}"]\n')
        (cam_dir / "shift.toml").write_text(_script(SCRIPTS[i % len(SCRIPTS)]))
        cams.append({"id": cam_id, "dir": cam_dir, "officer": officer_id, "public": dev.public})
    return {"authority": authority, "dock_toml": dock_toml, "cams": cams}


def run_demo(workdir: Path, devices: int = 3, timeout_s: float = 120.0) -> dict[str, Any]:
    if shutil.which("socat") is None:
        raise DemoError("socat is not installed (apt-get install socat): it is the simulated USB cable")
    workdir = prepare_workdir(workdir)
    setup = provision(workdir, devices)
    config = dock_config.load(setup["dock_toml"])
    dock = Dock(config)
    dock.start()
    procs: dict[str, subprocess.Popen[str]] = {}
    cables: list[PtyCable] = []
    started = time.monotonic()
    try:
        for cam in setup["cams"]:
            node = workdir / "cams" / cam["id"] / "ttyGS0"
            cam["node"] = node
            procs[cam["id"]] = subprocess.Popen(
                [sys.executable, "-m", "simulator.cli", "device", "--out", str(cam["dir"]), "--config",
                 str(cam["dir"] / "bodycam.toml"), "--keys", str(cam["dir"] / "keys"), "--script",
                 str(cam["dir"] / "shift.toml"), "--noise", "12", "--seed", str(len(procs)), "--dock", str(node),
                 "--dock-timeout", str(timeout_s), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        cable_of: dict[str, PtyCable] = {}
        results = {}
        while len(results) < len(procs):
            for cam in setup["cams"]:
                cam_id, proc = cam["id"], procs[cam["id"]]
                docking = Path(f"{cam['node']}.docking").exists()
                if docking and cam_id not in cable_of:  # put into the dock: plug the cable
                    cable_of[cam_id] = PtyCable(
                        workdir / "dev" / "serial" / "by-id" / f"usb-bodycam_{cam_id}-if00", cam["node"])
                    cables.append(cable_of[cam_id])
                elif not docking and cam_id in cable_of:  # taken out: unplug
                    cable_of.pop(cam_id).unplug()
                if proc.poll() is not None and cam_id not in results:
                    out, err = proc.communicate()
                    if proc.returncode != 0:
                        raise DemoError(f"camera {cam_id} failed: {err.strip()[-2000:]}")
                    results[cam_id] = json.loads(out)
            if time.monotonic() - started > timeout_s:
                raise DemoError("the shift did not finish in time")
            time.sleep(0.01)
        while dock.busy() and time.monotonic() - started < timeout_s:
            time.sleep(0.05)
    finally:
        for cable in cables:
            cable.unplug()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        dock.stop()
    return summarise(workdir, setup, dock, results, time.monotonic() - started)


def summarise(workdir: Path, setup: dict[str, Any], dock: Dock, results: dict[str, Any],
              elapsed: float) -> dict[str, Any]:
    store = workdir / "evidence"
    identity = keys.load_identity(setup["authority"].identity)
    recordings: dict[str, dict[str, Any]] = {}
    for cam in setup["cams"]:
        key = keys.load_verify_key(cam["public"])
        seg_dir = store / "devices" / cam["id"] / "segments"
        by_rec: dict[str, list] = defaultdict(list)
        for path in sorted(seg_dir.glob("*.manifest")):
            try:
                m = read_manifest(path.read_bytes(), key)
                data = (seg_dir / m.file).read_bytes()
                ok = age_format.recover(data, identity).complete if m.complete else True
                ok = ok and hashlib.sha256(data).digest() == m.sha256
            except (signed.SignatureError, age_format.AgeError, OSError):
                continue
            by_rec[m.recording_id].append((m, ok, seg_dir / m.file))
        for rec_id, parts in by_rec.items():
            parts.sort(key=lambda p: p[0].seq)
            first = parts[0][0]
            duration = sum((m.end_mono_us or m.start_mono_us) - m.start_mono_us for m, _, _ in parts) / 1e6
            recordings[rec_id] = {
                "id": rec_id, "device": cam["id"], "officer": first.officer_id, "announced": first.announced,
                "segments": len(parts), "duration_s": round(duration, 1),
                "verified": all(ok for _, ok, _ in parts) and _contiguous([m.seq for m, _, _ in parts]),
                "start_utc": first.start_utc_us, "files": [str(f) for _, _, f in parts]}
    bays = dock.status()["bays"]
    first_rec = next(iter(recordings.values()), None)
    play = None
    if first_rec:
        files = " ".join(first_rec["files"])
        play = (f"for f in {files}; do age -d -i {setup['authority'].identity} \"$f\"; done > recording.ts && "
                "ffprobe recording.ts   # or: ffplay recording.ts")
    return {
        "workdir": str(workdir), "store": str(store), "identity": str(setup["authority"].identity),
        "dock_config": str(setup["dock_toml"]), "elapsed_s": round(elapsed, 1),
        "recordings": sorted(recordings.values(), key=lambda r: (r["device"], r["start_utc"])),
        "devices": [{"id": cam["id"], "officer": cam["officer"],
                     "segments_left": results.get(cam["id"], {}).get("segments_left"),
                     "bay": next((b["state"] for b in bays if b["device"] == cam["id"]), None)}
                    for cam in setup["cams"]],
        "quarantine": sorted(str(p) for p in (store / "quarantine").rglob("*.reason.json")),
        "play": play,
    }


def _contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False


def print_summary(s: dict[str, Any]) -> None:
    print(f"Shift done in {s['elapsed_s']} s: {len(s['recordings'])} recordings from {len(s['devices'])} cameras "
          f"are in the evidence store {s['store']}\n")
    print(f"{'recording':<44} {'officer':<9} {'start':<6} {'segs':>4} {'dur s':>6}  verified")
    for r in s["recordings"]:
        print(f"{r['id']:<44} {r['officer'] or '—':<9} {'ann.' if r['announced'] else 'EMERG':<6} "
              f"{r['segments']:>4} {r['duration_s']:>6}  {'yes' if r['verified'] else 'NO'}")
    print()
    for d in s["devices"]:
        print(f"camera {d['id']} ({d['officer']}): bay {d['bay']}, {d['segments_left']} segments left on it")
    if s["quarantine"]:
        print("\nQUARANTINED (see the reasons):\n  " + "\n  ".join(s["quarantine"]))
    print(f"\nDecrypt and play the first recording with stock tools (the evidence office's key is "
          f"{s['identity']}):\n  {s['play']}")
