"""``python -m system.arm64`` (as root): the camera alone on a Pi's kind of processor, by hand.

The same steps as the booted test's machine (system/image.py), for ``arm64``: Debian's arm64
root built by ``mmdebstrap`` under qemu-user's binfmt emulation (about half an hour here),
the arm64 wheelhouse (the project's wheel and every dependency as a binary wheel for
aarch64, ``pip download --platform``), ``flash.sh camera --camera-backend sim --pins mock``,
the first boot's install in a chroot (again under qemu-user), then qemu's ``virt`` board with
a Cortex-A72 (a Raspberry Pi 4's core) and Debian's arm64 kernel, under TCG. It waits for
the camera service's READY=1, presses the bench button for a recording, and reports how
long each step took and what the camera sealed.

Not in CI: emulating another processor on top of everything else would take the CI's time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from system import image
from system.qemu import Qemu

DEVICE = "/opt/bodycam/venv/bin/bodycam-device --config /etc/bodycam/bodycam.toml"
STORE = "/var/lib/bodycam/store/segments"


def main() -> int:
    work = image.REPO / "run" / "system" / "bench-arm64"
    t = time.monotonic()
    m = image.provision(work, arch="arm64", roles=("camera",))
    report: dict[str, object] = {"provision_s": round(time.monotonic() - t, 1),
                                 **{f"{k}_s": round(v, 1) for k, v in m.timings.items()}}
    print("provisioned:", json.dumps(report), flush=True)
    q = Qemu(work, m.disk, m.kernel, m.initrd, arch="arm64")
    q.start()
    try:
        report["agent_s"] = round(q.wait_agent(timeout=1200), 1)
        print(f"agent answered after {report['agent_s']} s", flush=True)
        report["uname"] = q.run("uname -srm").out.strip()
        q.wait_for("systemctl is-active -q bodycam-device", 1800, "the camera ready", every=5)
        report["camera_ready_s"] = round(time.monotonic() - q.started_at, 1)
        report["started"] = q.run("journalctl -b -o short-monotonic --no-pager -u bodycam-device "
                                  "| grep -m1 'Started bodycam-device'").out.strip()
        q.run(f"{DEVICE} --press double", timeout=120).check("press")
        q.wait_for(f"ls {STORE} | grep -q '\\.manifest$'", 600, "a sealed segment", every=5)
        time.sleep(10)
        q.run(f"{DEVICE} --press hold", timeout=120).check("hold")
        time.sleep(15)
        report["segments"] = q.run(f"ls -l {STORE}").out.strip().splitlines()
        report["journal"] = q.run("journalctl -b -u bodycam-device -o cat --no-pager | tail -25").out.splitlines()
        report["watchdog"] = q.run("systemctl show bodycam-device -p WatchdogUSec,NRestarts,ActiveState").out.split()
    finally:
        (work / "arm64-report.json").write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        q.poweroff(timeout=300)
    return 0


if __name__ == "__main__":
    sys.exit(main())
