"""The camera seam: a source of *encoded* packets, one backend per kind of hardware.

A backend yields :class:`EncodedPacket` — bytes, pts in µs on the clock's monotonic
timeline, keyframe flag — the same shape picamera2's encoders hand to an
``Output.outputframe(frame, keyframe, timestamp)``. Backends are found by name
through the ``bodycam.cameras`` entry-point group (like gpiozero's pin factories),
so the device never imports the simulator:

* ``picamera2`` — :mod:`device.camera_picamera2`, the Pi (imports picamera2 lazily).
* ``sim`` — ``simulator.camera:SimCamera``, OpenCV scene + PyAV H.264.

>>> from device.camera import EncodedPacket
>>> len(EncodedPacket(b"\\x00\\x00\\x00\\x01", pts_us=0, keyframe=True))
4
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Iterator, Literal, Protocol

ENTRY_POINT_GROUP = "bodycam.cameras"


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    data: bytes
    pts_us: int
    keyframe: bool
    kind: Literal["video", "audio"] = "video"

    def __len__(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class VideoParams:
    """Codec parameters, recorded in every manifest. SPS/PPS travel in-band."""
    codec: str = "h264"
    width: int = 1280
    height: int = 720
    fps: int = 30
    bitrate: int = 4_000_000
    gop_frames: int = 30

    def to_dict(self) -> dict[str, Any]:
        return {"codec": self.codec, "width": self.width, "height": self.height,
                "fps": self.fps, "bitrate": self.bitrate, "gop_frames": self.gop_frames}


@dataclass(frozen=True)
class AudioParams:
    codec: str = "aac"
    sample_rate: int = 48_000
    channels: int = 1
    bitrate: int = 64_000
    extradata: bytes = b""    # AudioSpecificConfig: the TS muxer needs it to write ADTS

    def to_dict(self) -> dict[str, Any]:
        return {"codec": self.codec, "sample_rate": self.sample_rate,
                "channels": self.channels, "bitrate": self.bitrate}


class Camera(Protocol):
    """What every backend provides."""
    video: VideoParams
    audio: AudioParams | None

    def packets(self) -> Iterator[EncodedPacket]:
        """Packets in pts order (video and audio interleaved), until :meth:`close`."""
        ...

    def close(self) -> None: ...


class CameraError(RuntimeError):
    """The camera failed or is not available; the message says what to check."""


@dataclass
class CameraConfig:
    backend: str = "sim"
    video: VideoParams = field(default_factory=VideoParams)
    audio: AudioParams | None = None
    options: dict[str, Any] = field(default_factory=dict)


def available_backends() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def camera_factory(backend: str) -> Any:
    """The class registered for ``backend`` (an entry point). A backend may offer a
    ``probe() -> str`` static method that finds its hardware without starting it."""
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == backend]
    if not matches:
        raise CameraError(f"unknown camera backend {backend!r}; installed: "
                          f"{', '.join(available_backends()) or 'none (is the package installed?)'}")
    return matches[0].load()


def open_camera(config: CameraConfig, **kwargs: Any) -> Camera:
    """Instantiate the backend named by ``config.backend``."""
    return camera_factory(config.backend)(config, **kwargs)
