"""The picamera2 backend's logic without a Pi: a stand-in that follows picamera2's Output
API (``start``/``stop``/``outputframe(frame, keyframe=True, timestamp=None, packet=None,
audio=False)``, called from an encoder thread) feeds real H.264 frames from the simulated
camera into :class:`~device.camera_picamera2.FrameSink`. On a Pi, ``pytest -m hardware``
runs the real backend (docs/hardware.md).
"""

from __future__ import annotations

import io
import threading
import time

import av
import pytest

from common.clock import VirtualClock
from device.camera import CameraConfig, CameraError, VideoParams, open_camera
from device.camera_picamera2 import FrameSink, Picamera2Camera
from device.muxer import TsMuxer
from tests.test_runtime import sim_factory  # noqa: F401 (a fixture)
from device.runtime import State

SENSOR_EPOCH_US = 7_123_456_789  # the sensor's clock has its own epoch


class StandInOutput:
    """What picamera2's ``Output`` base class provides, and how its encoder calls it."""

    def __init__(self, sink: FrameSink) -> None:
        self.sink = sink
        self.recording = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        if self.recording:
            self.sink.outputframe(frame, keyframe, timestamp, packet, audio)


def real_frames(seconds: float, fps: int = 15):
    camera = open_camera(CameraConfig("sim", VideoParams(width=320, height=240, fps=fps, bitrate=300_000,
                                                         gop_frames=fps)), clock=VirtualClock())
    out = []
    for p in camera.packets():
        out.append(p)
        if p.pts_us >= seconds * 1e6:
            break
    camera.close()
    return out


def encoder_thread(output: StandInOutput, frames, skip: int = 0) -> threading.Thread:
    """Like picamera2's encoder: its own thread, µs timestamps on the sensor's clock."""
    def run() -> None:
        for p in frames[skip:]:
            output.outputframe(memoryview(p.data), p.keyframe, SENSOR_EPOCH_US + p.pts_us)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_frames_become_packets_anchored_to_the_clock_from_a_keyframe():
    frames = real_frames(3)
    clock_now = [42_000_000]
    sink = FrameSink(lambda: clock_now[0], maxsize=1000)
    out = StandInOutput(sink)
    out.start()
    encoder_thread(out, frames, skip=3).join()  # joins mid-GOP: three P-frames before a keyframe
    packets = sink.drain()
    first_key = next(i for i, p in enumerate(frames) if i >= 3 and p.keyframe)
    assert sink.dropped_before_keyframe == first_key - 3
    assert packets[0].keyframe and packets[0].pts_us == 42_000_000
    spacing = [b.pts_us - a.pts_us for a, b in zip(packets, packets[1:])]
    assert spacing == [b.pts_us - a.pts_us for a, b in zip(frames[first_key:], frames[first_key + 1:])]
    assert all(isinstance(p.data, bytes) for p in packets)
    # What came out muxes and decodes: SPS/PPS are in-band on the keyframe.
    buf = io.BytesIO()
    mux = TsMuxer(buf, VideoParams(width=320, height=240, fps=15))
    for p in packets:
        mux.mux(p)
    mux.close()
    buf.seek(0)
    with av.open(buf) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded == len(packets)


def test_timestamps_that_do_not_advance_are_dropped_and_counted():
    sink = FrameSink(lambda: 0)
    sink.outputframe(b"k", True, 1000)
    sink.outputframe(b"p", False, 1000)   # repeated
    sink.outputframe(b"p", False, 900)    # backwards
    sink.outputframe(b"p", False, 67_666)
    sink.outputframe(b"a", False, 70_000, audio=True)  # audio goes its own way
    assert [p.pts_us for p in sink.drain()] == [0, 66_666] and sink.dropped_order == 2


def test_the_encoder_thread_is_never_blocked_by_a_slow_consumer():
    sink = FrameSink(lambda: 0, maxsize=5)
    out = StandInOutput(sink)
    out.start()
    t0 = time.monotonic()
    for i in range(50):
        out.outputframe(b"x", i == 0, 1000 + i * 33_333)
    assert time.monotonic() - t0 < 1.0
    assert len(sink.drain()) == 5 and sink.dropped_full == 45


def test_a_stalled_camera_raises_camera_error():
    sink = FrameSink(lambda: 0, stall_s=0.2)
    sink.outputframe(b"k", True, 1)
    it = sink.packets()
    assert next(it).keyframe
    t0 = time.monotonic()
    with pytest.raises(CameraError, match="no frame from the camera for 0.2 s"):
        next(it)
    assert 0.15 < time.monotonic() - t0 < 2
    closed = FrameSink(lambda: 0, stall_s=5)
    closed.close()
    assert list(closed.packets()) == []  # a closed camera ends the stream, no error


