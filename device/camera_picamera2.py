"""The Raspberry Pi camera backend (picamera2 + its H.264 encoder).

picamera2 cannot be imported off a Pi (it needs libcamera), so it is imported only
when this backend is opened. Its encoder calls ``Output.outputframe(frame, keyframe,
timestamp, packet, audio)`` from its own thread; our output hands every frame to a
:class:`FrameSink`, which turns it into an :class:`EncodedPacket` on a bounded queue
that :meth:`Picamera2Camera.packets` yields — so the rest of the device is the same as
in the simulator. We do not use ``CircularOutput2``: it writes a frame only when it
leaves its buffer, so its file lags live video (see device/ring_buffer.py).

What :class:`FrameSink` guarantees (tested without a Pi, tests/test_camera_picamera2.py):

* timestamps: picamera2's are µs on the sensor's clock; the first frame is anchored to
  the runtime clock's monotonic time, later ones keep their sensor spacing, so pts are
  exact between frames and on the same timeline as buttons and events;
* the stream starts at a keyframe (the encoder repeats SPS/PPS on every keyframe,
  ``repeat=True``), and a frame whose timestamp does not advance is dropped and counted;
* the encoder thread is never blocked: a full queue drops the frame and counts it;
* a camera that stops delivering frames for ``stall_s`` raises :class:`CameraError`
  from :meth:`packets` — the runtime then enters ERROR (amber LED, error tone) and
  the service manager restarts the process. Audio packets do not count: a live
  microphone cannot hide a dead camera.

The microphone (:mod:`device.microphone`, ALSA through PyAV, AAC) runs in its own thread
and puts its packets on the same queue (:meth:`FrameSink.put_audio`), already on the same
clock. A microphone that fails is logged and the camera records video alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator

from device.camera import AudioParams, CameraConfig, CameraError, EncodedPacket, VideoParams

log = logging.getLogger(__name__)


class FrameSink:
    """picamera2 ``Output.outputframe`` → :class:`EncodedPacket`, on a bounded queue.

    >>> sink = FrameSink(now_us=lambda: 1_000_000, maxsize=4)
    >>> sink.outputframe(b"P-frame", keyframe=False, timestamp=10)     # before any keyframe: dropped
    >>> sink.outputframe(b"I-frame", keyframe=True, timestamp=50_000)
    >>> sink.outputframe(b"P-frame", keyframe=False, timestamp=83_333)
    >>> [(p.pts_us, p.keyframe) for p in sink.drain()]
    [(1000000, True), (1033333, False)]
    """

    def __init__(self, now_us: Callable[[], int], maxsize: int = 120, stall_s: float = 3.0) -> None:
        self.now_us = now_us
        self.stall_s = stall_s
        self._queue: queue.Queue[EncodedPacket | None] = queue.Queue(maxsize=maxsize)
        self._anchor: tuple[int, int] | None = None   # (sensor µs, clock µs) of the first keyframe
        self._last: int | None = None
        self.dropped_full = 0                          # the consumer fell behind
        self.dropped_order = 0                         # a timestamp that did not advance
        self.dropped_before_keyframe = 0
        self._closed = threading.Event()

    def outputframe(self, frame: Any, keyframe: bool = True, timestamp: int | None = None, packet: Any = None,
                    audio: bool = False) -> None:
        """Called by picamera2's encoder thread; never blocks."""
        if audio or self._closed.is_set():
            return
        if timestamp is None:  # no sensor time: the clock's, mapped onto the sensor's timeline
            now = self.now_us()
            timestamp = now if self._anchor is None else self._anchor[0] + (now - self._anchor[1])
        if self._anchor is None:
            if not keyframe:
                self.dropped_before_keyframe += 1
                return
            self._anchor = (int(timestamp), self.now_us())
        if self._last is not None and timestamp <= self._last:
            self.dropped_order += 1
            return
        self._last = int(timestamp)
        pts = self._anchor[1] + (int(timestamp) - self._anchor[0])
        try:
            self._queue.put_nowait(EncodedPacket(bytes(frame), pts, bool(keyframe)))
        except queue.Full:
            self.dropped_full += 1

    def put_audio(self, packet: EncodedPacket) -> None:
        """Called by the microphone's thread; never blocks (a full queue drops and counts)."""
        if self._closed.is_set():
            return
        try:
            self._queue.put_nowait(packet)
        except queue.Full:
            self.dropped_full += 1

    def packets(self) -> Iterator[EncodedPacket]:
        """Packets until :meth:`close`; :class:`CameraError` if no *video* arrives for ``stall_s``."""
        last_video = time.monotonic()
        while True:
            wait = last_video + self.stall_s - time.monotonic()
            try:
                packet = self._queue.get(timeout=max(wait, 0.001))
            except queue.Empty:
                packet = None if self._closed.is_set() else False
            if packet is False or (packet is not None and packet.kind == "audio"
                                   and time.monotonic() - last_video > self.stall_s):
                raise CameraError(f"no frame from the camera for {self.stall_s:g} s (camera cable, "
                                  "libcamera or the encoder failed); restarting the camera service") from None
            if packet is None:
                return
            if packet.kind == "video":
                last_video = time.monotonic()
            yield packet

    def drain(self) -> list[EncodedPacket]:
        out = []
        while True:
            try:
                packet = self._queue.get_nowait()
            except queue.Empty:
                return out
            if packet is not None:
                out.append(packet)

    def close(self) -> None:
        self._closed.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass


