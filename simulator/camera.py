"""Simulated camera: an OpenCV-drawn scene encoded to H.264 by PyAV (libx264), optional AAC tone.

The scene has moving shapes and a burnt-in UTC timestamp and frame counter, so a
decoded frame says when it was taken. Timestamps come from the injected clock's
monotonic timeline; with a :class:`~common.clock.VirtualClock` the camera runs as
fast as the encoder allows, with a :class:`~common.clock.SystemClock` in real time.

>>> from common.clock import VirtualClock
>>> from device.camera import CameraConfig, VideoParams
>>> cam = SimCamera(CameraConfig(video=VideoParams(width=320, height=240, fps=10)), clock=VirtualClock())
>>> first = next(cam.packets()); cam.close()
>>> first.keyframe, first.pts_us, first.data[:4]
(True, 0, b'\\x00\\x00\\x00\\x01')
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from typing import Iterator

import av
import cv2
import numpy as np

from common.clock import Clock, SystemClock
from device.camera import AudioParams, CameraConfig, EncodedPacket, VideoParams

US = Fraction(1, 1_000_000)


def _video_encoder(v: VideoParams) -> av.CodecContext:
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = v.width, v.height, "yuv420p"
    enc.time_base = US
    enc.framerate = Fraction(v.fps)
    enc.bit_rate = v.bitrate
    enc.gop_size = v.gop_frames
    # repeat-headers: SPS/PPS before every keyframe, so every segment decodes alone.
    enc.options = {"preset": "ultrafast", "tune": "zerolatency",
                   "x264-params": (f"repeat-headers=1:keyint={v.gop_frames}:min-keyint={v.gop_frames}"
                                   f":scenecut=0:vbv-maxrate={v.bitrate // 1000}"
                                   f":vbv-bufsize={v.bitrate // 1000}")}
    enc.open()
    return enc


def _audio_encoder(a: AudioParams) -> av.CodecContext:
    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate, enc.layout, enc.format = a.sample_rate, "mono" if a.channels == 1 else "stereo", "fltp"
    enc.bit_rate = a.bitrate
    enc.time_base = Fraction(1, a.sample_rate)
    enc.open()
    return enc


class _Scene:
    """Draws frames into reused buffers (a fresh array per frame halves the frame rate)."""

    def __init__(self, v: VideoParams, seed: int, noise: int, scene: str = "shapes") -> None:
        self.w, self.h = v.width, v.height
        self.faces = None
        if scene == "faces":  # people walking past: real faces whose boxes are known (simulator/faces.py)
            from simulator.faces import FaceScene
            self.faces = FaceScene(v.width, v.height, seed=seed, fps=v.fps)
        elif scene != "shapes":
            raise ValueError(f"unknown scene {scene!r}: shapes or faces")
        rng = np.random.default_rng(seed)
        y = np.linspace(40, 160, self.h, dtype=np.float32)[:, None]
        x = np.linspace(0, 60, self.w, dtype=np.float32)[None, :]
        grad = y + x
        self.background = np.dstack([grad, np.full_like(grad, 90), 200 - grad]).astype(np.uint8)
        self.canvas = np.empty_like(self.background)
        self.noise = [rng.integers(0, noise + 1, self.background.shape, dtype=np.uint8)
                      for _ in range(8)] if noise else []
        self.colours = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(4)]
        self.phase = rng.uniform(0, 2 * np.pi, 4)
        self.scale = max(self.h / 720, 0.3)

    def draw(self, n: int, utc_us: int) -> np.ndarray:
        img = self.canvas
        np.copyto(img, self.background if self.faces is None else self.faces.draw(n)[0])
        if self.noise:
            cv2.add(img, self.noise[n % len(self.noise)], dst=img)
        t = n / 30
        for i, colour in enumerate(self.colours if self.faces is None else ()):
            cx = int(self.w / 2 + self.w / 3 * np.sin(t * (0.5 + i * 0.3) + self.phase[i]))
            cy = int(self.h / 2 + self.h / 3 * np.cos(t * (0.7 + i * 0.2) + self.phase[i]))
            size = int((30 + 15 * i) * self.scale)
            if i % 2:
                cv2.rectangle(img, (cx - size, cy - size), (cx + size, cy + size), colour, -1)
            else:
                cv2.circle(img, (cx, cy), size, colour, -1)
        stamp = dt.datetime.fromtimestamp(utc_us / 1e6, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        cv2.putText(img, f"{stamp} UTC  #{n:06d}", (int(10 * self.scale), int(40 * self.scale)),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.0 * self.scale, (255, 255, 255), max(1, int(2 * self.scale)))
        return cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420)


class SimCamera:
    """The ``sim`` camera backend. Options (``CameraConfig.options``): ``seed``, ``noise``
    (0–255), ``scene`` ("shapes", or "faces": people with real faces, simulator/faces.py)."""

    def __init__(self, config: CameraConfig, *, clock: Clock | None = None) -> None:
        self.video = config.video
        self.clock = clock or SystemClock()
        self._seed = int(config.options.get("seed", 0))
        self._scene = _Scene(self.video, self._seed, int(config.options.get("noise", 0)),
                             str(config.options.get("scene", "shapes")))
        self._venc = _video_encoder(self.video)
        self._aenc = _audio_encoder(config.audio) if config.audio else None
        self.audio = (AudioParams(**{**config.audio.__dict__, "extradata": bytes(self._aenc.extradata or b"")})
                      if config.audio and self._aenc else None)
        self._closed = False
        self.frames = 0

    def packets(self) -> Iterator[EncodedPacket]:
        v = self.video
        start = self.clock.monotonic_us()
        frame_us = 1_000_000 / v.fps
        audio_next = start
        tone_pos = 0
        while not self._closed:
            pts = start + round(self.frames * frame_us)
            self.clock.sleep_until_us(pts)
            yuv = self._scene.draw(self.frames, self.clock.utc_of(pts))
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts, frame.time_base = pts, US
            self.frames += 1
            for p in self._venc.encode(frame):
                yield EncodedPacket(bytes(p), p.pts, bool(p.is_keyframe), "video")
            if self.audio is not None:
                # Audio up to the end of this frame, a 1 kHz tone at -12 dBFS.
                while audio_next < pts + frame_us:
                    n = self._aenc.frame_size or 1024
                    t = (np.arange(n) + tone_pos) / self.audio.sample_rate
                    samples = (0.25 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)[None, :]
                    af = av.AudioFrame.from_ndarray(samples, format="fltp",
                                                    layout="mono" if self.audio.channels == 1 else "stereo")
                    af.sample_rate, af.pts = self.audio.sample_rate, tone_pos
                    tone_pos += n
                    audio_next = start + round(tone_pos * 1e6 / self.audio.sample_rate)
                    for p in self._aenc.encode(af):
                        apts = start + round(p.pts * 1e6 / self.audio.sample_rate)
                        yield EncodedPacket(bytes(p), apts, True, "audio")

    def close(self) -> None:
        self._closed = True
