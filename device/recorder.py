"""The data path in one place: camera packets → pre-record buffer → recording writer.

:class:`Recorder` owns the buffer and, while recording, the writer. It does not
decide *when* to record — the runtime's state machine (or a test) calls
:meth:`start` and :meth:`stop`.

>>> # camera → buffer → writer, in virtual time (see tests/test_pipeline.py):
>>> # rec = Recorder(store, identity, cam.video, cam.audio, clock, PreRecordBuffer(30, 64 << 20))
>>> # for p in cam.packets(): rec.on_packet(p)   # buffering
>>> # rec.start(announced=True); ...; segments = rec.stop()
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from common.clock import Clock
from device.camera import AudioParams, EncodedPacket, VideoParams
from device.identity import DeviceIdentity
from device.ring_buffer import PreRecordBuffer
from device.segment_store import SegmentStore
from device.segment_writer import RecordingInfo, RecordingWriter, WriterPolicy, WrittenSegment


class SegmentCloseError(OSError):
    """The last segment could not be finished (disk full or failing). ``segments`` are the
    ones that were committed; what reached the disk of the last one was sealed as
    interrupted (or will be at next boot, if even that failed)."""

    def __init__(self, segments: list[WrittenSegment], cause: OSError, sealed: bool) -> None:
        super().__init__(cause.errno, f"could not finish the last segment: {cause.strerror or cause}")
        self.segments, self.cause, self.sealed = segments, cause, sealed


class Recorder:
    def __init__(self, store: SegmentStore, identity: DeviceIdentity, video: VideoParams,
                 audio: AudioParams | None, clock: Clock, buffer: PreRecordBuffer,
                 policy: WriterPolicy = WriterPolicy(), guard: Callable[[], None] | None = None) -> None:
        """``guard`` runs before every packet is written (the runtime's red-LED interlock)."""
        self.store, self.identity, self.video, self.audio = store, identity, video, audio
        self.clock, self.buffer, self.policy, self.guard = clock, buffer, policy, guard
        self.writer: RecordingWriter | None = None
        self.info: RecordingInfo | None = None     # the recording under way
        self.clock_sync: dict[str, Any] | None = None  # set by the runtime when a dock sets the time
        self.last_pts_us: int | None = None

    @property
    def recording(self) -> bool:
        return self.writer is not None

    def on_packet(self, packet: EncodedPacket) -> None:
        self.last_pts_us = packet.pts_us
        self.buffer.push(packet)

    def start(self, *, announced: bool, press_pts_us: int | None = None) -> RecordingInfo:
        """Begin a recording; the pre-record buffer is written first, then made durable.

        An OSError while writing the buffer (disk full) is raised with the recording
        begun (:attr:`info` set): :meth:`stop` then seals what reached the disk."""
        if self.writer is not None:
            raise RuntimeError("already recording")
        press = press_pts_us if press_pts_us is not None else (
            self.last_pts_us if self.last_pts_us is not None else self.clock.monotonic_us())
        stamp = dt.datetime.fromtimestamp(self.clock.utc_of(press) / 1e6, dt.timezone.utc)
        info = RecordingInfo(
            recording_id=f"{self.identity.device_id}-{stamp:%Y%m%dT%H%M%S}Z-{self.store.head.seq + 1:08d}",
            announced=announced, pre_record_s=self.buffer.window_us / 1e6, press_pts_us=press,
            clock=self.clock_sync)
        self.info = info
        self.writer = RecordingWriter(self.store, self.identity, self.video, self.audio,
                                      self.clock, info, self.policy)
        with self.writer.handover():
            self.buffer.activate(self._write)
        return info

    def _write(self, packet: EncodedPacket) -> None:
        if self.guard is not None:
            self.guard()
        assert self.writer is not None
        self.writer.write(packet)

    def stop(self) -> list[WrittenSegment]:
        """End the recording; buffering restarts empty."""
        if self.writer is None:
            return []
        self.buffer.deactivate()
        writer, self.writer, self.info = self.writer, None, None
        try:
            return writer.close()
        except OSError as exc:
            try:
                sealed = bool(self.store.seal_interrupted())
            except OSError:
                sealed = False
            raise SegmentCloseError(writer.segments, exc, sealed) from exc
