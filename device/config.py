"""Device configuration: one TOML file, every value range-checked at load.

Unknown keys are errors (a typo must not silently fall back to a default), and
there is deliberately no setting for the red recording LED: the law requires open
recording, so no configuration can make a recording covert.

Example ``bodycam.toml``::

    [device]
    id = "kod-cam-07"
    key = "/etc/bodycam/device.key"
    recipients = ["age1…"]            # the evidence office; never an identity
    store = "/var/lib/bodycam"

    [recording]
    pre_record_seconds = 30           # 0–120, and at most [policy] pre_record_cap_seconds

    [policy]
    pre_record_cap_seconds = 60       # set by the administrator
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from common import config_schema, keys
from common.text import check_plain


ConfigError = config_schema.ConfigError
_range = config_schema.ranged


@dataclass(frozen=True)
class DeviceSection:
    id: str = "sim-cam-01"
    officer_id: str = ""
    key: str = "keys/device.key"
    recipients: list[str] = field(default_factory=list)
    store: str = "store"


@dataclass(frozen=True)
class CameraSection:
    backend: str = "sim"
    width: int = field(default=1280, metadata=_range(16, 7680))
    height: int = field(default=720, metadata=_range(16, 4320))
    fps: int = field(default=30, metadata=_range(1, 120))
    bitrate: int = field(default=4_000_000, metadata=_range(50_000, 100_000_000))
    gop_seconds: float = field(default=1.0, metadata=_range(0.1, 10))
    audio: bool = True
    audio_device: str = "default"    # ALSA capture device (arecord -L), e.g. "plughw:CARD=Device"


@dataclass(frozen=True)
class RecordingSection:
    pre_record_seconds: float = field(default=30.0, metadata=_range(0, 120))
    pre_record_audio: bool = False
    pre_record_max_mb: int = field(default=256, metadata=_range(1, 4096))
    segment_seconds: float = field(default=10.0, metadata=_range(1, 3600))
    sync_interval_s: float = field(default=1.0, metadata=_range(0.05, 1.0))


@dataclass(frozen=True)
class PolicySection:
    pre_record_cap_seconds: float = field(default=120.0, metadata=_range(0, 120))


@dataclass(frozen=True)
class ButtonSection:
    double_press_window_s: float = field(default=0.4, metadata=_range(0.1, 2))
    short_press_max_s: float = field(default=1.0, metadata=_range(0.1, 3))
    hold_stop_s: float = field(default=3.0, metadata=_range(1, 10))
    standby_hold_s: float = field(default=5.0, metadata=_range(1, 20))


@dataclass(frozen=True)
class CueSection:
    announcement: str = "Achtung, Videoaufzeichnung"
    voice: str = "de"
    wav: str = "cues/announce.wav"
    reminder_interval_s: float = field(default=120.0, metadata=_range(10, 3600))
    flash_hz: float = field(default=4.0, metadata=_range(0.5, 20))


@dataclass(frozen=True)
class PinSection:
    button: int = field(default=17, metadata=_range(0, 27))
    red: int = field(default=22, metadata=_range(0, 27))
    green: int = field(default=27, metadata=_range(0, 27))
    amber: int = field(default=23, metadata=_range(0, 27))
    buzzer: int = field(default=18, metadata=_range(0, 27))


@dataclass(frozen=True)
class StorageSection:
    warn_free_mb: int = field(default=1024, metadata=_range(1, 1 << 20))
    full_free_mb: int = field(default=128, metadata=_range(1, 1 << 20))


@dataclass(frozen=True)
class PowerSection:
    battery_capacity_file: str = ""  # e.g. /sys/class/power_supply/BAT0/capacity; "" = no gauge
    low_percent: float = field(default=20, metadata=_range(1, 100))
    critical_percent: float = field(default=5, metadata=_range(0, 100))


@dataclass(frozen=True)
class LinkSection:
    port: str = ""                   # the dock link: "/dev/ttyGS0" on the Pi (USB gadget); "" = none
    dock_keys: list[str] = field(default_factory=list)   # PEM files of the enrolled docks' keys


@dataclass(frozen=True)
class Config:
    device: DeviceSection = field(default_factory=DeviceSection)
    camera: CameraSection = field(default_factory=CameraSection)
    recording: RecordingSection = field(default_factory=RecordingSection)
    policy: PolicySection = field(default_factory=PolicySection)
    button: ButtonSection = field(default_factory=ButtonSection)
    cues: CueSection = field(default_factory=CueSection)
    pins: PinSection = field(default_factory=PinSection)
    storage: StorageSection = field(default_factory=StorageSection)
    power: PowerSection = field(default_factory=PowerSection)
    link: LinkSection = field(default_factory=LinkSection)
    base_dir: Path = field(default=Path("."), compare=False)  # relative paths start here

    def __post_init__(self) -> None:
        for what, value in (("device.id", self.device.id), ("device.officer_id", self.device.officer_id)):
            try:
                check_plain(value, what)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        r, p = self.recording, self.policy
        if r.pre_record_seconds > p.pre_record_cap_seconds:
            raise ConfigError(
                f"recording.pre_record_seconds = {r.pre_record_seconds:g} exceeds the administrator's cap "
                f"policy.pre_record_cap_seconds = {p.pre_record_cap_seconds:g}; lower it or ask the "
                "administrator to raise the cap")
        b = self.button
        if not b.short_press_max_s < b.hold_stop_s < b.standby_hold_s:
            raise ConfigError("button timings must satisfy short_press_max_s < hold_stop_s < standby_hold_s")
        if self.storage.full_free_mb >= self.storage.warn_free_mb:
            raise ConfigError("storage.full_free_mb must be below storage.warn_free_mb")
        if self.power.critical_percent >= self.power.low_percent:
            raise ConfigError("power.critical_percent must be below power.low_percent")
        for r in self.device.recipients:
            try:
                keys.parse_recipient(r)
            except keys.KeyFileError as exc:
                raise ConfigError(f"device.recipients: {exc}") from None
        c = self.camera
        if c.width % 2 or c.height % 2:
            raise ConfigError(f"camera.width and camera.height must be even (H.264 4:2:0), got {c.width}x{c.height}")
        pins = [getattr(self.pins, f.name) for f in fields(self.pins)]
        if len(set(pins)) != len(pins):
            raise ConfigError(f"pins must all differ, got {pins}")


def from_dict(data: dict[str, Any], *, base_dir: Path | None = None) -> Config:
    """Build and validate a :class:`Config` from parsed TOML."""
    return config_schema.build(Config, data, base_dir=base_dir or Path("."))


def load(path: Path) -> Config:
    return config_schema.load(Config, path, "bodycam.toml")


def resolve(config: Config, value: str) -> Path:
    """Relative paths in the config are relative to the config file."""
    p = Path(value)
    return p if p.is_absolute() else config.base_dir / p

