"""Write-path benchmark: our in-process pipeline vs. the stock-tool pipeline, same packets.

    ./dev.sh bench                 # or: .venv/bin/python bench/write_path.py [--minutes 10]

1. Encodes 10 s of 1080p30 H.264 at 8 Mbit/s once (simulated scene plus sensor-like
   noise so the encoder really spends the bits) and loops those packets, with
   shifted timestamps, to the requested footage length.
2. **ours**, in a child process pinned to one core: a 30 s pre-record buffer is
   filled, activated, and everything goes through TsMuxer → AgeStreamWriter →
   segment files with fsync at least once per second → signed manifests.
3. **stock**: the same Annex-B bytes piped into
   ``ffmpeg -c copy -f mpegts - | age -r … | sha256sum`` (three processes).

Prints CPU seconds per second of footage, x-real-time and peak RSS for both, and
the ratios. Goals: ours ≥ 100× real time, CPU ≤ 0.75× stock, RSS ≤ 120 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = ROOT / "bench" / ".cache"
FPS = 30
BITRATE = 8_000_000
CLIP_SECONDS = 10


def clip_packets() -> list[tuple[bytes, int, bool]]:
    """10 s of 1080p30 packets, encoded once and cached."""
    path = CACHE / f"clip-1080p30-{BITRATE}.pkl"
    if path.exists():
        with open(path, "rb") as f:  # streamed: no second 10 MB copy in the peak RSS
            return pickle.load(f)
    from common.clock import VirtualClock
    from device.camera import CameraConfig, VideoParams
    from simulator.camera import SimCamera

    video = VideoParams(width=1920, height=1080, fps=FPS, bitrate=BITRATE, gop_frames=FPS)
    cam = SimCamera(CameraConfig("sim", video, None, {"seed": 7, "noise": 48}), clock=VirtualClock())
    packets = []
    for p in cam.packets():
        packets.append((p.data, p.pts_us, p.keyframe))
        if len(packets) == CLIP_SECONDS * FPS:
            break
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(packets))
    return packets


def looped(packets, seconds: int):
    """Yield (data, pts_us, keyframe) for ``seconds`` of footage by looping the clip."""
    clip_us = CLIP_SECONDS * 1_000_000
    for loop in range(seconds // CLIP_SECONDS):
        for data, pts, key in packets:
            yield data, pts + loop * clip_us, key


# ----------------------------------------------------------------------------- ours
def run_ours(seconds: int, out_dir: Path) -> dict:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    from common import keys
    from common.clock import VirtualClock
    from device.camera import EncodedPacket, VideoParams
    from device.identity import DeviceIdentity
    from device.recorder import Recorder
    from device.ring_buffer import PreRecordBuffer
    from device.segment_store import SegmentStore
    from device.segment_writer import WriterPolicy

    packets = clip_packets()
    auth = keys.create_authority(out_dir / "keys")
    dev = keys.create_device_key(out_dir / "keys")
    identity = DeviceIdentity.load("bench", dev.private, [auth.recipient])
    video = VideoParams(width=1920, height=1080, fps=FPS, bitrate=BITRATE, gop_frames=FPS)
    clock = VirtualClock()
    rec = Recorder(SegmentStore(out_dir / "store", identity), identity, video, None, clock,
                   PreRecordBuffer(30, 256 << 20), WriterPolicy(segment_seconds=10))
    t0, c0 = time.perf_counter(), time.process_time()
    started = False
    total = 0
    for data, pts, key in looped(packets, seconds):
        clock.sleep_until_us(pts)
        if not started and pts >= 30_000_000:
            rec.start(announced=True)
            started = True
        # A fresh copy per packet, as from a real encoder: the buffer must hold 30 s of
        # distinct bytes, not 30 s of references to the same 10 s clip.
        rec.on_packet(EncodedPacket(bytes(memoryview(data)), pts, key))
        total += len(data)
    segments = rec.stop()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall_s": wall, "cpu_s": cpu, "segments": len(segments), "bytes_in": total,
            "bytes_out": sum(s.manifest.size for s in segments),
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """VmHWM of this process image (ru_maxrss would carry the parent's peak across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- stock
def run_stock(seconds: int, recipient: str) -> dict:
    packets = clip_packets()
    cmd = (f"ffmpeg -hide_banner -loglevel error -f h264 -framerate {FPS} -i - -c copy -f mpegts - "
           f"| age -r {recipient} | sha256sum")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def feed() -> None:  # plays the camera: the feeder's CPU is not counted (it is in this process)
        for data, _, _ in looped(packets, seconds):
            proc.stdin.write(data)
        proc.stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    digest = proc.stdout.read().decode().split()[0]
    proc.wait()
    feeder.join()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "sha256": digest, "returncode": proc.returncode}


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["cpu_s"])[len(runs) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3, help="runs of each pipeline, alternating; medians")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seconds = int(args.minutes * 60) // CLIP_SECONDS * CLIP_SECONDS
    if args.child:
        print(json.dumps(run_ours(seconds, args.out)))
        return 0
    packets = clip_packets()
    mbit = sum(len(d) for d, _, _ in packets) * 8 / CLIP_SECONDS / 1e6
    print(f"footage: {seconds} s of 1080p{FPS} H.264 at {mbit:.2f} Mbit/s (a {CLIP_SECONDS} s clip looped)")
    ours_runs, stock_runs = [], []
    for _ in range(args.runs):  # alternate, so both see the same disk and cache weather
        with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
            child = subprocess.run([sys.executable, __file__, "--child", "--out", tmp,
                                    "--minutes", str(args.minutes)], capture_output=True, text=True, check=True)
            ours_runs.append(json.loads(child.stdout))
            recipient = (Path(tmp) / "keys" / "authority.pub").read_text().strip()
            stock_runs.append(run_stock(seconds, recipient))
    ours, stock = median_run(ours_runs), median_run(stock_runs)
    print(f"{args.runs} runs each; CPU s ours {[round(r['cpu_s'], 2) for r in ours_runs]}, "
          f"stock {[round(r['cpu_s'], 2) for r in stock_runs]}; medians below")
    rows = [("ours (in-process, fsync ≥1/s)", ours), ("stock (ffmpeg | age | sha256sum)", stock)]
    print(f"{'pipeline':36} {'CPU s':>8} {'CPU s/footage s':>16} {'x real time':>12} {'wall s':>8}")
    for name, r in rows:
        print(f"{name:36} {r['cpu_s']:8.2f} {r['cpu_s'] / seconds:16.5f} {seconds / r['wall_s']:12.0f} "
              f"{r['wall_s']:8.2f}")
    cpu_ratio = ours["cpu_s"] / stock["cpu_s"]
    xrt = seconds / ours["wall_s"]
    print(f"peak RSS ours with a 30 s buffer: {ours['peak_rss_mb']:.0f} MB; "
          f"{ours['segments']} segments, {ours['bytes_out'] / 1e6:.0f} MB written")
    print(f"ratio CPU ours/stock: {cpu_ratio:.2f} (goal ≤ 0.75)  "
          f"x-real-time ours: {xrt:.0f} (goal ≥ 100)  RSS: {ours['peak_rss_mb']:.0f} MB (goal ≤ 120)")
    ok = cpu_ratio <= 0.75 and xrt >= 100 and ours["peak_rss_mb"] <= 120
    print("goals met" if ok else "GOALS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
