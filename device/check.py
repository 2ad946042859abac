"""``bodycam-device --check``: is this camera ready to record? Plain words for a technician.

Each check looks at one thing the runtime needs and changes nothing: the configuration,
the device key (and that the store's chain was signed with it), the evidence office's
recipient, the store's directory and free space, the camera, the GPIO pins, the
microphone, the spoken announcement, the dock link and the dock keys. A *problem* means
the camera cannot record (exit 1); a *warning* means it records but something is missing
(no announcement voice, no dock link, …).

Run it as the service's user, so permissions are checked as the camera sees them::

    sudo -u bodycam /opt/bodycam/venv/bin/bodycam-device --config /etc/bodycam/bodycam.toml --check

>>> Finding("keys", "ok", "device key ok").line()
'  ok       keys        device key ok'
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

from common import keys, signed
from device import config as device_config
from device.camera import CameraConfig, CameraError, VideoParams, camera_factory
from common.chain_head import read_head
from device.segment_store import HEAD_FILE

Level = Literal["ok", "warning", "problem"]
_LABEL = {"ok": "ok", "warning": "WARNING", "problem": "PROBLEM"}


@dataclass(frozen=True)
class Finding:
    what: str
    level: Level
    message: str

    def line(self) -> str:
        return f"  {_LABEL[self.level]:<8} {self.what:<11} {self.message}"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_recipient(config: device_config.Config) -> list[Finding]:
    if not config.device.recipients:
        return [Finding("recipient", "problem", "device.recipients is empty: the camera has no one to encrypt "
                        "to; put the evidence office's age1… recipient there (flash.sh --recipient)")]
    return [Finding("recipient", "ok", f"{len(config.device.recipients)} evidence office recipient(s)")]


def check_keys(config: device_config.Config) -> list[Finding]:
    d = config.device
    path = device_config.resolve(config, d.key)
    out = []
    try:
        key = keys.load_signing_key(path)
    except keys.KeyFileError as exc:
        return [Finding("keys", "problem", f"the device key cannot be used: {exc}")]
    except PermissionError:
        return [Finding("keys", "problem", f"the device key {path} is not readable by this user "
                        f"(uid {os.getuid()}); it must belong to the camera's service user, mode 0600")]
    except OSError as exc:
        return [Finding("keys", "problem", f"the device key {path} is missing ({exc.strerror}); "
                        "flash.sh camera generates it")]
    fingerprint = keys.fingerprint(key.public_key())
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        out.append(Finding("keys", "warning", f"the device key {path} is readable by others (mode {mode:04o}); "
                           f"chmod 600 {path}"))
    head = device_config.resolve(config, d.store) / HEAD_FILE
    if head.exists():  # what the store checks at boot, without rolling anything forward
        data = head.read_bytes()
        try:
            read_head(data, key.public_key())
        except signed.SignatureError as exc:
            kid = signed.kid_of(data)
            if kid is not None and kid.hex() != fingerprint:
                out.append(Finding("keys", "problem", f"the store {head.parent} was signed by another device "
                                   f"key ({kid.hex()[:16]}…, this key is {fingerprint[:16]}…); put the store's "
                                   "own key back, or dock the camera and give the new key a new store"))
            else:
                out.append(Finding("chain", "problem", f"{head} is corrupt or altered ({exc}); the camera "
                                   "cannot continue its chain. Do not delete it: dock the camera so the footage "
                                   "is taken off and checked"))
            return out
    out.append(Finding("keys", "ok", f"device key {path} (fingerprint {fingerprint[:16]}…)"))
    return out


def check_store(config: device_config.Config) -> list[Finding]:
    store = device_config.resolve(config, config.device.store)
    base = _nearest_existing(store)
    if not base.is_dir():
        return [Finding("store", "problem", f"{store} cannot be created: {base} is not a directory")]
    if not os.access(base, os.W_OK | os.X_OK):
        return [Finding("store", "problem", f"{store} is not writable by this user (uid {os.getuid()}): "
                        f"{base} must belong to the camera's service user")]
    free_mb = shutil.disk_usage(base).free // 1_000_000
    s = config.storage
    if free_mb <= s.full_free_mb:
        return [Finding("store", "problem", f"only {free_mb} MB free at {base}; the camera refuses to record "
                        f"below {s.full_free_mb} MB: dock it to empty it, or use a larger card")]
    if free_mb <= s.warn_free_mb:
        return [Finding("store", "warning", f"{free_mb} MB free at {base} (warning below {s.warn_free_mb} MB): "
                        "dock the camera soon")]
    return [Finding("store", "ok", f"{store}: {free_mb:,} MB free")]


def check_camera(config: device_config.Config) -> list[Finding]:
    c = config.camera
    try:
        factory = camera_factory(c.backend)
        probe: Callable[[], str] | None = getattr(factory, "probe", None)
        if probe is not None:
            found = probe()
        else:  # a backend without a probe: open it and close it again
            from common.clock import SystemClock
            cam = factory(CameraConfig(c.backend, VideoParams(width=c.width, height=c.height, fps=c.fps)),
                          clock=SystemClock())
            cam.close()
            found = f"backend {c.backend!r} opens"
    except CameraError as exc:
        return [Finding("camera", "problem", str(exc))]
    return [Finding("camera", "ok", found)]


def check_pins(config: device_config.Config) -> list[Finding]:
    from gpiozero.exc import GPIOZeroError
    from device.hardware import Hardware
    p = config.pins
    try:
        with warnings.catch_warnings():  # gpiozero warns for every pin factory it falls back from
            warnings.simplefilter("ignore")
            hw = Hardware.open(p)
    except (GPIOZeroError, OSError, RuntimeError) as exc:
        return [Finding("pins", "problem", f"the GPIO pins cannot be opened ({type(exc).__name__}: {exc}); "
                        "on a Pi check [pins] and that the service user is in the gpio group; off a Pi "
                        "GPIOZERO_PIN_FACTORY=mock GPIOZERO_MOCK_PIN_CLASS=mockpwmpin simulates them")]
    factory = type(hw.button.pin_factory).__name__
    hw.close()
    return [Finding("pins", "ok", f"button {p.button}, red {p.red}, green {p.green}, amber {p.amber}, "
                    f"buzzer {p.buzzer} (BCM, {factory})")]


def check_sound(config: device_config.Config) -> list[Finding]:
    from device.hardware import cue_is_current
    cues = config.cues
    wav = device_config.resolve(config, cues.wav)
    out = []
    if cue_is_current(cues.announcement, cues.voice, wav):
        out.append(Finding("announce", "ok", f"{cues.announcement!r} rendered at {wav}"))
    elif shutil.which("espeak-ng"):
        out.append(Finding("announce", "ok", f"{cues.announcement!r} is rendered with espeak-ng at start"))
    else:
        out.append(Finding("announce", "warning", "no spoken announcement: espeak-ng is missing and "
                           f"{wav} is not rendered; the buzzer's announce pattern replaces it "
                           "(apt install espeak-ng)"))
    if not shutil.which("aplay"):
        out.append(Finding("speaker", "warning", "aplay is missing, so the announcement cannot be played "
                           "(apt install alsa-utils)"))
    return out


def check_microphone(config: device_config.Config) -> list[Finding]:
    c = config.camera
    if not c.audio:
        return [Finding("microphone", "ok", "audio is off (camera.audio = false)")]
    from device.microphone import MicrophoneError, probe_microphone
    try:
        found = probe_microphone(c.audio_device)
    except MicrophoneError as exc:
        return [Finding("microphone", "warning", f"{exc}; the camera records video without sound")]
    return [Finding("microphone", "ok", found)]


def check_link(config: device_config.Config) -> list[Finding]:
    from device.link_service import load_dock_keys
    link = config.link
    out = []
    if not link.port:
        out.append(Finding("dock link", "warning", "no dock link configured (link.port); the camera cannot "
                           "be emptied by a dock"))
    elif not Path(link.port).exists():
        out.append(Finding("dock link", "warning", f"{link.port} is missing: is bodycam-gadget.service running "
                           "(dtoverlay=dwc2 in config.txt, the USB data port in use)?"))
    else:
        out.append(Finding("dock link", "ok", f"{link.port}"))
    if not link.dock_keys:
        out.append(Finding("dock keys", "warning", "no dock keys (link.dock_keys): no dock can authenticate "
                           "to this camera"))
        return out
    try:
        docks = load_dock_keys([device_config.resolve(config, k) for k in link.dock_keys])
    except (keys.KeyFileError, OSError) as exc:
        out.append(Finding("dock keys", "problem", f"a dock key cannot be read: {exc}"))
        return out
    out.append(Finding("dock keys", "ok", f"{len(docks)} dock(s) enrolled"))
    return out


def check_power(config: device_config.Config) -> list[Finding]:
    f = config.power.battery_capacity_file
    if not f:
        return []
    try:
        level = float(Path(f).read_text().strip())
    except (OSError, ValueError) as exc:
        return [Finding("battery", "warning", f"the battery gauge {f} cannot be read ({exc}); low-battery "
                        "warnings are off")]
    return [Finding("battery", "ok", f"{level:g} %")]


CHECKS = [check_keys, check_recipient, check_store, check_camera, check_pins, check_microphone, check_sound, check_link,
          check_power]


def run_checks(config: device_config.Config) -> list[Finding]:
    return [finding for check in CHECKS for finding in check(config)]


def report(config_path: Path, findings: list[Finding], as_json: bool) -> int:
    problems = [f for f in findings if f.level == "problem"]
    if as_json:
        print(json.dumps({"config": str(config_path), "ready": not problems,
                          "findings": [asdict(f) for f in findings]}, indent=2))
    else:
        print(f"bodycam-device check of {config_path}")
        for f in findings:
            print(f.line())
        warnings_ = sum(f.level == "warning" for f in findings)
        if problems:
            print(f"{len(problems)} problem(s): this camera cannot record until they are fixed.")
        else:
            print(f"Ready to record{f' ({warnings_} warning(s))' if warnings_ else ''}.")
    return 1 if problems else 0
