"""One recording → a chain of encrypted, signed segments.

Per segment: :class:`~device.muxer.TsMuxer` → :class:`~common.age_format.AgeStreamWriter`
→ file. A new segment starts at the first video keyframe at least
``segment_seconds`` after the current one began, so every segment opens with a
keyframe and the concatenation of a recording's segments plays without a gap.

Durability policy (CAST: everything up to a power cut must be recoverable):

* every complete 64 KiB age chunk is written to the OS as soon as it exists;
* a recording's first chunk is fsync'd at once (activation latency), the handed-over
  pre-record buffer once it is all written (:meth:`RecordingWriter.handover`);
* after that, at least once per ``sync_interval_s`` of footage the file is fsync'd;
* when the bitrate is so low that plaintext would sit in the unfinished chunk for
  longer than ``sync_interval_s``, MPEG-TS null packets (which every demuxer skips)
  fill the chunk so that it, too, can be written and fsync'd. Off with
  ``pad_to_sync=False``.

So a power cut loses about one second at most; the rest is recovered by
:func:`common.age_format.recover` after the store seals the segment at next boot.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from common.age_format import CHUNK_SIZE, AgeStreamWriter
from common.clock import Clock
from common.manifest import SegmentManifest
from device.camera import AudioParams, EncodedPacket, VideoParams
from device.identity import DeviceIdentity
from device.muxer import TS_PACKET_SIZE, TsMuxer
from device.segment_store import SegmentStore


@dataclass(frozen=True)
class RecordingInfo:
    recording_id: str
    announced: bool
    pre_record_s: float
    press_pts_us: int | None
    clock: dict[str, Any] | None = None   # the last dock time sync, carried by every manifest


@dataclass(frozen=True)
class WriterPolicy:
    segment_seconds: float = 10.0
    sync_interval_s: float = 1.0
    pad_to_sync: bool = True


@dataclass(frozen=True)
class WrittenSegment:
    seq: int
    path: Path
    manifest_path: Path
    manifest: SegmentManifest


class _OpenSegment:
    """The segment being written: file, age writer, muxer, running counters.

    Opening follows the store's crash rule: file and age header are fsync'd first, then
    the journal is written (which fsyncs the directory), and only then does the segment
    count. Anything that fails on the way removes the file again.
    """

    def __init__(self, store: SegmentStore, seq: int, recipients: list[bytes],
                 video: VideoParams, audio: AudioParams | None, journal: dict[str, Any]) -> None:
        self.seq = seq
        self.journal = journal
        self.path = store.segment_path(seq)
        self.sha = hashlib.sha256()
        self.file = open(self.path, "xb", buffering=0)  # unbuffered: chunks go straight to the OS
        try:
            self.age = AgeStreamWriter(self.file, recipients, on_ciphertext=self.sha.update)
            self.age.sync()
            store.begin(seq, journal)
        except BaseException:
            self.file.close()
            self.path.unlink(missing_ok=True)
            raise
        self.mux = TsMuxer(self.age, video, audio)
        self.first_pts = journal["first_pts_us"]
        self.last_video_pts: int | None = None
        self.frames = 0
        self.audio_packets = 0
        self.last_sync_pts = self.first_pts
        self.pending_since_pts = self.first_pts
        self.chunks_seen = 0

    def close(self) -> None:
        self.mux.close()
        self.age.close()  # final chunk + fsync
        self.file.close()

    def abandon(self) -> None:
        """After a failed write: stop touching the file (the store seals what is on disk)."""
        try:
            self.file.close()
        except OSError:
            pass


class RecordingWriter:
    """Sink for one recording's packets (``writer.write`` is a ring-buffer sink).

    Example (virtual: segments are written under ``store``)::

        writer = RecordingWriter(store, identity, video, None, clock, info, WriterPolicy())
        buffer.activate(writer.write)   # pre-record first, then live
        ...
        segments = writer.close()
    """

    def __init__(self, store: SegmentStore, identity: DeviceIdentity, video: VideoParams,
                 audio: AudioParams | None, clock: Clock, info: RecordingInfo,
                 policy: WriterPolicy = WriterPolicy()) -> None:
        self.store, self.identity, self.video, self.audio = store, identity, video, audio
        self.clock, self.info, self.policy = clock, info, policy
        self._recipients = identity.recipient_keys
        self._segment: _OpenSegment | None = None
        self._index = 0
        self.segments: list[WrittenSegment] = []
        self._frame_us = round(1_000_000 / video.fps)
        self._closed = False
        self._first_synced = False
        self._handing_over = False
        self.failed: OSError | None = None

    # ------------------------------------------------------------------ input
    def write(self, packet: EncodedPacket) -> None:
        """Mux one packet. An OSError (disk full or failing) is raised once and ends the
        recording: nothing more is written, and :meth:`close` leaves the segment for the
        store to seal over what reached the disk."""
        if self._closed:
            raise RuntimeError("recording already closed")
        if self.failed is not None:
            raise self.failed
        try:
            self._write(packet)
        except OSError as exc:
            self.failed = exc
            raise

    def _write(self, packet: EncodedPacket) -> None:
        seg = self._segment
        is_key = packet.kind == "video" and packet.keyframe
        if seg is None:
            if not is_key:
                return  # a segment must start with a keyframe
            seg = self._open(packet.pts_us)
        elif is_key and packet.pts_us - seg.first_pts >= self.policy.segment_seconds * 1e6:
            self._finish(seg, final=False)
            self._segment = None
            seg = self._open(packet.pts_us)
        seg.mux.mux(packet)
        if packet.kind == "video":
            seg.frames += 1
            seg.last_video_pts = packet.pts_us
        else:
            seg.audio_packets += 1
        self._keep_durable(seg, packet.pts_us)

    def _keep_durable(self, seg: _OpenSegment, pts_us: int) -> None:
        if seg.age.chunks_written != seg.chunks_seen:
            seg.chunks_seen = seg.age.chunks_written
            seg.pending_since_pts = pts_us
            if not self._first_synced:
                # The first footage of a recording is made durable at once, not a second later.
                self._first_synced = True
                seg.age.sync()
                seg.last_sync_pts = pts_us
                return
        if self._handing_over:
            return  # buffered footage arrives far faster than real time: one fsync at the end
        interval_us = self.policy.sync_interval_s * 1e6
        if pts_us - seg.last_sync_pts < interval_us:
            return
        if (self.policy.pad_to_sync and seg.age.buffered
                and pts_us - seg.pending_since_pts >= interval_us and seg.mux.at_packet_boundary):
            # Fill the chunk (one byte past it, so it is known not to be last).
            missing = CHUNK_SIZE - seg.age.buffered + 1
            seg.mux.write_null_packets(-(-missing // TS_PACKET_SIZE))
            seg.chunks_seen = seg.age.chunks_written
            seg.pending_since_pts = pts_us
        seg.age.sync()
        seg.last_sync_pts = pts_us

    def sync(self) -> None:
        """fsync now."""
        if self._segment is not None:
            self._segment.age.sync()

    @contextmanager
    def handover(self) -> Iterator[None]:
        """While the pre-record buffer is written in one burst: no per-second fsyncs (its
        timestamps are seconds apart but it arrives within milliseconds); the first chunk
        is still fsync'd at once, and everything at the end."""
        self._handing_over = True
        try:
            yield
        finally:
            self._handing_over = False
            self.sync()
            if self._segment is not None and self._segment.last_video_pts is not None:
                self._segment.last_sync_pts = self._segment.last_video_pts

    # ------------------------------------------------------------------ segments
    def _open(self, first_pts: int) -> _OpenSegment:
        ident, info = self.identity, self.info
        journal = {
            "device_id": ident.device_id, "device_key": ident.key_fingerprint,
            "officer_id": ident.officer_id, "recording_id": info.recording_id,
            "index": self._index, "start_utc_us": self.clock.utc_of(first_pts),
            "start_mono_us": first_pts, "first_pts_us": first_pts,
            "video": self.video.to_dict(),
            "audio": self.audio.to_dict() if self.audio else None,
            "announced": info.announced, "pre_record_s": info.pre_record_s,
            "press_pts_us": info.press_pts_us, "recipients": list(ident.recipients), "clock": info.clock,
        }
        seq = self.store.reserve_seq()
        self._segment = _OpenSegment(self.store, seq, self._recipients, self.video, self.audio, journal)
        self._index += 1
        return self._segment

    def _finish(self, seg: _OpenSegment, final: bool) -> None:
        seg.close()
        last = seg.last_video_pts if seg.last_video_pts is not None else seg.first_pts
        end_mono = last + self._frame_us
        manifest = SegmentManifest(
            **seg.journal, seq=seg.seq, file=seg.path.name, size=seg.age.ciphertext_bytes,
            sha256=seg.sha.digest(), complete=True, final=final,
            end_utc_us=self.clock.utc_of(end_mono), end_mono_us=end_mono,
            last_pts_us=seg.last_video_pts, frames=seg.frames, audio_packets=seg.audio_packets,
            prev=self.store.head.prev)
        path = self.store.commit(manifest)
        self.segments.append(WrittenSegment(seg.seq, seg.path, path, manifest))

    def close(self) -> list[WrittenSegment]:
        """Finish the last segment (marked ``final``) and return all segments written.

        After a failed write, or if finishing fails, the segment is abandoned and the
        OSError raised: its journal stays, so :meth:`SegmentStore.seal_interrupted` signs
        what reached the disk."""
        if not self._closed:
            self._closed = True
            seg, self._segment = self._segment, None
            if seg is not None:
                if self.failed is not None:
                    seg.abandon()
                    raise self.failed
                try:
                    self._finish(seg, final=True)
                except OSError as exc:
                    seg.abandon()
                    self.failed = exc
                    raise
        return self.segments
