"""One record button, many meanings: turns press/release edges into gestures.

gpiozero delivers the edges; timing is judged on the runtime's injectable clock,
not on gpiozero's ``when_held`` thread (which runs in real time), so tests can run
a whole shift in virtual time.

Gestures (``t`` in µs on the clock's monotonic timeline):

* ``double`` — a second press starting within ``double_press_window_s`` after a short
  press ended; reported at once, on the second press-down (emergency start).
* ``press`` — a short press (≤ ``short_press_max_s``) not followed by a second one;
  reported when the double-press window has passed, timed at its press-down.
* ``hold`` — held for ``hold_stop_s``; reported while still held.
* ``long_hold`` — held for ``standby_hold_s``; reported while still held.
* a press longer than a short press but released before ``hold_stop_s`` means nothing.

Each gesture carries the id of the press it came from, so one long hold that
already stopped a recording cannot also switch to standby.

>>> r = PressRecogniser(double_window_us=400_000, short_max_us=1_000_000, hold_us=3_000_000,
...                     long_hold_us=5_000_000)
>>> r.pressed(0) + r.released(100_000) + r.poll(300_000)  # still inside the double-press window
[]
>>> [g.kind for g in r.poll(600_000)]
['press']
>>> [g.kind for g in r.pressed(1_000_000) + r.released(1_100_000) + r.pressed(1_300_000)]
['double']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GestureKind = Literal["press", "double", "hold", "long_hold"]


@dataclass(frozen=True)
class Gesture:
    kind: GestureKind
    t_us: int
    press_id: int


class PressRecogniser:
    def __init__(self, *, double_window_us: int, short_max_us: int, hold_us: int, long_hold_us: int) -> None:
        self.double_window_us, self.short_max_us = double_window_us, short_max_us
        self.hold_us, self.long_hold_us = hold_us, long_hold_us
        self._down_at: int | None = None
        self._press_id = 0
        self._pending_release: int | None = None   # a short press awaiting a possible second press
        self._pending_down: int = 0                 # ... and when it began
        self._in_double = False
        self._fired: set[str] = set()

    @classmethod
    def from_config(cls, button) -> "PressRecogniser":
        return cls(double_window_us=int(button.double_press_window_s * 1e6),
                   short_max_us=int(button.short_press_max_s * 1e6),
                   hold_us=int(button.hold_stop_s * 1e6), long_hold_us=int(button.standby_hold_s * 1e6))

    def pressed(self, t_us: int) -> list[Gesture]:
        out = self.poll(t_us)
        if self._down_at is not None:
            return out  # a repeated edge; ignore
        self._press_id += 1
        self._down_at = t_us
        self._fired = set()
        if self._pending_release is not None and t_us - self._pending_release <= self.double_window_us:
            self._pending_release = None
            self._in_double = True
            out.append(Gesture("double", t_us, self._press_id))
        return out

    def released(self, t_us: int) -> list[Gesture]:
        out = self.poll(t_us)
        if self._down_at is None:
            return out
        held = t_us - self._down_at
        self._down_at = None
        if self._in_double:
            self._in_double = False
        elif not self._fired and held <= self.short_max_us:
            self._pending_release, self._pending_down = t_us, t_us - held
        return out

    def poll(self, t_us: int) -> list[Gesture]:
        """Gestures whose time has come (call on every runtime tick)."""
        out: list[Gesture] = []
        if self._pending_release is not None and t_us - self._pending_release > self.double_window_us:
            out.append(Gesture("press", self._pending_down, self._press_id))
            self._pending_release = None
        if self._down_at is not None and not self._in_double:
            held = t_us - self._down_at
            for kind, threshold in (("hold", self.hold_us), ("long_hold", self.long_hold_us)):
                if held >= threshold and kind not in self._fired:
                    self._fired.add(kind)
                    out.append(Gesture(kind, self._down_at + threshold, self._press_id))  # type: ignore[arg-type]
        return out
