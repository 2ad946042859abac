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
5. the evidence office's view: the store (a directory, or ``--store s3://bucket`` on any
   S3 with Object Lock) was initialised with ``bodycam-evidence init`` before the
   shift; the summary lists and verifies the recordings from the store and says how to
   export one as an MP4.

>>> # summary = run_demo(Path("run/demo"), devices=3)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from common import keys
from dock import config as dock_config
from dock.hotplug import Dock
from dock.registry import Registry
from evidence.errors import StoreUnavailable
from evidence.index import Filters, Index
from evidence.office import Office
from evidence.store import EvidenceStore, open_store
from evidence.verify import verify_all
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


def _script_length(steps: list[tuple[str, float]]) -> float:
    """Seconds from the shift's start to its end (the script's last step)."""
    return max(a for _, a in steps) + 6


def _script(steps: list[tuple[str, float]]) -> str:
    out = []
    for action, at in steps:
        out.append(f'[[steps]]\nat = {at}\naction = "{action}"\n' + ('seconds = 3.5\n' if action == "hold" else ""))
    out.append(f'[[steps]]\nat = {_script_length(steps)}\naction = "end"\n')
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


SUPERVISOR = "KOD-SL-1"


def prepare_store(location: str, office_key: Path) -> EvidenceStore:
    """The evidence office's ``init``: a fresh store (a directory, or an S3 bucket made with
    Object Lock), the office key registered, the policy on record."""
    try:
        store = open_store(location)
        store.prepare(14)  # idempotent: for S3 the bucket must exist before it can be looked into
        if store.devices():
            raise DemoError(f"the store {location} already holds evidence; name a fresh bucket, prefix or "
                            "directory (e.g. s3://bucket/run2)")
        office = Office(store, keys.load_signing_key(office_key), lambda: time.time_ns() // 1000)
        office.init(14, [SUPERVISOR], by="evidence-office", demo=True)  # a demo store: purge --now may look ahead
        for officer_id, name in OFFICERS:      # the names the console shows beside the numbers
            office.set_officer(officer_id, name, by="evidence-office")
    except (StoreUnavailable, ValueError) as exc:
        raise DemoError(f"the evidence store {location} cannot be used: {exc}") from None
    return store


def provision(workdir: Path, devices: int, store: str) -> dict[str, Any]:
    """Keys, dock config, officers, enrolment, assignment, camera configs and scripts."""
    authority = keys.create_authority(workdir / "keys")
    office = keys.create_device_key(workdir / "keys", name="office")
    dock_keys = keys.create_device_key(workdir / "dock" / "keys", name="dock")
    dock_toml = workdir / "dock" / "dock.toml"
    dock_toml.write_text('[dock]\nid = "dock-wache-1"\nkey = "keys/dock.key"\nstate = "state"\n'
                         f'store = "{store}"\nwatch = "{workdir / "dev" / "serial" / "by-id"}"\n'
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
    return {"authority": authority, "office_key": office.private, "dock_toml": dock_toml, "cams": cams,
            "store": store}


def run_demo(workdir: Path, devices: int = 3, timeout_s: float = 120.0, store: str | None = None
             ) -> dict[str, Any]:
    """A shift into ``store`` (default: WORKDIR/evidence; or ``s3://bucket[/prefix]``, with
    credentials from the environment that may create a bucket with Object Lock)."""
    if shutil.which("socat") is None:
        raise DemoError("socat is not installed (apt-get install socat): it is the simulated USB cable")
    if store is not None and "://" not in store:
        store = str(Path(store).expanduser().absolute())
    workdir = prepare_workdir(workdir)
    setup = provision(workdir, devices, store or str(workdir / "evidence"))
    prepare_store(setup["store"], setup["office_key"])
    config = dock_config.load(setup["dock_toml"])
    # The cameras run their shifts in virtual time, far faster than the wall clock. So that
    # their clocks and the dock's agree with the wall clock (a recording never ends after the
    # receipt for it), the shift is played as if it began when it would have had to: the
    # dock sets each camera's clock at its shift-start docking to the wall clock less the
    # length of its shift; at its shift-end docking the dock's clock is the wall clock, and
    # the small difference is the offset the dock records then (clock_set).
    plugs: dict[str, int] = {}
    shift_us = {f"usb-bodycam_{cam['id']}-if00": int((_script_length(SCRIPTS[i % len(SCRIPTS)]) + 10) * 1e6)
                for i, cam in enumerate(setup["cams"])}

    def clock_for(node: Path) -> Callable[[], int]:
        back = shift_us.get(node.name, 0) if plugs.get(node.name, 0) <= 1 else 0
        return lambda: time.time_ns() // 1000 - back
    dock = Dock(config, clock_for=clock_for)
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
                 str(cam["dir"] / "shift.toml"), "--noise", "12", "--seed", str(len(procs)),
                 "--scene", "faces" if not procs else "shapes", "--dock", str(node),
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
                    plugs[f"usb-bodycam_{cam_id}-if00"] = plugs.get(f"usb-bodycam_{cam_id}-if00", 0) + 1
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
    """What the evidence office sees in the store now (the same for a directory and S3)."""
    store = open_store(setup["store"])
    index = Index(store)  # where the printed commands find it too
    index.refresh()
    verified = {r["id"]: r["ok"] for r in verify_all(index)["recordings"]}
    recordings = [{"id": r["id"], "device": r["device"], "officer": r["officer"], "announced": bool(r["announced"]),
                   "segments": r["segments"], "duration_s": round(r["duration_us"] / 1e6, 1),
                   "verified": verified.get(r["id"], False), "start_utc": r["start_utc_us"]}
                  for r in index.page(Filters(), limit=10_000).rows]
    index.close()
    bays = dock.status()["bays"]
    first = min(recordings, key=lambda r: (r["device"], r["start_utc"]), default=None)
    cli = f"{tool('bodycam-evidence')} --store {setup['store']} --key {setup['office_key']}"
    return {
        "workdir": str(workdir), "store": setup["store"], "identity": str(setup["authority"].identity),
        "office_key": str(setup["office_key"]), "dock_config": str(setup["dock_toml"]),
        "elapsed_s": round(elapsed, 1),
        "recordings": sorted(recordings, key=lambda r: (r["device"], r["start_utc"])),
        "devices": [{"id": cam["id"], "officer": cam["officer"],
                     "segments_left": results.get(cam["id"], {}).get("segments_left"),
                     "bay": next((b["state"] for b in bays if b["device"] == cam["id"]), None)}
                    for cam in setup["cams"]],
        "quarantine": [store.backend.where(k) for k in store.backend.keys("quarantine") if k.endswith(".reason.json")],
        "list": f"{cli} list",
        "export": None if first is None else (
            f"{cli} export --recording {first['id']} --identity {setup['authority'].identity} "
            f"--out {first['id']}.mp4 --by sichtung && ffprobe {first['id']}.mp4"),
    }


def tool(name: str) -> str:
    """How the shell reaches one of this package's commands, as printed for the user: the
    script beside this interpreter (``.venv/bin/…``, which is on no one's PATH), relative
    to the working directory when it is below it."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        return name
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path.absolute())


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
    print(f"\nThe evidence office's view (audit trail, holds, deletion):\n  {s['list']}")
    if s["export"]:
        print(f"Export the first recording as an MP4 with its evidence report, and play it with stock tools:\n"
              f"  {s['export']}")
