"""The record button of a bench without GPIO: mock pins, pressed through a local socket.

On a Pi the button is a GPIO pin and gpiozero sees its edges. A bench (a test machine, a
developer's PC) has no pins: ``flash.sh camera --pins mock`` runs the camera with gpiozero's
``MockFactory`` and sets ``BODYCAM_BENCH_BUTTON`` to a socket path. This module listens
there (a Unix datagram socket, mode 0660: root and the camera's group only; no IP) and
drives the mock button pin: ``down`` pulls it low as a press does, ``up`` lets it go. The
gestures are then judged by the same recogniser on the same clock as on a Pi, so a short
press, a double press and a hold mean what they mean on the street.

``bodycam-device --press short|double|hold`` sends the edges with the hardware's timing.

>>> import tempfile, os
>>> from gpiozero import Button
>>> from gpiozero.pins.mock import MockFactory
>>> button = Button(17, pull_up=True, bounce_time=None, pin_factory=MockFactory())
>>> path = os.path.join(tempfile.mkdtemp(), "button")
>>> bench = BenchButton(path, button)
>>> send(path, "down"); bench.wait_for(1, timeout=2.0); button.is_pressed
True
>>> send(path, "up"); bench.wait_for(2, timeout=2.0); button.is_pressed
False
>>> bench.close()
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

ENV = "BODYCAM_BENCH_BUTTON"
DEFAULT_PATH = "/run/bodycam/button"   # what flash.sh camera --pins mock sets
# edges of each gesture, as (edge, seconds to wait after it): a finger's timing
GESTURES: dict[str, list[tuple[str, float]]] = {
    "short": [("down", 0.15), ("up", 0.0)],
    "double": [("down", 0.1), ("up", 0.1), ("down", 0.1), ("up", 0.0)],
    "hold": [("down", 3.5), ("up", 0.0)],
}


class BenchButton:
    """Drives ``button``'s mock pin from datagrams ``down``/``up`` on ``path``."""

    def __init__(self, path: str | Path, button: Any) -> None:
        self.path = str(path)
        self.pin = button.pin
        if not hasattr(self.pin, "drive_low"):
            raise RuntimeError(f"{ENV} is set but the button's pin is not a mock pin: "
                               "set GPIOZERO_PIN_FACTORY=mock (flash.sh camera --pins mock)")
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        old = os.umask(0o117)   # srw-rw----: root and the camera's group
        try:
            self.sock.bind(self.path)
        finally:
            os.umask(old)
        self.sock.settimeout(0.5)
        self.handled = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="bench-button", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(16)
            except socket.timeout:
                continue
            except OSError:
                return
            edge = data.strip()
            if edge == b"down":
                self.pin.drive_low()     # pull_up=True: pressed is low, as on the wired button
            elif edge == b"up":
                self.pin.drive_high()
            else:
                continue                 # anything else is ignored, bounded at 16 bytes
            with self._cond:
                self.handled += 1
                self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> None:
        """Until ``count`` edges were handled in all (or the deadline)."""
        with self._cond:
            self._cond.wait_for(lambda: self.handled >= count, timeout)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)
        try:
            os.unlink(self.path)
        except OSError:
            pass


def from_env(button: Any, environ: dict[str, str] | None = None) -> BenchButton | None:
    path = (environ if environ is not None else os.environ).get(ENV, "")
    return BenchButton(path, button) if path else None


def send(path: str | Path, edge: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(edge.encode(), str(path))


def press(path: str | Path, gesture: str) -> None:
    """Press the bench button as a finger would: ``short``, ``double`` or ``hold``."""
    for edge, after in GESTURES[gesture]:
        send(path, edge)
        time.sleep(after)
