"""A simulated USB serial cable: two real ptys joined by Debian's ``socat``.

The dock side appears as a node in a watched directory (like udev's
``/dev/serial/by-id/usb-…``), the camera side as its ``/dev/ttyGS0``. Both ends are
opened with pyserial, exactly as on the hardware. :meth:`unplug` ends socat: both
ptys and the dock-side node vanish, and reads on either end fail, as when the camera
is pulled out of the dock.

>>> # cable = PtyCable(watch_dir / "usb-bodycam-cam-1", run_dir / "cam-1.tty"); cable.unplug()
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path


class PtyCable:
    def __init__(self, dock_node: Path, camera_node: Path, *, timeout: float = 10.0) -> None:
        exe = shutil.which("socat")
        if exe is None:
            raise RuntimeError("socat is not installed (apt-get install socat): it joins the two ptys")
        self.dock_node, self.camera_node = Path(dock_node), Path(camera_node)
        for node in (self.dock_node, self.camera_node):
            node.parent.mkdir(parents=True, exist_ok=True)
        # The camera side first, so it exists before the dock's watcher sees its node.
        self.proc = subprocess.Popen(
            [exe, "-b", "65536", f"pty,raw,echo=0,link={self.camera_node}",
             f"pty,raw,echo=0,link={self.dock_node}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not (self.dock_node.exists() and self.camera_node.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.unplug()
                raise RuntimeError(f"socat did not create the pty pair: {err.strip()}")
            time.sleep(0.01)

    def unplug(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for node in (self.dock_node, self.camera_node):
            if node.is_symlink():
                node.unlink()

    def __enter__(self) -> "PtyCable":
        return self

    def __exit__(self, *exc: object) -> None:
        self.unplug()
