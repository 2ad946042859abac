"""SIGTERM (what systemd sends on stop) and SIGINT (Ctrl-C) as a flag, not an exception.

An exception raised from a signal handler can land anywhere — inside PyAV's write
callback, between a manifest and its chain head — and leave a segment open. So the
handler only records the signal; every main loop checks :attr:`StopSignals.received`
between packets and then finishes the recording the normal way.

>>> import os, signal
>>> with StopSignals() as stop:
...     os.kill(os.getpid(), signal.SIGTERM)
...     stop.received
'SIGTERM'
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Callable


class StopSignals:
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, on_signal: Callable[[str], None] | None = None) -> None:
        """``on_signal(name)`` is called from the handler (e.g. ``runtime.request_stop``):
        it must only set a flag."""
        self.received: str | None = None
        self.on_signal = on_signal
        self._saved: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name
        if self.on_signal is not None:
            self.on_signal(self.received)

    def __enter__(self) -> "StopSignals":
        for s in self.SIGNALS:
            self._saved[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)