def test_a_camera_dying_mid_recording_puts_the_runtime_in_error(sim_factory, device_public, authority):
    """The whole path: stand-in encoder → sink → runtime; the frames stop mid-recording, the
    runtime finalises the recording and shows ERROR (amber)."""
    from dock.verify import verify_store
    sim = sim_factory()
    rt = sim.runtime
    frames = []
    for i, p in enumerate(rt.camera.packets()):
        frames.append(p)
        if i >= 15 * 8:
            break
    sink = FrameSink(rt.clock.monotonic_us, maxsize=10_000, stall_s=0.3)
    out = StandInOutput(sink)
    out.start()
    encoder_thread(out, frames).join()  # then the camera dies: no more frames

    def packets():
        for i, p in enumerate(sink.packets()):
            if i == 15 * 3:
                sim.pin.drive_low(); sim.pin.drive_high(); sim.pin.drive_low()  # a double press: record
            if i == 15 * 3 + 2:
                sim.pin.drive_high()
            yield p
    rt.camera.packets = packets  # type: ignore[method-assign]
    assert rt.run() == State.ERROR and rt.error == "camera_failure"
    (rec,) = rt.recordings
    assert rec.stop_reason == "camera_failure" and rec.segments
    assert verify_store(rt.store.dir, device_public, identity=authority[1]).ok
    assert rt.hw.led_states()["amber"] is True


def test_off_a_pi_the_backend_says_what_is_missing():
    with pytest.raises(CameraError, match="python3-picamera2"):
        Picamera2Camera(CameraConfig("picamera2"))


@pytest.mark.hardware
def test_real_camera_delivers_keyframe_first_packets():  # pragma: no cover - on a Pi only
    from common.clock import SystemClock
    cam = open_camera(CameraConfig("picamera2", VideoParams(width=1280, height=720, fps=30)), clock=SystemClock())
    try:
        packets = []
        for p in cam.packets():
            packets.append(p)
            if len(packets) == 90:
                break
    finally:
        cam.close()
    assert packets[0].keyframe and all(b.pts_us > a.pts_us for a, b in zip(packets, packets[1:]))


class _StandInPicamera2:
    """The slice of ``picamera2.Picamera2`` the backend uses; its "encoder" runs in a thread
    and calls the output with real H.264 at the sensor's pace, as picamera2's does."""

    frames: list = []

    def __init__(self) -> None:
        self.config = None
        self._stop = threading.Event()

    def create_video_configuration(self, main, controls):
        return {"main": main, "controls": controls}

    def configure(self, config) -> None:
        self.config = config

    def start_recording(self, encoder, output) -> None:
        self.encoder = encoder

        def run() -> None:
            t0 = time.monotonic()
            for p in self.frames:
                if self._stop.wait(max(0.0, t0 + p.pts_us / 1e6 - time.monotonic())):
                    return
                output.outputframe(memoryview(p.data), p.keyframe, SENSOR_EPOCH_US + p.pts_us)
        self._thread = threading.Thread(target=run)
        self._thread.start()

    def stop_recording(self) -> None:
        self._stop.set()
        self._thread.join()

    def close(self) -> None:
        pass

    @staticmethod
    def global_camera_info():
        return [{"Model": "imx708", "Location": 2, "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a"}]


@pytest.fixture
def stand_in_picamera2(monkeypatch):
    import sys
    import types
    pkg = types.ModuleType("picamera2")
    pkg.Picamera2 = _StandInPicamera2
    encoders = types.ModuleType("picamera2.encoders")
    encoders.H264Encoder = lambda **kw: types.SimpleNamespace(**kw)
    outputs = types.ModuleType("picamera2.outputs")
    outputs.Output = object
    for name, mod in (("picamera2", pkg), ("picamera2.encoders", encoders), ("picamera2.outputs", outputs)):
        monkeypatch.setitem(sys.modules, name, mod)
    _StandInPicamera2.frames = real_frames(2.5)
    return _StandInPicamera2


def test_the_backend_joins_camera_and_microphone_on_one_clock(stand_in_picamera2, tmp_path):
    """Picamera2Camera as the runtime opens it (stand-in picamera2, a paced tone for the ALSA
    microphone): the packets mux into one TS whose audio and video start together."""
    from common.clock import SystemClock
    from device.camera import AudioParams
    cam = Picamera2Camera(CameraConfig("picamera2", VideoParams(width=320, height=240, fps=15, gop_frames=15),
                                       AudioParams(), options={"audio_device": "sine=frequency=1000,arealtime",
                                                               "audio_format": "lavfi"}),
                          clock=SystemClock())
    assert cam.audio is not None and cam.audio.extradata
    assert cam._cam.encoder.repeat is True and cam._cam.encoder.iperiod == 15  # SPS/PPS on every keyframe
    got = []
    try:
        for p in cam.packets():
            got.append(p)
            if p.kind == "video" and p.pts_us - got[0].pts_us > 2_000_000:
                break
    finally:
        cam.close()
    video = [p for p in got if p.kind == "video"]
    audio = [p for p in got if p.kind == "audio" and p.pts_us >= video[0].pts_us]
    assert video[0].keyframe and len(audio) > 60
    ts = tmp_path / "joined.ts"
    with ts.open("wb") as f:
        mux = TsMuxer(f, cam.video, cam.audio)
        for p in sorted([*video, *audio], key=lambda p: p.pts_us):
            mux.mux(p)
        mux.close()
    with av.open(str(ts)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        starts = {s.type: s.start_time * s.time_base for s in (v, a)}
        assert abs(float(starts["video"] - starts["audio"])) < 0.1     # in sync to a tenth of a second
        assert sum(1 for _ in c.decode(audio=0)) > 60


def test_the_backend_probe_names_the_camera(stand_in_picamera2):
    assert "imx708" in Picamera2Camera.probe()
    stand_in_picamera2.global_camera_info = staticmethod(lambda: [])
    with pytest.raises(CameraError, match="ribbon cable"):
        Picamera2Camera.probe()
