"""The camera's buttons, lights and sounds, through gpiozero.

gpiozero's pin factory is the seam: on the Pi its default (lgpio) factory, in the
simulator and tests ``MockFactory(pin_class=MockPWMPin)`` — passed in explicitly,
never set globally. Tone patterns are timed on the runtime's clock (:class:`Sounder`),
not on gpiozero's real-time background threads, so virtual time works.

>>> from gpiozero.pins.mock import MockFactory, MockPWMPin
>>> from device.config import PinSection
>>> hw = Hardware.open(PinSection(), MockFactory(pin_class=MockPWMPin))
>>> hw.red.on(); hw.red_pin_state()
True
>>> hw.close()
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gpiozero import LED, Button, TonalBuzzer
from gpiozero.tones import Tone

from common.clock import Clock
from device.config import PinSection

# (frequency Hz or None for silence, seconds)
Pattern = list[tuple[float | None, float]]
PATTERNS: dict[str, Pattern] = {
    "start": [(1320, 0.12), (None, 0.08), (1320, 0.12)],
    "stop": [(440, 0.6)],
    "reminder": [(880, 0.1), (None, 0.1), (880, 0.1)],
    "marker": [(1320, 0.08)],
    "warning": [(660, 0.2), (None, 0.1)] * 3,
    "error": [(440, 1.0)],
    "standby": [(660, 0.15), (440, 0.15)],
    "ready": [(440, 0.15), (660, 0.15)],
    # spoken announcement unavailable: an unmistakable alternating tone instead
    "announce": [(880, 0.3), (660, 0.3)] * 3,
}


def pattern_us(name: str) -> int:
    return int(sum(d for _, d in PATTERNS[name]) * 1e6)


@dataclass
class Hardware:
    button: Button
    red: LED
    green: LED
    amber: LED
    buzzer: TonalBuzzer

    @classmethod
    def open(cls, pins: PinSection, pin_factory: Any = None) -> "Hardware":
        kw = {"pin_factory": pin_factory} if pin_factory is not None else {}
        return cls(
            # bounce_time=None: debouncing is the recogniser's job, on our clock
            button=Button(pins.button, pull_up=True, bounce_time=None, **kw),
            red=LED(pins.red, **kw), green=LED(pins.green, **kw), amber=LED(pins.amber, **kw),
            buzzer=TonalBuzzer(pins.buzzer, mid_tone=Tone(880.0), octaves=1, **kw),
        )

    def red_pin_state(self) -> bool:
        """What the red LED's pin really drives (not what we asked for)."""
        return bool(self.red.pin.state)

    def led_states(self) -> dict[str, bool]:
        return {"red": bool(self.red.pin.state), "green": bool(self.green.pin.state),
                "amber": bool(self.amber.pin.state)}

    def close(self) -> None:
        for dev in (self.button, self.red, self.green, self.amber, self.buzzer):
            dev.close()


class Sounder:
    """Plays :data:`PATTERNS` on the buzzer, advanced by :meth:`tick` on the runtime clock."""

    def __init__(self, buzzer: TonalBuzzer, clock: Clock) -> None:
        self.buzzer, self.clock = buzzer, clock
        self._steps: list[tuple[int, float | None]] = []  # (end µs, frequency)
        self.played: list[tuple[int, str]] = []

    def play(self, name: str) -> int:
        """Start pattern ``name`` (replacing any playing one); return its length in µs."""
        t = self.clock.monotonic_us()
        self._steps = []
        for freq, seconds in PATTERNS[name]:
            t += int(seconds * 1e6)
            self._steps.append((t, freq))
        self.played.append((self.clock.monotonic_us(), name))
        self.tick()
        return pattern_us(name)

    @property
    def busy(self) -> bool:
        return bool(self._steps)

    def tick(self) -> None:
        now = self.clock.monotonic_us()
        while self._steps and self._steps[0][0] <= now:
            self._steps.pop(0)
        freq = self._steps[0][1] if self._steps else None
        if freq is None:
            if self.buzzer.is_active:
                self.buzzer.stop()
        elif self.buzzer.tone is None or abs(self.buzzer.tone.frequency - freq) > 0.5:
            self.buzzer.play(Tone(float(freq)))


class AudioSink(Protocol):
    """Where spoken cues go. On the Pi: :class:`AplaySink`; in the simulator a recorder."""

    def play(self, wav: Path) -> None: ...


class AplaySink:
    """Plays a WAV on the default ALSA device without blocking the runtime."""

    def play(self, wav: Path) -> None:
        subprocess.Popen(["aplay", "-q", str(wav)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wav_duration_us(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        return int(w.getnframes() * 1_000_000 / w.getframerate())


def _cue_meta(text: str, voice: str, path: Path) -> tuple[Path, str]:
    return path.with_name(path.name + ".meta"), json.dumps({"text": text, "voice": voice}, sort_keys=True)


def cue_is_current(text: str, voice: str, path: Path) -> bool:
    """Is ``path`` the rendering of exactly this text and voice?"""
    meta, wanted = _cue_meta(text, voice, path)
    try:
        return path.exists() and meta.read_text() == wanted
    except (OSError, UnicodeDecodeError):
        return False


def render_cue(text: str, voice: str, path: Path) -> Path | None:
    """Render the spoken announcement with espeak-ng (``-w``: ``--stdout`` writes a broken
    WAV length). Returns None when espeak-ng is missing or fails: the caller falls back
    to the buzzer pattern.

    The rendering is cached at ``path``; ``path.meta`` records the text and voice it was
    rendered from, so a changed announcement is rendered again (the event log states the
    text, and the camera must say exactly that)."""
    if cue_is_current(text, voice, path):
        return path
    meta, wanted = _cue_meta(text, voice, path)
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    done = subprocess.run([exe, "-v", voice, "-w", str(tmp), text], capture_output=True)
    if done.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        return None
    os.replace(tmp, path)
    meta.write_text(wanted)
    return path
