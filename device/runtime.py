"""The camera's brain: one button, lawful states, lights, sounds, warnings, event log.

States::

    BOOTING → READY (buffering) ⇄ STANDBY (no buffering, buffer wiped)
    READY/STANDBY → ANNOUNCING (red flashes, spoken cue) → RECORDING → READY
    READY/STANDBY → RECORDING at once on a double press (imminent danger, announced=false)
    any → DOCKED (buffer wiped, no recording) → READY
    ERROR: camera failure, storage full.   SHUTDOWN: battery critical.

Invariant (§ 15c PolG NRW, open recording): the red LED is on whenever footage is
written. It is switched on *before* the buffer is handed to the writer, switched off
only *after* the writer is closed, and every written packet passes an interlock that
forces it on (and logs that) should anything have turned it off. No configuration
key exists that could change this.

Everything is timed on the injected clock; :meth:`DeviceRuntime.feed` is called for
every camera packet (30 times a second) and runs one :meth:`tick`.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from common.clock import AdjustableClock, Clock
from common.link import Link, LinkClosed
from device.button import Gesture, PressRecogniser
from device.camera import Camera, EncodedPacket
from common.service_notify import ServiceNotifier
from device.config import Config
from device.event_log import EventLog
from device.hardware import AudioSink, Hardware, Sounder, wav_duration_us
from device.identity import DeviceIdentity
from device.link_service import (LinkHooks, LinkService, load_assignment, load_recipients, load_revoked_docks,
                                 trusted)
from device.power import PowerSource
from device.recorder import Recorder, SegmentCloseError
from device.ring_buffer import PreRecordBuffer
from device.segment_store import SegmentStore, StoreError
from device.segment_writer import WriterPolicy, WrittenSegment

CHECK_INTERVAL_US = 1_000_000  # storage and battery are looked at once a second
LINK_REOPEN_US = 2_000_000     # a closed dock port is opened again this often


class State(str, Enum):
    BOOTING = "BOOTING"
    READY = "READY"
    STANDBY = "STANDBY"
    ANNOUNCING = "ANNOUNCING"
    RECORDING = "RECORDING"
    DOCKED = "DOCKED"
    ERROR = "ERROR"
    SHUTDOWN = "SHUTDOWN"


@dataclass
class RecordingSummary:
    id: str
    announced: bool
    press_us: int
    start_us: int
    end_us: int | None = None
    stop_reason: str | None = None
    markers: list[int] = field(default_factory=list)
    segments: list[WrittenSegment] = field(default_factory=list)


class DeviceRuntime:
    def __init__(self, config: Config, identity: DeviceIdentity, camera: Camera, hardware: Hardware,
                 clock: Clock, store: SegmentStore, power: PowerSource, *,
                 audio: AudioSink | None = None, cue_wav: Path | None = None,
                 link: Link | None = None, dock_keys: dict[str, Ed25519PublicKey] | None = None,
                 service: ServiceNotifier | None = None, open_link: Callable[[], Link] | None = None) -> None:
        """``link``: the port a dock talks on (served by :class:`LinkService` from every tick);
        ``open_link``: opens it (again) — a port that closed (a peer dropped, a USB gadget
        reset) is reopened every ``LINK_REOPEN_S``; ``dock_keys``: the enrolled docks, by key
        fingerprint."""
        self.clock = AdjustableClock(clock)  # UTC as corrected by the dock; pts untouched
        self.dock_keys = dock_keys or {}
        # Docks the office revoked (pushed by another dock): refused, and what they set is void.
        self.revoked_docks = load_revoked_docks(store.root, self.dock_keys)
        trusted_docks = trusted(self.dock_keys, self.revoked_docks)
        officer = load_assignment(store.root, trusted_docks)
        if officer is not None:
            identity = replace(identity, officer_id=officer)
        recipients = load_recipients(store.root, trusted_docks)  # a rotation a dock pushed outranks the config
        if recipients is not None:
            identity = replace(identity, recipients=tuple(recipients))
        self.config, self.identity, self.camera, self.hw = config, identity, camera, hardware
        self.store, self.power, self.audio = store, power, audio
        clock = self.clock
        self.cue_wav = cue_wav if (cue_wav is not None and audio is not None and cue_wav.exists()) else None
        rec = config.recording
        self.buffer = PreRecordBuffer(rec.pre_record_seconds, rec.pre_record_max_mb << 20,
                                      keep_audio=rec.pre_record_audio)
        self.recorder = Recorder(store, identity, camera.video, camera.audio, clock, self.buffer,
                                 WriterPolicy(rec.segment_seconds, rec.sync_interval_s), guard=self._red_interlock)
        self.recogniser = PressRecogniser.from_config(config.button)
        self.sounder = Sounder(hardware.buzzer, clock)
        self.events = EventLog(store.root, identity, clock)
        self.link: LinkService | None = None
        self._open_link, self._link_tried_us = open_link, 0
        if link is not None:
            self.attach_link(link)
        self.state = State.BOOTING
        self.recordings: list[RecordingSummary] = []
        self.warnings: set[str] = set()
        self.error: str | None = None
        self.service = service or ServiceNotifier(None)   # systemd's READY/WATCHDOG, if under systemd
        self.journal = bool(self.service.address)   # under systemd: events go to the journal too
        self.led_timeline: list[dict[str, Any]] = []
        self.boot_us = clock.monotonic_us()
        self._edges: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._buffering = False
        self._announce_end_us: int | None = None
        self._announce_start_us = 0
        self._press_us: int | None = None
        self._next_reminder_us: int | None = None
        self._next_check_us = 0
        self._consumed_press = -1
        self.stop_requested: str | None = None   # e.g. "SIGTERM": finish and return from run()
        # gpiozero calls these from its own thread on a Pi (synchronously with MockFactory):
        # only enqueue, the runtime's tick does the work.
        hardware.button.when_pressed = lambda: self._edges.put(("down", self.clock.monotonic_us()))
        hardware.button.when_released = lambda: self._edges.put(("up", self.clock.monotonic_us()))

    # ------------------------------------------------------------------ lifecycle
    def boot(self) -> None:
        self.log("boot", pre_record_s=self.config.recording.pre_record_seconds,
                 cue="speech" if self.cue_wav else "tones")
        try:
            sealed = self.store.seal_interrupted()
        except (StoreError, OSError) as exc:  # a corrupt journal or a failing disk: never record over it
            self._fail("store_error", str(exc))
            self.tick()
            return
        for m in sealed:
            self.log("segment_sealed_after_interruption", seq=m.seq, recording_id=m.recording_id)
            self._warn("interrupted_recording")
        self._enter(State.READY)
        self.tick()

    def close(self) -> None:
        """Finish any recording, make the event log durable, release the pins."""
        self.stop_recording("shutdown")
        self.events.close()
        self.hw.close()

    def feed(self, packet: EncodedPacket) -> None:
        """One camera packet: buffer or write it, then run one tick."""
        if self._buffering:
            try:
                self.recorder.on_packet(packet)
            except OSError as exc:  # disk full or failing under us: never lose what is written
                self._fail("storage_error", str(exc))
        self.tick()

    def request_stop(self, why: str) -> None:
        """Ask :meth:`run` (or a simulator loop) to finish the recording and return."""
        self.stop_requested = why

    def finish(self) -> None:
        """End after :meth:`request_stop`: the recording is closed cleanly and logged."""
        self.log("shutdown_requested", signal=self.stop_requested)
        self.stop_recording(f"shutdown_{(self.stop_requested or 'request').lower()}")
        self.events.sync()

    def run(self) -> State:
        """The device main loop, until shutdown, a stop request or a camera failure; returns
        the final state.

        A camera failure finalises the recording, enters ERROR (amber, error tone) and
        returns, so the service manager can restart the process and the camera with it.
        """
        self.boot()
        self.service.ready(f"{self.state.name}: {self.identity.device_id}")
        packets = self.camera.packets()
        try:
            while self.state != State.SHUTDOWN:
                if self.stop_requested:
                    self.finish()
                    break
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except Exception as exc:  # the camera stack failed under us
                    self._fail("camera_failure", f"{type(exc).__name__}: {exc}")
                    break
                self.feed(packet)
                self.service.alive()  # only while packets flow: a hung camera stops the pings
        finally:
            self.service.stopping(f"{self.state.name}{': ' + self.error if self.error else ''}")
            self.stop_recording("shutdown")
            self.events.close()
        return self.state

    # ------------------------------------------------------------------ tick
    def tick(self) -> None:
        now = self.clock.monotonic_us()
        gestures: list[Gesture] = []
        while not self._edges.empty():
            edge, t = self._edges.get()
            self.log(f"button_{edge}", at_us=t)
            gestures += self.recogniser.pressed(t) if edge == "down" else self.recogniser.released(t)
        gestures += self.recogniser.poll(now)
        for g in gestures:
            self._on_gesture(g)
        if self.state == State.ANNOUNCING:
            if self._announce_end_us is not None and now >= self._announce_end_us:
                self._start_recording(announced=True)
            else:  # flash the red LED while the cue plays (no footage is written yet)
                period = int(1e6 / self.config.cues.flash_hz)
                self.hw.red.value = ((now - self._announce_start_us) // (period // 2)) % 2 == 0
        if self.state == State.RECORDING and self._next_reminder_us is not None and now >= self._next_reminder_us:
            self.sounder.play("reminder")
            self.log("reminder")
            self._next_reminder_us += int(self.config.cues.reminder_interval_s * 1e6)
        if now >= self._next_check_us:
            self._next_check_us = now + CHECK_INTERVAL_US
            self._check_storage()
            self._check_battery()
        if self.link is not None:
            self.link.poll()
        dropped = self.link is None or (self.link.closed and not self.link.link_closing)
        if self._open_link is not None and dropped and now - self._link_tried_us >= LINK_REOPEN_US:
            self._reopen_link(now)
        self.sounder.tick()
        self._sample_leds(now)
        self.events.sync()

    # ------------------------------------------------------------------ gestures
    def _on_gesture(self, g: Gesture) -> None:
        self.log(f"gesture_{g.kind}", press_id=g.press_id)
        if g.press_id == self._consumed_press:
            return
        s = self.state
        if s in (State.READY, State.STANDBY):
            if g.kind == "press":
                self._announce(g.t_us)
            elif g.kind == "double":
                self._press_us = g.t_us
                self._start_recording(announced=False)
            elif g.kind == "long_hold":
                self._consumed_press = g.press_id
                self._enter(State.STANDBY if s == State.READY else State.READY)
        elif s == State.RECORDING:
            if g.kind in ("press", "double"):
                rec = self.recordings[-1]
                rec.markers.append(g.t_us)
                self.sounder.play("marker")
                self.log("marker", recording_id=rec.id, n=len(rec.markers))
            elif g.kind == "hold":
                self._consumed_press = g.press_id
                self._stop_recording("button_hold")
        # ANNOUNCING, DOCKED, ERROR, SHUTDOWN: gestures are logged and otherwise ignored

    # ------------------------------------------------------------------ transitions
    def _enter(self, state: State, **data: Any) -> None:
        old, self.state = self.state, state
        hw = self.hw
        if state in (State.READY, State.ANNOUNCING, State.RECORDING):
            self._buffering = True
        if state in (State.STANDBY, State.DOCKED, State.ERROR, State.SHUTDOWN):
            self._buffering = False
            self.buffer.clear()  # pre-record footage never outlives READY
        if state != State.RECORDING and not self.recorder.recording and state != State.ANNOUNCING:
            hw.red.off()
        hw.green.value = state in (State.READY, State.DOCKED)
        self._update_amber()
        if state == State.STANDBY:
            self.sounder.play("standby")
        elif state == State.READY and old == State.STANDBY:
            self.sounder.play("ready")
        elif state == State.SHUTDOWN:
            for led in (hw.red, hw.green, hw.amber):
                led.off()
        self.log("state", previous=old.value, **data)

    def _announce(self, press_us: int) -> None:
        self._press_us = press_us
        self.buffer.freeze()  # pre-record keeps covering the window before the press
        if self.cue_wav is not None and self.audio is not None:
            self.audio.play(self.cue_wav)
            duration, cue = wav_duration_us(self.cue_wav), "speech"
        else:
            duration, cue = self.sounder.play("announce"), "tones"
        self._announce_start_us = self.clock.monotonic_us()
        self._announce_end_us = self._announce_start_us + duration
        self._enter(State.ANNOUNCING)
        self.log("announcement", cue=cue, text=self.config.cues.announcement, duration_us=duration)

    def _start_recording(self, *, announced: bool) -> None:
        self.hw.red.on()  # before a single byte is written
        self._announce_end_us = None
        press = self._press_us if self._press_us is not None else self.clock.monotonic_us()
        failure: OSError | None = None
        try:
            info = self.recorder.start(announced=announced, press_pts_us=press)
        except OSError as exc:  # disk full or failing while the pre-record buffer was written
            failure, info = exc, self.recorder.info
            assert info is not None
        now = self.clock.monotonic_us()
        self.recordings.append(RecordingSummary(info.recording_id, announced, press, now))
        self._next_reminder_us = now + int(self.config.cues.reminder_interval_s * 1e6)
        self._enter(State.RECORDING, recording_id=info.recording_id, announced=announced)
        if failure is not None:
            self._fail("storage_error", str(failure))

    def _stop_recording(self, reason: str) -> None:
        close_error: SegmentCloseError | None = None
        try:
            segments = self.recorder.stop()  # closes the current segment cleanly
        except SegmentCloseError as exc:
            segments, close_error = exc.segments, exc
        self.hw.red.off()  # only now: nothing more will be written
        rec = self.recordings[-1]
        rec.end_us, rec.stop_reason, rec.segments = self.clock.monotonic_us(), reason, segments
        self._next_reminder_us = None
        self._press_us = None
        self.sounder.play("stop")
        self.log("recording_stop", recording_id=rec.id, reason=reason, segments=[s.seq for s in segments])
        if close_error is not None:
            self.log("segment_close_failed", error=str(close_error), sealed=close_error.sealed)
            self.error = "storage_error"
            self._enter(State.ERROR, reason="storage_error", detail=str(close_error))
        elif self.state == State.RECORDING:
            self._enter(State.READY)

    def stop_recording(self, reason: str = "external") -> None:
        """Stop a recording from outside the button (supervisor tool, end of a simulation)."""
        if self.recorder.recording:
            self._stop_recording(reason)
            self.events.sync()

    def _red_interlock(self) -> None:
        if not self.hw.red_pin_state():
            self.hw.red.on()
            self.log("red_led_forced_on")

    def _fail(self, reason: str, detail: str = "") -> None:
        if self.recorder.recording:
            self._stop_recording(reason)
            if self.state == State.ERROR:
                return  # finishing the recording failed too, and said so
        self.error = reason
        self.sounder.play("error")
        self._enter(State.ERROR, reason=reason, detail=detail)

    # ------------------------------------------------------------------ docking
    def dock(self) -> None:
        if self.recorder.recording:
            self._stop_recording("docked")
        self._announce_end_us = None
        self._enter(State.DOCKED)
        self.events.sync()

    def _reopen_link(self, now: int) -> None:
        self._link_tried_us = now
        try:
            port = self._open_link()  # type: ignore[misc]
        except LinkClosed:
            return  # no gadget yet (not in a dock, or it is resetting): try again later
        self.log("link_opened")
        self.attach_link(port)

    def attach_link(self, port: Link) -> LinkService:
        """Serve the dock protocol on ``port`` from now on (the USB gadget came up, a pty)."""
        self.link = LinkService(port, self.store, self.events, self.identity, self.dock_keys, LinkHooks(
            log=self.log, docked=self._link_docked, undocked=self.undock, set_utc=self._set_utc,
            assign=self._assign, set_recipients=self._set_recipients, revoke_docks=self._revoke_docks),
            revoked_docks=self.revoked_docks)
        return self.link

    # ------------------------------------------------------------------ link hooks
    def _link_docked(self, dock_id: str) -> None:
        if self.state != State.DOCKED:
            self.dock()

    def _set_utc(self, utc_us: int, dock_id: str) -> int:
        offset = self.clock.set_utc(utc_us)
        self.recorder.clock_sync = {"offset_us": offset, "synced_utc_us": utc_us, "dock_id": dock_id}
        self.log("clock_set", offset_us=offset, dock_id=dock_id)
        return offset

    def _assign(self, officer_id: str | None, dock_id: str) -> None:
        self.identity = replace(self.identity, officer_id=officer_id)
        self.recorder.identity = self.identity
        if self.link is not None:
            self.link.identity = self.identity
        self.log("officer_assigned", officer_id=officer_id, dock_id=dock_id)

    def _set_recipients(self, recipients: list[str], dock_id: str) -> None:
        """From the next segment on, footage is encrypted to these (a rotation of the office's key)."""
        self.identity = replace(self.identity, recipients=tuple(recipients))
        self.recorder.identity = self.identity
        if self.link is not None:
            self.link.identity = self.identity
        self.log("recipients_set", recipients=recipients, dock_id=dock_id)

    def _revoke_docks(self, docks: list[str], dock_id: str) -> None:
        self.log("docks_revoked", dock_keys=docks, dock_id=dock_id)

    def undock(self) -> None:
        if self.state == State.DOCKED and self._seal_leftovers():
            self.error = None
            self._enter(State.READY)
            self._check_storage()
            self.events.sync()

    # ------------------------------------------------------------------ warnings
    def _warn(self, name: str, **data: Any) -> None:
        if name not in self.warnings:
            self.warnings.add(name)
            self.sounder.play("warning")
            self.log("warning", warning=name, **data)
            self._update_amber()

    def _clear_warning(self, name: str) -> None:
        if name in self.warnings:
            self.warnings.discard(name)
            self.log("warning_cleared", warning=name)
            self._update_amber()

    def _update_amber(self) -> None:
        self.hw.amber.value = bool(self.warnings) or self.state == State.ERROR

    def _check_storage(self) -> None:
        free_mb = self.store.free_bytes() / (1 << 20)
        s = self.config.storage
        if free_mb < s.full_free_mb:
            if self.state not in (State.ERROR, State.DOCKED, State.SHUTDOWN):
                self._fail("storage_full", f"{free_mb:.0f} MiB free")
        elif free_mb < s.warn_free_mb:
            self._warn("storage_low", free_mb=round(free_mb))
        else:
            self._clear_warning("storage_low")
            # Space was freed: recover by itself. A disk that failed a write (storage_error)
            # is not trusted again until the camera has been docked or rebooted.
            if self.state == State.ERROR and self.error == "storage_full" and self._seal_leftovers():
                self.error = None
                self._enter(State.READY)

    def _seal_leftovers(self) -> bool:
        """Seal a segment a failed close left open; False if the disk still fails."""
        try:
            for m in self.store.seal_interrupted():
                self.log("segment_sealed_after_interruption", seq=m.seq, recording_id=m.recording_id)
        except (OSError, StoreError) as exc:
            self.log("seal_failed", error=str(exc))
            return False
        return True

    def _check_battery(self) -> None:
        level = self.power.level_percent()
        if level is None or self.state in (State.SHUTDOWN, State.DOCKED):
            return
        p = self.config.power
        if level <= p.critical_percent:
            if self.recorder.recording:
                self._stop_recording("battery_critical")
            self.log("battery_critical", level=level)
            self._enter(State.SHUTDOWN, reason="battery_critical")
        elif level <= p.low_percent:
            self._warn("battery_low", level=level)
        else:
            self._clear_warning("battery_low")

    # ------------------------------------------------------------------ records
    def log(self, kind: str, **data: Any) -> None:
        self.events.append(kind, self.state.value, **data)
        if self.journal:
            # the same line in the journal (journalctl -u bodycam-device) and in systemd's status
            words = " ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, (dict, list, bytes)))
            print(f"{kind} [{self.state.value}] {words}".rstrip(), flush=True)
            self.service.send(f"STATUS={self.state.value}: {kind}")

    def _sample_leds(self, now: int) -> None:
        states = self.hw.led_states()
        if not self.led_timeline or {k: self.led_timeline[-1][k] for k in states} != states:
            self.led_timeline.append({"t": (now - self.boot_us) / 1e6, **states, "state": self.state.value})
