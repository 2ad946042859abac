"""The booted system's numbers (``sudo ./dev.sh bench booted``): ratios, not timed tests.

Boots the bench machine (system/image.py, system/qemu.py; TCG, 2 vCPUs, 2 GiB) and reports:

* **boot to READY=1** of each role's service: the journal's monotonic time of systemd's
  "Started" line, which a Type=notify unit reaches only when the process said READY=1;
* **the offload over the real CDC-ACM link** (camera ``ttyGS0`` → dock ``ttyACM0`` through
  dummy_hcd) against a **raw copy** over the same pair in the same run (``dd`` on both
  ends, the ports in raw mode), with the CPU seconds of both sides (systemd's cgroup
  accounting for the services, ``time`` for dd). The ratio is what the protocol, the
  encryption checks and the store cost on top of the wire.

Everything runs under emulation: absolute numbers mean little, the ratio is the result.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from system import image  # noqa: E402
from system.qemu import Qemu  # noqa: E402

UDC = "/sys/kernel/config/usb_gadget/bodycam/UDC"
DEVICE = "/opt/bodycam/venv/bin/bodycam-device --config /etc/bodycam/bodycam.toml"
RAW_MB = 16


def cpu_s(q: Qemu, unit: str) -> float:
    return int(q.run(f"systemctl show {unit} -p CPUUsageNSec --value").out.strip() or 0) / 1e9


def main() -> int:
    work = REPO / "run" / "system" / "bench-booted"
    m = image.provision(work)
    q = Qemu(work, m.disk, m.kernel, m.initrd)
    q.start()
    try:
        q.wait_agent()
        q.run("systemctl is-system-running --wait", timeout=600)
        for unit in ("bodycam-device", "bodycam-dock", "bodycam-console"):
            q.wait_for(f"systemctl is-active -q {unit}", 300, unit)
        journal = q.run("journalctl -b -o short-monotonic --no-pager | grep -E 'Started bodycam-(device|dock|console)'").out
        ready = {m.group(2): float(m.group(1)) for m in
                 re.finditer(r"\[\s*([\d.]+)\].*Started (bodycam-\w+)\.service", journal)}
        # footage to offload: a minute of recording, out of the dock
        q.run(f"echo '' > {UDC}").check("unplug")
        q.run(f"{DEVICE} --press double").check("press")
        time.sleep(60)
        q.run(f"{DEVICE} --press hold", timeout=30).check("hold")
        time.sleep(5)
        size = int(q.run("du -sb /var/lib/bodycam/store/segments | cut -f1").out.split()[0])
        # the raw copy: both services stopped, dd on both ends of the same gadget pair
        q.run("systemctl stop bodycam-dock bodycam-device", timeout=120).check("stop")
        q.run(f"echo dummy_udc.0 > {UDC}").check("plug")
        q.wait_for("ls /dev/ttyACM0", 60, "ttyACM0")
        raw = q.run(
            "stty -F /dev/ttyGS0 raw -echo && stty -F /dev/ttyACM0 raw -echo && "
            f"( TIMEFORMAT='reader %R %U %S'; time dd if=/dev/ttyACM0 of=/dev/null bs=64k iflag=fullblock "
            f"count={RAW_MB * 16} status=none ) 2>/tmp/reader & sleep 1; "
            f"TIMEFORMAT='writer %R %U %S'; time dd if=/dev/zero of=/dev/ttyGS0 bs=64k count={RAW_MB * 16} status=none; "
            "wait; cat /tmp/reader", timeout=600).check("raw copy")
        times = {m.group(1): [float(x) for x in m.group(2, 3, 4)]
                 for m in re.finditer(r"(reader|writer) ([\d.]+) ([\d.]+) ([\d.]+)", raw.out + raw.err)}
        raw_s = times["reader"][0]
        raw_rate = RAW_MB * 2**20 / raw_s
        # the offload: the services as shipped
        q.run(f"echo '' > {UDC}").check("unplug")
        q.run("systemctl start bodycam-device bodycam-dock", timeout=300).check("start")
        q.wait_for("systemctl is-active -q bodycam-device && systemctl is-active -q bodycam-dock", 300, "up")
        cpu0 = {u: cpu_s(q, u) for u in ("bodycam-device", "bodycam-dock")}
        t0 = time.monotonic()
        q.run(f"echo dummy_udc.0 > {UDC}").check("plug")
        q.wait_for("! ls /var/lib/bodycam/store/segments | grep -q '\\.ts\\.age$'", 900, "offload", every=1)
        offload_s = time.monotonic() - t0
        cpu = {u: cpu_s(q, u) - cpu0[u] for u in cpu0}
        rate = size / offload_s
        print(json.dumps({"boot_to_ready_s": ready, "raw_copy": {"MiB": RAW_MB, "s": raw_s,
                          "MB_per_s": raw_rate / 1e6, "cpu_s": {k: v[1] + v[2] for k, v in times.items()}},
                          "offload": {"MB": size / 1e6, "s": offload_s, "MB_per_s": rate / 1e6, "cpu_s": cpu}},
                         indent=1))
        print(f"boot to READY=1 (s after the kernel started): "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(ready.items())))
        print(f"raw copy ttyGS0→ttyACM0: {raw_rate / 1e6:.2f} MB/s; offload (plug to freed, {size / 1e6:.1f} MB): "
              f"{rate / 1e6:.2f} MB/s; offload/raw = {rate / raw_rate:.2f}×; CPU s: dock {cpu['bodycam-dock']:.1f}, "
              f"camera {cpu['bodycam-device']:.1f} (raw: reader {sum(times['reader'][1:]):.1f}, writer "
              f"{sum(times['writer'][1:]):.1f})")
    finally:
        q.poweroff()
    return 0


if __name__ == "__main__":
    sys.exit(main())
