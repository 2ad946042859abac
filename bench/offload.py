"""Offload benchmark: the dock protocol against the raw serial link, in the same run.

``python bench/offload.py [--mb 64] [--runs 3]`` (or ``./dev.sh bench offload``):

1. **Link throughput.** A camera store of ``--mb`` MB of segments (signed manifests over
   random ciphertext, 4 MiB each) is served by the camera's real link service in its
   own process; the dock's bay offloads it over a socat pty pair (authenticate, list,
   pipelined reads, verify, store, receipts, the camera freeing each file). Baseline:
   the same number of bytes copied with plain pyserial writes/reads over the same kind
   of pty pair. Goal: offload ≥ 0.8 × raw.
2. **Dock CPU per MB.** Verifying and storing staged segments (manifest signature,
   SHA-256, write-once store with fsync) against hashlib SHA-256 of the same bytes
   alone. Goal: ≤ 1.3 ×.

Machines are noisy: the script alternates the two sides and prints medians and ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import keys  # noqa: E402
from common.clock import SystemClock  # noqa: E402
from common.manifest import SegmentManifest, read_manifest  # noqa: E402
from device.identity import DeviceIdentity  # noqa: E402
from device.segment_store import SegmentStore  # noqa: E402

SEGMENT = 4 << 20


def make_store(root: Path, identity: DeviceIdentity, total_mb: int) -> None:
    store = SegmentStore(root, identity)
    for i in range(max(1, (total_mb << 20) // SEGMENT)):
        seq = store.reserve_seq()
        data = os.urandom(SEGMENT)
        journal = {"device_id": identity.device_id, "device_key": identity.key_fingerprint, "officer_id": None,
                   "recording_id": "bench", "index": i, "start_utc_us": 1, "start_mono_us": 1, "first_pts_us": 1,
                   "video": {}, "audio": None, "announced": True, "pre_record_s": 0, "press_pts_us": 1,
                   "recipients": list(identity.recipients), "clock": None}
        store.segment_path(seq).write_bytes(data)
        store.begin(seq, journal)
        store.commit(SegmentManifest(**journal, seq=seq, file=store.segment_path(seq).name, size=len(data),
                                     sha256=hashlib.sha256(data).digest(), complete=True, final=False,
                                     end_utc_us=2, end_mono_us=2, last_pts_us=2, frames=1, audio_packets=0,
                                     prev=store.head.prev))


def serve(store_root: Path, key_dir: Path, node: Path) -> None:
    """The camera process: its link service alone, answering until the dock says goodbye."""
    from common.link import Link, open_port
    from device.event_log import EventLog
    from device.link_service import LinkHooks, LinkService, load_dock_keys
    identity = DeviceIdentity.load("bench-cam", key_dir / "device.key", [(key_dir / "authority.pub").read_text()])
    store = SegmentStore(store_root, identity)
    events = EventLog(store_root, identity, SystemClock())
    while not node.exists():
        time.sleep(0.001)
    service = LinkService(Link(open_port(str(node))), store, events, identity,
                          load_dock_keys([key_dir / "dock.pub.pem"]),
                          LinkHooks(log=lambda kind, **d: events.append(kind, "DOCKED", **d),
                                    docked=lambda d: None, undocked=lambda: None,
                                    set_utc=lambda utc, d: 0, assign=lambda o, d: None))
    Path(f"{node}.ready").write_text("listening")
    while not (service.finished or service.closed):
        if not service.poll():
            time.sleep(0.0002)
        events.sync()


def raw_copy(work: Path, nbytes: int) -> float:
    """Seconds to push ``nbytes`` through a pty pair with plain pyserial (64 KiB writes)."""
    import serial
    from simulator.serial_link import PtyCable
    with PtyCable(work / "raw-a", work / "raw-b") as cable:
        a, b = serial.Serial(str(cable.dock_node), timeout=1), serial.Serial(str(cable.camera_node), timeout=1)
        buf = os.urandom(64 << 10)

        def writer() -> None:
            for _ in range(nbytes // len(buf)):
                a.write(buf)
        t0 = time.perf_counter()
        t = threading.Thread(target=writer)
        t.start()
        got = 0
        while got < nbytes // len(buf) * len(buf):
            got += len(b.read(max(1, b.in_waiting)))
        t.join()
        elapsed = time.perf_counter() - t0
        a.close()
        b.close()
    return elapsed


def offload_once(work: Path, key_dir: Path, total_mb: int) -> tuple[float, int]:
    from dock.bay import Bay
    from evidence.store import FsEvidenceStore
    from dock.registry import Registry
    from simulator.serial_link import PtyCable
    cam_root, state = work / "cam", work / "state"
    shutil.rmtree(cam_root, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(work / "evidence", ignore_errors=True)
    identity = DeviceIdentity.load("bench-cam", key_dir / "device.key", [(key_dir / "authority.pub").read_text()])
    make_store(cam_root, identity, total_mb)
    registry = Registry(state)
    registry.enroll("bench-cam", key_dir / "device.pub.pem")
    node = work / "cam.tty"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(cam_root), str(key_dir), str(node)])
    try:
        with PtyCable(work / "by-id" / "bench", node):
            ready = Path(f"{node}.ready")
            while not ready.exists():  # the camera process is up and listening: time the offload only
                time.sleep(0.005)
            ready.unlink()
            bay = Bay(str(work / "by-id" / "bench"), key=keys.load_signing_key(key_dir / "dock.key"),
                      dock_id="bench-dock", registry=registry, store=FsEvidenceStore(work / "evidence"),
                      staging=state / "incoming", window=8, timeout=30)
            t0 = time.perf_counter()
            bay.start()
            bay.join()
            elapsed = time.perf_counter() - t0
            assert bay.status.state == "done", bay.status
            proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return elapsed, bay.report.bytes if bay.report else 0


def cpu_verify_store(work: Path, key_dir: Path, total_mb: int, fsync: bool = True) -> tuple[float, float]:
    """CPU seconds (user + system) for what the dock does with received bytes: stage them
    while hashing, check the manifest's signature and hash, store write-once with fsync —
    against hashlib SHA-256 of the same bytes alone."""
    from evidence.store import FsEvidenceStore
    identity = DeviceIdentity.load("bench-cam", key_dir / "device.key", [(key_dir / "authority.pub").read_text()])
    src = work / "cpu-cam"
    shutil.rmtree(src, ignore_errors=True)
    make_store(src, identity, total_mb)
    pub = identity.signing_key.public_key()
    received = []
    for m in sorted((src / "segments").glob("*.manifest")):
        data = (src / "segments" / m.name.replace(".manifest", ".ts.age")).read_bytes()
        received.append((m.read_bytes(), [data[i:i + (64 << 10)] for i in range(0, len(data), 64 << 10)]))
    staging = work / "cpu-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    store = FsEvidenceStore(work / "cpu-evidence")
    shutil.rmtree(store.root, ignore_errors=True)

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    t0 = cpu()
    for _, chunks in received:
        h = hashlib.sha256()
        for c in chunks:
            h.update(c)
    hash_only = cpu() - t0
    real_fsync = os.fsync
    if not fsync:  # the same work without the kernel writing the data back to the disk
        os.fsync = lambda fd: None  # type: ignore[assignment]
    t0 = cpu()
    for record, chunks in received:
        man = read_manifest(record, pub)
        part = staging / f"{man.file}.part"
        h = hashlib.sha256()
        with open(part, "ab") as out:
            for c in chunks:
                out.write(c)
                h.update(c)
        if h.digest() != man.sha256:
            raise AssertionError("bench store is corrupt")
        store.put_segment("bench-cam", man.seq, record, part)
    verify_store = cpu() - t0
    os.fsync = real_fsync  # type: ignore[assignment]
    return verify_store, hash_only


def bench_args(doc: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    return ap.parse_args()


def bench_keys(work: Path) -> Path:
    """Authority, camera and dock keys for a benchmark run, in ``work/keys``."""
    key_dir = work / "keys"
    keys.create_authority(key_dir)
    keys.create_device_key(key_dir)
    keys.create_device_key(key_dir, name="dock")
    return key_dir


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return
    args = bench_args(__doc__)
    work = Path(tempfile.mkdtemp(prefix="bench-offload-"))
    try:
        key_dir = bench_keys(work)
        raw, ours, cpu_ours, cpu_hash, cpu_nowb = [], [], [], [], []
        for _ in range(args.runs):
            elapsed, nbytes = offload_once(work, key_dir, args.mb)
            ours.append(nbytes / elapsed / 1e6)
            raw.append(nbytes / raw_copy(work, nbytes) / 1e6)
            v, h = cpu_verify_store(work, key_dir, args.mb)
            cpu_ours.append(v / (args.mb))
            cpu_hash.append(h / (args.mb))
            cpu_nowb.append(cpu_verify_store(work, key_dir, args.mb, fsync=False)[0] / args.mb)
        mr, mo = statistics.median(raw), statistics.median(ours)
        cv, ch = statistics.median(cpu_ours), statistics.median(cpu_hash)
        print(f"{args.runs} runs of {args.mb} MB; MB/s offload {[round(x, 1) for x in ours]}, "
              f"raw pyserial {[round(x, 1) for x in raw]}")
        print(f"throughput: offload {mo:.1f} MB/s, raw pty copy {mr:.1f} MB/s, ratio {mo / mr:.2f} (goal ≥ 0.8)")
        nw = statistics.median(cpu_nowb)
        print(f"dock CPU per MB: verify+store {cv * 1e3:.2f} ms, hashlib SHA-256 alone {ch * 1e3:.2f} ms, "
              f"ratio {cv / ch:.2f} (goal ≤ 1.3)")
        print(f"  of which the kernel writing the data to disk under fsync: {(cv - nw) * 1e3:.2f} ms; "
              f"without it {nw * 1e3:.2f} ms, ratio {nw / ch:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
