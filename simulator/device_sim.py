"""A whole simulated camera: runtime + sim camera + gpiozero MockFactory pins + small disk
+ scripted battery + an audio sink that records what it was handed.

Scripts drive the real button pin (``MockPin.drive_low/drive_high``), so the runtime
sees exactly the edges gpiozero would deliver on a Pi.

>>> # sim = SimDevice.create(config, out_dir); sim.run_script(steps); sim.report()
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gpiozero.pins.mock import MockFactory, MockPWMPin

from common.clock import Clock, SystemClock, VirtualClock
from common.link import Link
from device.camera import AudioParams, Camera, CameraConfig, VideoParams, open_camera
from device.config import Config, resolve
from device.hardware import Hardware, render_cue, wav_duration_us
from device.identity import DeviceIdentity
from device.link_service import load_dock_keys
from device.runtime import DeviceRuntime
from device.segment_store import SegmentStore

TAP_S = 0.15          # how long a finger is on the button for a "press"
DOUBLE_GAP_S = 0.2    # between the two taps of a "double"


class ScriptError(ValueError):
    """A script step is invalid; the message names the step."""


@dataclass
class ScriptedPower:
    level: float | None = 100.0

    def level_percent(self) -> float | None:
        return self.level


@dataclass
class SimDisk:
    """A disk of ``capacity`` bytes; ``fill_to(free)`` puts other data on it."""
    capacity: int
    store_used: Callable[[], int] = lambda: 0
    filler: int = 0

    def free_bytes(self) -> int:
        return max(0, self.capacity - self.store_used() - self.filler)

    def fill_to(self, free_bytes: int) -> None:
        self.filler = max(0, self.capacity - self.store_used() - free_bytes)


@dataclass
class RecordingAudioSink:
    clock: Clock
    played: list[dict[str, Any]] = field(default_factory=list)

    def play(self, wav: Path) -> None:
        self.played.append({"mono_us": self.clock.monotonic_us(), "wav": str(wav),
                            "duration_us": wav_duration_us(wav)})


ACTIONS = {
    "press": set(), "double": set(), "hold": {"seconds"}, "battery": {"level"},
    "fill_storage": {"free_mb"}, "dock": set(), "undock": set(), "end": set(),
}


MAX_SCRIPT_S = 12 * 3600   # a script covers one shift: every time and duration within 12 h


def load_script(path: Path) -> list[dict[str, Any]]:
    """A TOML file with ``[[steps]]`` tables, or a JSON list (or ``{"steps": [...]}``)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ScriptError(f"script {path} not found") from None
    except UnicodeDecodeError:
        raise ScriptError(f"{path} is not a text file (binary data); a script is TOML or JSON") from None
    except OSError as exc:
        raise ScriptError(f"cannot read script {path}: {exc.strerror or exc}") from None
    try:
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScriptError(f"{path}: cannot parse: {exc}")
    steps = data.get("steps") if isinstance(data, dict) else data
    if not isinstance(steps, list) or not steps:
        raise ScriptError(f"{path}: expected a non-empty list of steps ([[steps]] in TOML)")
    return validate_steps(steps)


