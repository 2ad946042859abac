"""Injectable time: every component takes a :class:`Clock` instead of calling ``time``.

``monotonic_us`` is the timeline camera timestamps (pts) live on, like the sensor
timestamps picamera2 reports. ``utc_us`` is wall-clock UTC. Tests and the simulator
use :class:`VirtualClock`, so an hour of footage runs in seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic_us(self) -> int: ...
    def utc_us(self) -> int: ...
    def sleep_until_us(self, mono_us: int) -> None: ...

    def utc_of(self, mono_us: int) -> int:
        """UTC (µs) at a given monotonic instant, by the current offset."""
        ...


class SystemClock:
    """The real clocks. ``sleep_until_us`` really sleeps."""

    def monotonic_us(self) -> int:
        return time.monotonic_ns() // 1000

    def utc_us(self) -> int:
        return time.time_ns() // 1000

    def utc_of(self, mono_us: int) -> int:
        return self.utc_us() - (self.monotonic_us() - mono_us)

    def sleep_until_us(self, mono_us: int) -> None:
        delay = (mono_us - self.monotonic_us()) / 1e6
        if delay > 0:
            time.sleep(delay)


class VirtualClock:
    """Time that moves only when told to. ``sleep_until_us`` jumps forward.

    >>> c = VirtualClock(utc_start_us=1_700_000_000_000_000)
    >>> c.sleep_until_us(2_000_000); c.monotonic_us(), c.utc_us() - 1_700_000_000_000_000
    (2000000, 2000000)
    """

    def __init__(self, utc_start_us: int = 1_767_225_600_000_000, mono_start_us: int = 0) -> None:
        self._mono = mono_start_us
        self._offset = utc_start_us - mono_start_us
        self._lock = threading.Lock()

    def monotonic_us(self) -> int:
        return self._mono

    def utc_us(self) -> int:
        return self._mono + self._offset

    def utc_of(self, mono_us: int) -> int:
        return mono_us + self._offset

    def sleep_until_us(self, mono_us: int) -> None:
        with self._lock:
            self._mono = max(self._mono, mono_us)


class AdjustableClock:
    """A clock whose UTC the dock corrects; the monotonic timeline (pts) is untouched.

    >>> c = AdjustableClock(VirtualClock(utc_start_us=1_000))
    >>> c.set_utc(5_000)
    4000
    >>> c.utc_us(), c.utc_of(0), c.monotonic_us()
    (5000, 5000, 0)
    """

    def __init__(self, inner: Clock) -> None:
        self.inner = inner
        self.offset_us = 0

    def set_utc(self, utc_us: int) -> int:
        """Make UTC now equal ``utc_us``; return the correction applied (µs, + = was slow)."""
        delta = utc_us - self.utc_us()
        self.offset_us += delta
        return delta

    def monotonic_us(self) -> int:
        return self.inner.monotonic_us()

    def utc_us(self) -> int:
        return self.inner.utc_us() + self.offset_us

    def utc_of(self, mono_us: int) -> int:
        return self.inner.utc_of(mono_us) + self.offset_us

    def sleep_until_us(self, mono_us: int) -> None:
        self.inner.sleep_until_us(mono_us)
