"""``python -m system build|boot`` (``./dev.sh system build|boot``): the bench's test machine.

* ``build``: the Debian root, the wheelhouse and a provisioned disk in ``run/system/bench``
  (each step cached by its inputs' hash); prints the timings.
* ``boot``: builds, boots it under qemu and keeps it running until Ctrl-C, with the console
  forwarded to a loopback port (logins ``sichtung`` / ``leitung``, see system/image.py) and
  the guest's serial console in ``run/system/bench/console.log``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from system import image
from system.qemu import Qemu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dev.sh system", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["build", "boot"])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="default: run/system/bench (run/system/bench-arm64 for --arch arm64)")
    parser.add_argument("--arch", choices=["amd64", "arm64"], default="amd64",
                        help="arm64: a camera alone, Debian's arm64 kernel on qemu's virt board (slow: "
                             "the root is built under qemu-user, about half an hour)")
    args = parser.parse_args(argv)
    workdir = args.workdir or image.REPO / "run" / "system" / ("bench" if args.arch == "amd64" else "bench-arm64")
    roles = ("office", "dock", "camera") if args.arch == "amd64" else ("camera",)
    m = image.provision(workdir, arch=args.arch, roles=roles)
    print("built:", json.dumps({k: round(v, 1) for k, v in m.timings.items()}), f"disk {m.disk}")
    if args.what == "build":
        return 0
    q = Qemu(workdir, m.disk, m.kernel, m.initrd, arch=args.arch)
    q.start()
    print(f"booting; serial console in {q.console}", flush=True)
    print(f"agent answered after {q.wait_agent():.1f} s", flush=True)
    state = q.run("systemctl is-system-running --wait", timeout=600).out.strip()
    print(f"system {state} after {time.monotonic() - q.started_at:.1f} s")
    if args.arch == "amd64":
        print(f"console: http://localhost:{q.console_port}/ (sichtung / {image.CLERK[1]}, "
              f"leitung / {image.SUPERVISOR[1]}); Ctrl-C powers it off")
    else:
        print("a camera alone; Ctrl-C powers it off")
    try:
        while q.proc is not None and q.proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        q.poweroff()
    return 0


if __name__ == "__main__":
    sys.exit(main())
