"""``bodycam-device --config /etc/bodycam/bodycam.toml``: the camera's main process.

Real backends throughout: the camera named in the config (``picamera2`` on a Pi),
gpiozero's default pin factory (``GPIOZERO_PIN_FACTORY`` overrides it, e.g. ``mock``),
ALSA ``aplay`` for the spoken cue, the battery gauge file if configured.
Exit status 2 on a bad configuration, 1 when keys, camera or store are unusable (the
reason on stderr), 0 after a clean stop (SIGTERM/SIGINT finish the recording first).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from gpiozero.exc import GPIOZeroError

from common import keys
from common.clock import SystemClock
from common.signals import StopSignals
from device import bench_button, config as device_config
from device.camera import AudioParams, CameraConfig, CameraError, VideoParams, open_camera
from device.hardware import AplaySink, Hardware, render_cue
from common.link import Link, LinkClosed, open_port
from device.identity import DeviceIdentity
from device.link_service import load_dock_keys
from device.power import MainsPower, PowerSource, SysfsBattery
from common.service_notify import ServiceNotifier
from device.runtime import DeviceRuntime, State
from device.segment_store import SegmentStore, StoreError


class HardwareError(Exception):
    """Pins or sound cannot be opened; the message says what to check."""


def build_runtime(config: device_config.Config, clock: SystemClock) -> DeviceRuntime:
    d, c = config.device, config.camera
    if not d.recipients:
        raise device_config.ConfigError("device.recipients is empty: put the evidence office's age1… "
                                        "recipient there (bodycam-keys authority prints it)")
    identity = DeviceIdentity.load(d.id, device_config.resolve(config, d.key), d.recipients, d.officer_id or None)
    video = VideoParams(width=c.width, height=c.height, fps=c.fps, bitrate=c.bitrate,
                        gop_frames=max(1, round(c.fps * c.gop_seconds)))
    camera = open_camera(CameraConfig(c.backend, video, AudioParams() if c.audio else None,
                                      options={"audio_device": c.audio_device}), clock=clock)
    power: PowerSource = (SysfsBattery(Path(config.power.battery_capacity_file))
                          if config.power.battery_capacity_file else MainsPower())
    cue = render_cue(config.cues.announcement, config.cues.voice, device_config.resolve(config, config.cues.wav))
    try:
        hardware = Hardware.open(config.pins)
    except GPIOZeroError as exc:
        camera.close()
        raise HardwareError(
            f"cannot open the GPIO pins ({type(exc).__name__}: {exc}). On a Pi, check [pins] in the config; "
            "off a Pi, run with GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin") from None
    dock_keys = load_dock_keys([device_config.resolve(config, k) for k in config.link.dock_keys])
    path = config.link.port
    # Opened by the runtime's tick, and again whenever it closed: the gadget's port comes and
    # goes with the dock, and a peer that stalls is dropped rather than block the loop.
    opener = (lambda: Link(open_port(path), nonblocking=True)) if path else None
    return DeviceRuntime(config, identity, camera, hardware, clock,
                         SegmentStore(device_config.resolve(config, d.store), identity), power,
                         audio=AplaySink(), cue_wav=cue, dock_keys=dock_keys,
                         service=ServiceNotifier.from_env(), open_link=opener)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bodycam-device", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true",
                      help="report what is missing to record (keys, store space, camera, pins, microphone, "
                           "sound, dock link) in plain words and exit: 0 ready, 1 not ready")
    what.add_argument("--render-cue", action="store_true",
                      help="render the spoken announcement ([cues]) with espeak-ng and exit (run at install)")
    what.add_argument("--press", choices=sorted(bench_button.GESTURES),
                      help=f"a bench without GPIO (flash.sh camera --pins mock): press the running camera's "
                           f"button through ${bench_button.ENV}: a short press, a double press or a hold")
    parser.add_argument("--json", action="store_true", help="with --check: the findings as JSON")
    args = parser.parse_args(argv)
    try:
        config = device_config.load(args.config)
    except device_config.ConfigError as exc:
        parser.error(str(exc))
    if args.press:
        path = os.environ.get(bench_button.ENV) or bench_button.DEFAULT_PATH
        try:
            bench_button.press(path, args.press)
        except OSError as exc:
            print(f"bodycam-device: error: cannot press the button at {path}: {exc.strerror or exc} "
                  "(is bodycam-device running with --pins mock? systemctl status bodycam-device)", file=sys.stderr)
            return 1
        return 0
    if args.check:
        from device.check import report, run_checks
        return report(args.config, run_checks(config), args.json)
    if args.render_cue:
        cues = config.cues
        wav = render_cue(cues.announcement, cues.voice, device_config.resolve(config, cues.wav))
        if wav is None:
            print("bodycam-device: error: the announcement could not be rendered: is espeak-ng installed "
                  f"(apt install espeak-ng) and voice {cues.voice!r} available (espeak-ng --voices)?",
                  file=sys.stderr)
            return 1
        print(f"{wav}: {cues.announcement!r} ({cues.voice})")
        return 0
    try:
        runtime = build_runtime(config, SystemClock())
    except device_config.ConfigError as exc:
        parser.error(str(exc))
    except (keys.KeyFileError, CameraError, StoreError, HardwareError, LinkClosed) as exc:
        print(f"bodycam-device: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"bodycam-device: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        bench = bench_button.from_env(runtime.hw.button)
    except (OSError, RuntimeError) as exc:
        print(f"bodycam-device: error: the bench button: {exc}", file=sys.stderr)
        return 1
    try:
        with StopSignals(runtime.request_stop):
            final = runtime.run()
    finally:
        if bench is not None:
            bench.close()
    return 1 if final == State.ERROR else 0


if __name__ == "__main__":
    sys.exit(main())
