"""A camera that replays pre-encoded packets in a loop, timestamps shifted each lap.

For long runs (benchmarks, soak tests) where encoding every frame would dominate:
the packets are real H.264 from :class:`simulator.camera.SimCamera`, encoded once.
Each packet is a fresh copy, as from a real encoder, so buffers hold distinct bytes.
"""

from __future__ import annotations

from typing import Iterator

from common.clock import Clock
from device.camera import EncodedPacket, VideoParams


class ReplayCamera:
    def __init__(self, packets: list[EncodedPacket], video: VideoParams, clock: Clock) -> None:
        if not packets or not packets[0].keyframe:
            raise ValueError("a replay clip must start with a keyframe")
        self.video, self.audio, self.clock = video, None, clock
        self._clip = packets
        self._lap_us = packets[-1].pts_us - packets[0].pts_us + round(1e6 / video.fps)
        self._closed = False

    @classmethod
    def record(cls, camera, seconds: float, clock: Clock) -> "ReplayCamera":
        """Take ``seconds`` of whole GOPs of video from another camera."""
        packets: list[EncodedPacket] = []
        for p in camera.packets():
            if p.kind != "video":
                continue
            if p.keyframe and packets and p.pts_us - packets[0].pts_us >= seconds * 1e6:
                break
            packets.append(p)
        camera.close()
        return cls(packets, camera.video, clock)

    @property
    def clip(self) -> list[EncodedPacket]:
        """The packets one lap replays (timestamps as recorded)."""
        return list(self._clip)

    def packets(self) -> Iterator[EncodedPacket]:
        start = self.clock.monotonic_us() - self._clip[0].pts_us
        lap = 0
        while not self._closed:
            for p in self._clip:
                pts = start + lap * self._lap_us + p.pts_us
                self.clock.sleep_until_us(pts)
                yield EncodedPacket(bytes(memoryview(p.data)), pts, p.keyframe, p.kind)
                if self._closed:
                    return
            lap += 1

    def close(self) -> None:
        self._closed = True


__all__ = ["ReplayCamera"]
