"""MPEG-TS muxing of encoded packets, in-process with PyAV (libavformat).

Why MPEG-TS: a truncated TS still decodes up to the cut (a plain MP4 without its
index does not open at all), TS files concatenate into one playable stream (HLS
does exactly this), and it is an open ISO standard every player reads.

Each segment gets its own muxer (PAT/PMT at its start, so it plays alone); the
pts are the camera's absolute timestamps, so concatenated segments are continuous.
``flush_packets`` makes libavformat hand every muxed packet to the sink at once,
so output never waits in a muxer buffer.
"""

from __future__ import annotations

from fractions import Fraction
from contextlib import contextmanager
from typing import Iterator, Protocol

import av

from device.camera import AudioParams, EncodedPacket, VideoParams

TS_PACKET_SIZE = 188
US = Fraction(1, 1_000_000)
# A null packet (PID 0x1FFF): every demuxer skips it. Used to fill an age chunk so
# it can be made durable at low bitrates (see segment_writer).
NULL_TS_PACKET = b"\x47\x1f\xff\x10" + b"\xff" * (TS_PACKET_SIZE - 4)


class Writable(Protocol):
    def write(self, data: bytes) -> int: ...


class _CountingSink:
    """The file object PyAV writes into; counts bytes so callers know TS packet boundaries."""

    def __init__(self, sink: Writable) -> None:
        self._sink = sink
        self.nbytes = 0
        self.error: OSError | None = None   # what the sink raised, for TsMuxer to re-raise

    def write(self, data: bytes) -> int:
        try:
            self._sink.write(data)
        except OSError as exc:
            self.error = exc
            raise
        self.nbytes += len(data)
        return len(data)


class TsMuxer:
    """Mux :class:`EncodedPacket` s to MPEG-TS onto ``sink`` (anything with ``write``).

    >>> import io
    >>> out = io.BytesIO()
    >>> mux = TsMuxer(out, VideoParams(width=64, height=64))
    >>> mux.mux(EncodedPacket(b"\\x00\\x00\\x00\\x01\\x09\\xf0", pts_us=0, keyframe=True))
    >>> mux.close(); out.getvalue()[:1], mux.at_packet_boundary
    (b'G', True)
    """

    def __init__(self, sink: Writable, video: VideoParams, audio: AudioParams | None = None) -> None:
        self._out = _CountingSink(sink)
        self._container = av.open(self._out, mode="w", format="mpegts",
                                  options={"flush_packets": "1"})
        self._video = self._container.add_stream(video.codec, rate=video.fps)
        self._video.width, self._video.height = video.width, video.height
        self._audio = None
        if audio is not None:
            self._audio = self._container.add_stream(audio.codec, rate=audio.sample_rate)
            self._audio.codec_context.layout = "mono" if audio.channels == 1 else "stereo"
            if audio.extradata:
                self._audio.codec_context.extradata = audio.extradata
        self._closed = False

    @property
    def bytes_out(self) -> int:
        return self._out.nbytes

    @property
    def at_packet_boundary(self) -> bool:
        return self._out.nbytes % TS_PACKET_SIZE == 0

    def mux(self, packet: EncodedPacket) -> None:
        stream = self._video if packet.kind == "video" else self._audio
        if stream is None:
            return  # audio offered but this recording has no audio track
        pkt = av.Packet(packet.data)
        pkt.pts = pkt.dts = packet.pts_us  # no B-frames: decode order is presentation order
        pkt.time_base = US
        pkt.is_keyframe = packet.keyframe
        pkt.stream = stream
        with self._sink_errors():
            self._container.mux(pkt)

    @contextmanager
    def _sink_errors(self) -> Iterator[None]:
        """libavformat reports a failed write as its own error (or wraps ours): surface the
        sink's OSError itself (e.g. ENOSPC), so callers handle one kind of storage error."""
        try:
            yield
        except Exception as exc:
            if self._out.error is not None and exc is not self._out.error:
                raise self._out.error from exc
            raise

    def write_null_packets(self, count: int) -> None:
        if not self.at_packet_boundary:
            raise RuntimeError("null packets may only go between TS packets")
        self._out.write(NULL_TS_PACKET * count)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with self._sink_errors():
                self._container.close()
