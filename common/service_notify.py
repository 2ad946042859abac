"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``), without libsystemd.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (``@`` means the abstract namespace) — small and stable enough that
a dependency is not worth it. The runtime says ``READY=1`` once booted, ``WATCHDOG=1``
from its packet loop (at most every half ``$WATCHDOG_USEC``: a loop that stops turning —
a hung camera, a deadlock — stops the pings and systemd restarts the service), and
``STOPPING=1`` on the way out. Without ``$NOTIFY_SOCKET`` (not under systemd, tests)
every call does nothing.

>>> ServiceNotifier.from_env({}).ready("READY")   # not under systemd: nothing happens
False
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping


class ServiceNotifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self.interval_s = watchdog_usec / 2e6 if watchdog_usec else None
        self.clock = clock
        self._last_ping: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "ServiceNotifier":
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        watchdog = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog)

    def send(self, *lines: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.setblocking(False)  # a full notify socket must never stall the camera loop
                s.sendto("\n".join(lines).encode(), self.address)
        except OSError:  # BlockingIOError included
            return False  # systemd gone, busy or unreachable: the service itself carries on
        return True

    def ready(self, status: str) -> bool:
        self._last_ping = self.clock()
        return self.send("READY=1", f"STATUS={status}")

    def alive(self) -> bool:
        """Ping the watchdog if half its period has passed since the last ping."""
        if self.interval_s is None:
            return False
        now = self.clock()
        if self._last_ping is not None and now - self._last_ping < self.interval_s:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")
