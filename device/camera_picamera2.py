"""The Raspberry Pi camera backend (picamera2 + its H.264 encoder).

picamera2 cannot be imported off a Pi (it needs libcamera), so it is imported only
when this backend is opened. Its encoder pushes frames into an ``Output``; ours,
:class:`_QueueOutput`, puts each one on a bounded queue as an :class:`EncodedPacket`
and :meth:`Picamera2Camera.packets` yields them — so the rest of the device is the
same as in the simulator. We do not use ``CircularOutput2``: it writes a frame only
when it leaves its buffer, so its file lags live video (see device/ring_buffer.py).

Hardware bring-up (timestamps, Pi 5's software encoder, audio) is its own issue;
this module is exercised on hardware only.
"""

from __future__ import annotations

import queue
from typing import Any, Iterator

from device.camera import CameraConfig, CameraError, EncodedPacket, VideoParams


class Picamera2Camera:
    def __init__(self, config: CameraConfig, **_: Any) -> None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 - only importable on a Pi
            from picamera2.encoders import H264Encoder
            from picamera2.outputs import Output
        except ImportError as exc:
            raise CameraError("the picamera2 backend needs a Raspberry Pi with libcamera "
                              "(apt install python3-picamera2); use backend 'sim' elsewhere") from exc
        self.video: VideoParams = config.video
        self.audio = None  # audio capture is a separate issue
        self._queue: queue.Queue[EncodedPacket | None] = queue.Queue(maxsize=config.video.fps * 4)
        q = self._queue

        class _QueueOutput(Output):  # type: ignore[misc, valid-type]
            def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                            packet: Any = None, audio: bool = False) -> None:
                if audio or timestamp is None:
                    return
                q.put(EncodedPacket(bytes(frame), int(timestamp), bool(keyframe)))

        v = config.video
        self._cam = Picamera2()
        self._cam.configure(self._cam.create_video_configuration(
            main={"size": (v.width, v.height)}, controls={"FrameRate": v.fps}))
        self._encoder = H264Encoder(bitrate=v.bitrate, repeat=True, iperiod=v.gop_frames)
        self._cam.start_recording(self._encoder, _QueueOutput())

    def packets(self) -> Iterator[EncodedPacket]:
        while (packet := self._queue.get()) is not None:
            yield packet

    def close(self) -> None:
        self._cam.stop_recording()
        self._queue.put(None)
