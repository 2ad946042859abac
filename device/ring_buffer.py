"""Pre-record ring buffer of *encoded* packets, in RAM only.

While idle the camera keeps the last ``seconds`` of footage here, as whole GOPs
so that it always starts at a keyframe. On :meth:`PreRecordBuffer.activate` the
buffered packets go to the sink from the oldest keyframe, and from then on every
pushed packet goes straight through — the output never lags live video (unlike
picamera2's CircularOutput2, whose file trails by the buffer length).

Bounds: time — the buffer keeps the newest keyframe at or before ``newest - seconds``,
so a recording covers at least ``seconds`` before the press and less than one GOP
more; bytes — whole GOPs are dropped from the front while over ``max_bytes``
(a RAM safety cap, it wins over the time window). ``seconds == 0`` buffers nothing
and a recording starts at the next keyframe. Nothing here touches the disk.

>>> from device.camera import EncodedPacket
>>> buf = PreRecordBuffer(seconds=1, max_bytes=10_000)
>>> for i in range(90):  # 3 s at 30 fps, a keyframe every 30 frames
...     buf.push(EncodedPacket(b"x" * 10, pts_us=i * 33_333, keyframe=i % 30 == 0))
>>> out = []; buf.activate(out.append)  # packets handed over: two GOPs
60
>>> out[0].keyframe, (89 * 33_333 - out[0].pts_us) / 1e6 >= 1
(True, True)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from device.camera import EncodedPacket

Sink = Callable[[EncodedPacket], None]


@dataclass
class _Gop:
    start_pts_us: int
    packets: list[EncodedPacket] = field(default_factory=list)
    nbytes: int = 0


class PreRecordBuffer:
    def __init__(self, seconds: float, max_bytes: int, *, keep_audio: bool = False) -> None:
        if not 0 <= seconds <= 120:
            raise ValueError(f"pre-record seconds must be within 0–120, got {seconds}")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.window_us = int(seconds * 1_000_000)
        self.max_bytes = max_bytes
        self.keep_audio = keep_audio
        self._gops: deque[_Gop] = deque()
        self._bytes = 0
        self._sink: Sink | None = None
        self._newest_pts: int | None = None
        self._awaiting_keyframe = False  # live pass-through before its first keyframe
        self._frozen = False

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> bool:
        return self._sink is not None

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def packet_count(self) -> int:
        return sum(len(g.packets) for g in self._gops)

    @property
    def duration_us(self) -> int:
        """Span from the oldest buffered keyframe to the newest packet."""
        if not self._gops or self._newest_pts is None:
            return 0
        return self._newest_pts - self._gops[0].start_pts_us

    # ------------------------------------------------------------------ data
    def push(self, packet: EncodedPacket) -> None:
        if self._sink is not None:
            if self._awaiting_keyframe:
                if not (packet.kind == "video" and packet.keyframe):
                    return
                self._awaiting_keyframe = False
            self._sink(packet)
            return
        self._newest_pts = packet.pts_us
        if self.window_us == 0:
            return
        if packet.kind == "video" and packet.keyframe:
            self._gops.append(_Gop(packet.pts_us))
        elif not self._gops or (packet.kind == "audio" and not self.keep_audio):
            return  # no keyframe to anchor it yet, or audio not wanted in pre-record
        gop = self._gops[-1]
        gop.packets.append(packet)
        gop.nbytes += len(packet.data)
        self._bytes += len(packet.data)
        self._evict()

    def freeze(self) -> None:
        """Keep everything from now on (only the byte cap still evicts): called at an
        announced press, so the pre-record still covers the window before the *press*
        when the recording starts after the spoken cue."""
        self._frozen = True

    def _evict(self) -> None:
        horizon = (self._newest_pts or 0) - self.window_us
        while not self._frozen and len(self._gops) >= 2 and self._gops[1].start_pts_us <= horizon:
            self._bytes -= self._gops.popleft().nbytes
        while self._bytes > self.max_bytes and self._gops:
            self._bytes -= self._gops.popleft().nbytes

    def activate(self, sink: Sink) -> int:
        """Hand the buffer to ``sink`` and pass live packets through; return packets handed over."""
        if self._sink is not None:
            raise RuntimeError("buffer is already active")
        handed = 0
        while self._gops:
            gop = self._gops.popleft()
            for packet in gop.packets:
                sink(packet)
                handed += 1
        self._bytes = 0
        self._sink = sink
        self._frozen = False
        self._awaiting_keyframe = handed == 0
        return handed

    def deactivate(self) -> None:
        """Stop passing through; buffering restarts empty (recorded footage is never re-buffered)."""
        self._sink = None
        self.clear()

    def clear(self) -> None:
        """Discard every buffered packet (standby, dock)."""
        self._gops.clear()
        self._bytes = 0
        self._frozen = False