def validate_steps(steps: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            raise ScriptError(f"step {i}: must be a table/object, got {step!r}")
        action, at = step.get("action"), step.get("at")
        if action not in ACTIONS:
            raise ScriptError(f"step {i}: action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if not _seconds(at):
            raise ScriptError(f"step {i} ({action}): 'at' must be seconds from 0 to {MAX_SCRIPT_S} "
                              f"(a script covers one shift), got {at!r}")
        extra = set(step) - {"at", "action"} - ACTIONS[action]
        if extra:
            raise ScriptError(f"step {i} ({action}): unknown keys {sorted(extra)}")
        for key in ACTIONS[action] & set(step):
            v = step[key]
            if not _seconds(v):
                raise ScriptError(f"step {i} ({action}): {key} must be a number from 0 to {MAX_SCRIPT_S}, "
                                  f"got {v!r}")
        if action == "battery" and "level" not in step:
            raise ScriptError(f"step {i} (battery): needs level = 0…100")
        if action == "battery" and step["level"] > 100:
            raise ScriptError(f"step {i} (battery): level must be ≤ 100")
        out.append(dict(step))
    return sorted(out, key=lambda s: s["at"])


def _seconds(v: Any) -> bool:
    return (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            and 0 <= v <= MAX_SCRIPT_S)


class SimDevice:
    def __init__(self, runtime: DeviceRuntime, clock: Clock, factory: MockFactory, disk: SimDisk,
                 power: ScriptedPower, audio: RecordingAudioSink, button_pin: int) -> None:
        self.runtime, self.clock, self.factory = runtime, clock, factory
        self.disk, self.power, self.audio = disk, power, audio
        self.pin = factory.pin(button_pin)
        self._queue: list[tuple[int, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._packets = runtime.camera.packets()
        self.boot_us = clock.monotonic_us()
        self.ended = False

    @classmethod
    def create(cls, config: Config, identity: DeviceIdentity, *, realtime: bool = False,
               disk_bytes: int = 8 << 30, seed: int = 0, noise: int = 0, scene: str = "shapes",
               camera_factory: Callable[[Clock], Camera] | None = None,
               open_link: Callable[[], Link] | None = None) -> "SimDevice":
        """``camera_factory(clock)`` replaces the simulated camera (e.g. a ReplayCamera);
        ``open_link`` opens the dock port, as on a Pi (the runtime reopens it when it closed)."""
        clock: Clock = SystemClock() if realtime else VirtualClock(utc_start_us=SystemClock().utc_us())
        c = config.camera
        video = VideoParams(width=c.width, height=c.height, fps=c.fps, bitrate=c.bitrate,
                            gop_frames=max(1, round(c.fps * c.gop_seconds)))
        camera = camera_factory(clock) if camera_factory else open_camera(
            CameraConfig("sim", video, AudioParams() if c.audio else None, {"seed": seed, "noise": noise,
                                                                           "scene": scene}),
            clock=clock)
        factory = MockFactory(pin_class=MockPWMPin)
        hardware = Hardware.open(config.pins, factory)
        disk = SimDisk(disk_bytes)
        store = SegmentStore(resolve(config, config.device.store), identity, free_bytes=disk.free_bytes)
        disk.store_used = store.used_bytes
        power = ScriptedPower()
        audio = RecordingAudioSink(clock)
        cue = render_cue(config.cues.announcement, config.cues.voice, resolve(config, config.cues.wav))
        dock_keys = load_dock_keys([resolve(config, k) for k in config.link.dock_keys])
        runtime = DeviceRuntime(config, identity, camera, hardware, clock, store, power,
                                audio=audio, cue_wav=cue, dock_keys=dock_keys, open_link=open_link)
        if camera_factory is None:
            # the time burned into the picture is the camera's clock as the dock sets it (on a
            # Pi the dock sets the system clock, which the overlay reads), not the raw one
            camera.clock = runtime.clock  # type: ignore[attr-defined]
        return cls(runtime, clock, factory, disk, power, audio, config.pins.button)

    # ------------------------------------------------------------------ scheduling
    def at(self, seconds: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (self.boot_us + int(seconds * 1e6), next(self._order), fn))

    def schedule(self, step: dict[str, Any]) -> None:
        t, action = step["at"], step["action"]
        if action == "press":
            self.at(t, self.pin.drive_low)
            self.at(t + TAP_S, self.pin.drive_high)
        elif action == "double":
            self.at(t, self.pin.drive_low)
            self.at(t + TAP_S, self.pin.drive_high)
            self.at(t + TAP_S + DOUBLE_GAP_S, self.pin.drive_low)
            self.at(t + 2 * TAP_S + DOUBLE_GAP_S, self.pin.drive_high)
        elif action == "hold":
            self.at(t, self.pin.drive_low)
            self.at(t + step.get("seconds", 3.5), self.pin.drive_high)
        elif action == "battery":
            self.at(t, lambda: setattr(self.power, "level", float(step["level"])))
        elif action == "fill_storage":
            self.at(t, lambda: self.disk.fill_to(int(step.get("free_mb", 0) * (1 << 20))))
        elif action == "dock":
            self.at(t, self.runtime.dock)
        elif action == "undock":
            self.at(t, self.runtime.undock)
        elif action == "end":
            self.at(t, lambda: setattr(self, "ended", True))

    # ------------------------------------------------------------------ running
    def step(self) -> None:
        """One camera packet, with every scheduled action that is due before it."""
        packet = next(self._packets)
        now = self.clock.monotonic_us()
        while self._queue and self._queue[0][0] <= now:
            heapq.heappop(self._queue)[2]()
            self.runtime.tick()
        self.runtime.feed(packet)

    def run_until(self, seconds: float) -> None:
        end = self.boot_us + int(seconds * 1e6)
        while not self.ended and self.clock.monotonic_us() < end and self.runtime.state.value != "SHUTDOWN":
            if self.runtime.stop_requested:
                self.runtime.finish()
                self.ended = True
                break
            self.step()

    def run_script(self, steps: list[dict[str, Any]], tail_s: float = 5.0, *, boot: bool = True) -> None:
        """Play ``steps``; ``boot=False`` when the runtime was booted already (e.g. docked first)."""
        if boot:
            self.runtime.boot()
        for step in steps:
            self.schedule(step)
        end = max(s["at"] + s.get("seconds", 0) for s in steps) + tail_s
        if any(s["action"] == "end" for s in steps):
            end = max(s["at"] for s in steps if s["action"] == "end") + 1
        self.run_until(end)
        self.runtime.stop_recording("simulation_end")

    # ------------------------------------------------------------------ output
    def report(self) -> dict[str, Any]:
        rt = self.runtime
        t = lambda us: round((us - self.boot_us) / 1e6, 3)  # noqa: E731
        return {
            "final_state": rt.state.value,
            "store": str(rt.store.root.resolve()),
            "events": [{"t": t(e["mono_us"]), "kind": e["kind"], "state": e["state"], **e["data"]}
                       for e in rt.events.entries],
            "recordings": [{
                "id": r.id, "announced": r.announced, "press": t(r.press_us), "start": t(r.start_us),
                "end": t(r.end_us) if r.end_us is not None else None, "stop_reason": r.stop_reason,
                "markers": [t(m) for m in r.markers],
                "segments": [{"seq": s.seq, "path": str(s.path.resolve()),
                              "manifest": str(s.manifest_path.resolve()), "sha256": s.manifest.sha256.hex(),
                              "frames": s.manifest.frames} for s in r.segments],
            } for r in rt.recordings],
            "leds": rt.led_timeline,
            "cues": [{"t": t(a["mono_us"]), "kind": "speech", "wav": a["wav"],
                      "duration": a["duration_us"] / 1e6} for a in self.audio.played]
                    + [{"t": t(mono), "kind": "tone", "pattern": name} for mono, name in rt.sounder.played],
        }
