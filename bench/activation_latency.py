"""Activation latency: from the button to footage durable on disk, over many activations.

    ./dev.sh bench activation        # or: .venv/bin/python bench/activation_latency.py [--activations 1000]

The real runtime, writer and disk, in the simulator (gpiozero MockFactory pins,
packets replayed from a clip the simulated camera encoded once). Before each
activation the 30 s pre-record buffer is full. Measured in wall-clock time:

* **double press**: second press-down edge → first pre-record bytes fsync'd;
* **announced**: the tick at which the spoken cue ends → first recording bytes fsync'd.

Baseline, same run, same disk: create a file, write one 64 KiB chunk, fsync — the
least any "durable" can cost here. Goal: p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import keys  # noqa: E402
from common.clock import VirtualClock  # noqa: E402
from device import config as device_config  # noqa: E402
from device.camera import CameraConfig, EncodedPacket, VideoParams  # noqa: E402
from device.identity import DeviceIdentity  # noqa: E402
from device.runtime import State  # noqa: E402
from simulator.camera import SimCamera  # noqa: E402
from simulator.device_sim import SimDevice  # noqa: E402
from simulator.replay import ReplayCamera  # noqa: E402

CACHE = ROOT / "bench" / ".cache"


def clip(video: VideoParams) -> list[EncodedPacket]:
    path = CACHE / f"clip-{video.width}x{video.height}-{video.bitrate}.pkl"
    if path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    cam = SimCamera(CameraConfig("sim", video, None, {"seed": 3, "noise": 32}), clock=VirtualClock())
    packets = ReplayCamera.record(cam, 10, VirtualClock()).clip
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(packets))
    return packets


class FsyncWatch:
    """Wall time of every fsync of a segment file (wraps os.fsync in this process)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._real = os.fsync
        os.fsync = self._fsync  # type: ignore[assignment]

    def _fsync(self, fd: int) -> None:
        self._real(fd)
        t = time.perf_counter()
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".ts.age"):
            self.times.append(t)

    def first_after(self, t0: float) -> float:
        return next(t for t in self.times if t >= t0)


def baseline_ms(directory: Path, n: int = 200) -> list[float]:
    chunk = os.urandom(65552)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fd = os.open(directory / f"b{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, chunk)
        os.fsync(fd)
        out.append((time.perf_counter() - t0) * 1e3)
        os.close(fd)
        os.unlink(directory / f"b{i}")
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activations", type=int, default=1000, help="total, alternating double/announced")
    parser.add_argument("--pre-record", type=float, default=30)
    parser.add_argument("--resolution", default="1280x720")
    parser.add_argument("--bitrate", type=int, default=4_000_000)
    args = parser.parse_args()
    w, h = (int(x) for x in args.resolution.split("x"))
    video = VideoParams(width=w, height=h, fps=30, bitrate=args.bitrate, gop_frames=30)
    packets = clip(video)
    mbit = sum(len(p.data) for p in packets) * 8 / ((packets[-1].pts_us - packets[0].pts_us) / 1e6) / 1e6

    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp_name:
        tmp = Path(tmp_name)
        auth = keys.create_authority(tmp / "keys")
        dev = keys.create_device_key(tmp / "keys")
        cfg = device_config.from_dict({
            "device": {"id": "bench", "store": "store", "recipients": [auth.recipient]},
            "camera": {"width": w, "height": h, "bitrate": args.bitrate, "audio": False},
            "recording": {"pre_record_seconds": args.pre_record},
            "cues": {"wav": str(ROOT / "bench" / ".cache" / "announce.wav")},
            "storage": {"warn_free_mb": 2, "full_free_mb": 1},
        }, base_dir=tmp)
        identity = DeviceIdentity.load("bench", dev.private, [auth.recipient])
        base = baseline_ms(tmp)
        sim = SimDevice.create(cfg, identity, camera_factory=lambda clock: ReplayCamera(packets, video, clock))
        rt = sim.runtime
        watch = FsyncWatch()
        rt.boot()
        lat: dict[str, list[float]] = {"double": [], "announced": []}
        fill_s = args.pre_record + 1.5
        t_start = time.perf_counter()
        for i in range(args.activations):
            now_s = (sim.clock.monotonic_us() - sim.boot_us) / 1e6
            sim.run_until(now_s + fill_s)
            if i % 2 == 0:  # double press: tap, gap, second press-down
                sim.pin.drive_low(); sim.run_until(now_s + fill_s + 0.15)
                sim.pin.drive_high(); sim.run_until(now_s + fill_s + 0.35)
                t0 = time.perf_counter()
                sim.pin.drive_low()
                rt.tick()
                assert rt.state == State.RECORDING
                lat["double"].append((watch.first_after(t0) - t0) * 1e3)
                sim.pin.drive_high()
            else:  # announced: tap, then wait for the cue to end
                sim.pin.drive_low(); sim.run_until(now_s + fill_s + 0.15)
                sim.pin.drive_high()
                while rt.state != State.RECORDING:
                    before = rt.state
                    t0 = time.perf_counter()
                    sim.step()
                    if before == State.ANNOUNCING and rt.state == State.RECORDING:
                        lat["announced"].append((watch.first_after(t0) - t0) * 1e3)
            now_s = (sim.clock.monotonic_us() - sim.boot_us) / 1e6
            sim.run_until(now_s + 1)
            rt.stop_recording("bench")
            for f in rt.store.dir.iterdir():  # the dock would free them; keep the disk small
                f.unlink()
        total_s = time.perf_counter() - t_start
        rt.close()

    print(f"{args.activations} activations, {args.pre_record:g} s pre-record buffer full each time, "
          f"{w}x{h} H.264 at {mbit:.1f} Mbit/s, real writer and disk; {total_s:.0f} s wall")
    print(f"baseline (create + write 64 KiB + fsync): p50 {pct(base, 50):.2f} ms  p99 {pct(base, 99):.2f} ms")
    ok = True
    for kind, values in lat.items():
        p50, p99 = pct(values, 50), pct(values, 99)
        ok &= p99 <= 100
        print(f"{kind:10} n={len(values):4}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  max {max(values):7.2f} ms  "
              f"p99/baseline-p50 {p99 / pct(base, 50):5.1f}x  (goal p99 ≤ 100 ms)")
    print("goal met" if ok else "GOAL NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
