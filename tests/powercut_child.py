"""The camera process the power-cut campaign SIGKILLs (tests/test_power_cut.py).

``python tests/powercut_child.py WORK KEYDIR RECIPIENT``: the whole runtime (sim camera,
MockFactory pins, event log) in virtual time with 1 s segments; a double press at 2 s,
then records until killed. Every fsync is logged to WORK/fsync.log (tests/powercut.py)
and the pts of every packet handed to the writer to WORK/progress, both before the call
returns, so a SIGKILL loses none of it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from device import config as device_config  # noqa: E402
from device.identity import DeviceIdentity  # noqa: E402
from simulator.device_sim import SimDevice  # noqa: E402
from simulator.powercut import FsyncTracker  # noqa: E402


def main() -> None:
    work, key_dir, recipient = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    work.mkdir(parents=True)
    FsyncTracker(work / "fsync.log").install()
    cfg = device_config.from_dict({
        "camera": {"width": 160, "height": 120, "fps": 15, "bitrate": 200_000, "audio": False},
        "recording": {"pre_record_seconds": 1, "segment_seconds": 1},
        "storage": {"warn_free_mb": 100, "full_free_mb": 20}, "device": {"store": "store"}}, base_dir=work)
    identity = DeviceIdentity.load("cut-cam", key_dir / "device.key", [recipient])
    sim = SimDevice.create(cfg, identity, noise=20)
    rt = sim.runtime
    progress = os.open(work / "progress", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    write = rt.recorder._write

    def traced(packet):
        write(packet)
        if packet.kind == "video":
            os.write(progress, f"{packet.pts_us}\n".encode())

    rt.recorder._write = traced  # type: ignore[method-assign]
    rt.boot()
    sim.schedule({"at": 2, "action": "double"})
    sim.run_until(10_000)


if __name__ == "__main__":
    main()