class Picamera2Camera:
    """The Pi's camera: ``Picamera2`` + ``H264Encoder`` (the hardware encoder on Pi 4,
    Zero 2 W and CM4; picamera2 uses libx264 on Pi 5), frames through a :class:`FrameSink`.

    On a Pi: ``open_camera(CameraConfig("picamera2", VideoParams(1280, 720, 30)), clock=SystemClock())``.
    """

    def __init__(self, config: CameraConfig, clock: Any = None, **_: Any) -> None:
        try:
            from picamera2 import Picamera2  # noqa: PLC0415 - only importable on a Pi
            from picamera2.encoders import H264Encoder
            from picamera2.outputs import Output
        except ImportError as exc:
            raise CameraError("the picamera2 backend needs a Raspberry Pi with libcamera "
                              "(apt install python3-picamera2); use backend 'sim' elsewhere") from exc
        self.video: VideoParams = config.video
        now_us = clock.monotonic_us if clock is not None else _monotonic_us
        self.sink = FrameSink(now_us, maxsize=config.video.fps * 4,
                              stall_s=float(config.options.get("stall_s", 3.0)))
        sink = self.sink
        self.microphone = _open_microphone(config, now_us, sink)
        self.audio: AudioParams | None = self.microphone.params if self.microphone else None

        class _SinkOutput(Output):  # type: ignore[misc, valid-type]
            def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                            packet: Any = None, audio: bool = False) -> None:
                sink.outputframe(frame, keyframe, timestamp, packet, audio)

        v = config.video
        try:
            self._cam = Picamera2()
            self._cam.configure(self._cam.create_video_configuration(
                main={"size": (v.width, v.height)}, controls={"FrameRate": v.fps}))
            self._encoder = H264Encoder(bitrate=v.bitrate, repeat=True, iperiod=v.gop_frames)
            self._cam.start_recording(self._encoder, _SinkOutput())
        except Exception as exc:  # libcamera: no camera connected, camera busy, …
            if self.microphone is not None:
                self.microphone.close()
            raise CameraError(f"the camera could not be started ({type(exc).__name__}: {exc}); is the "
                              "camera cable seated and the camera enabled (rpicam-hello --list-cameras)?") from exc

    @staticmethod
    def probe() -> str:
        """Find the camera without starting it (``bodycam-device --check``)."""
        try:
            from picamera2 import Picamera2  # noqa: PLC0415
        except ImportError as exc:
            raise CameraError("picamera2 is not installed or libcamera is missing (apt install "
                              "python3-picamera2; the venv needs --system-site-packages)") from exc
        cameras = Picamera2.global_camera_info()
        if not cameras:
            raise CameraError("no camera found: is the ribbon cable seated (contacts the right way round) "
                              "and does rpicam-hello --list-cameras see it?")
        return ", ".join(f"{c.get('Model', '?')} at {c.get('Location', c.get('Id', '?'))}" for c in cameras)

    def packets(self) -> Iterator[EncodedPacket]:
        return self.sink.packets()

    def close(self) -> None:
        self.sink.close()
        if self.microphone is not None:
            self.microphone.close()
        try:
            self._cam.stop_recording()
        finally:
            self._cam.close()


def _open_microphone(config: CameraConfig, now_us: Callable[[], int], sink: FrameSink) -> Any:
    """The microphone if audio is configured and it opens; else None (video alone, logged)."""
    if config.audio is None:
        return None
    from device.microphone import Microphone, MicrophoneError  # noqa: PLC0415
    try:
        return Microphone(config.audio, now_us, sink.put_audio,
                          device=str(config.options.get("audio_device", "default")),
                          fmt=str(config.options.get("audio_format", "alsa")))  # another PyAV input in tests
    except MicrophoneError as exc:
        log.error("%s; the camera records video without sound", exc)
        return None


def _monotonic_us() -> int:
    import time
    return time.monotonic_ns() // 1000
