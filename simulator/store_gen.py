"""Evidence stores of any size, written through the project's own write paths: for the
scale benchmark and the index's tests, where cameras and serial links would take days.

Every object is what the real system writes: manifests signed by each device's key and
hash-chained per device, footage encrypted to the office's recipient (a small payload,
or real MPEG-TS for playback), segments stored with :meth:`EvidenceStore.put_segment`
(the dock's call), one ``ingest`` record per docking signed by the dock, a custody
receipt per segment, the device's signed event log (state changes, announcement,
markers), holds and views by the office through :class:`evidence.office.Office`.

>>> import tempfile
>>> from pathlib import Path
>>> from evidence.store import FsEvidenceStore
>>> w = StoreWriter(FsEvidenceStore(Path(tempfile.mkdtemp())), seed=1)
>>> rids = w.docking("cam-01", [Take(start_utc_us=1_800_000_000_000_000, segments=2)])
>>> len(rids), w.store.segments("cam-01")
(1, [1, 2])
"""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from common import keys, link_auth, signed
from common.age_format import AgeStreamWriter
from common.manifest import SegmentManifest, segment_file_name
from evidence import audit
from evidence.store import EvidenceStore

FPS = 15
TS_PACKET = 188


@dataclass
class Take:
    """One recording to write: when, how many segments of how long, by whom."""
    start_utc_us: int
    segments: int = 4
    segment_s: float = 10.0
    announced: bool = True
    markers: int = 0
    officer: str | None = None
    footage: Callable[[int, int], bytes] | None = None   # (index, first pts µs) → plaintext; else a payload


@dataclass
class _Device:
    id: str
    key: Ed25519PrivateKey
    seq: int = 0
    prev: bytes | None = None
    event_seq: int = 0
    event_prev: bytes | None = None
    mono_us: int = 1_000_000
    keys_registered: bool = False

    @property
    def fp(self) -> str:
        return keys.fingerprint(self.key.public_key())


@dataclass
class StoreWriter:
    store: EvidenceStore
    seed: int = 0
    dock_id: str = "dock-1"
    payload: int = 0                       # bytes of random TS-shaped plaintext per segment; 0: a tiny real
                                           # H.264 picture (what a poster frame can be made of)
    workers: int = 8
    identity: bytes = field(default_factory=lambda: X25519PrivateKey.generate().private_bytes_raw())
    dock_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    now_us: Callable[[], int] | None = None

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.recipient = X25519PrivateKey.from_private_bytes(self.identity).public_key().public_bytes_raw()
        self.devices: dict[str, _Device] = {}
        self.staging = Path(tempfile.mkdtemp(prefix="store-gen-"))
        self._pool = ThreadPoolExecutor(self.workers)
        self._tiny = TsFootage(0.2, width=160, height=96) if not self.payload else None

    def close(self) -> None:
        self._pool.shutdown()

    def device(self, device_id: str) -> _Device:
        return self.devices.setdefault(device_id, _Device(device_id, Ed25519PrivateKey.generate()))

    def _encrypt(self, plaintext: bytes) -> bytes:
        out = io.BytesIO()
        w = AgeStreamWriter(out, [self.recipient], fsync=False)
        w.write(plaintext)
        w.close()
        return out.getvalue()

    def _payload(self, first_pts_us: int) -> bytes:
        if self._tiny is not None:
            return self._tiny(0, first_pts_us)
        # MPEG-TS-shaped bytes (sync byte every 188): what a segment's plaintext looks like to a
        # byte counter, for tests that never decode it.
        n = max(1, self.payload // TS_PACKET)
        return b"".join(b"\x47" + os.urandom(TS_PACKET - 1) for _ in range(n))

    def _event(self, dev: _Device, utc0: int, kind: str, utc_us: int, state: str, **data: object) -> bytes:
        dev.event_seq += 1
        body = {"v": 1, "type": "event", "device_id": dev.id, "device_key": dev.fp, "seq": dev.event_seq,
                "utc_us": utc_us, "mono_us": dev.mono_us + (utc_us - utc0), "kind": kind, "state": state,
                "data": data, "prev": dev.event_prev}
        record = signed.sign(body, dev.key, bytes.fromhex(dev.fp))
        dev.event_prev = signed.digest(record)
        return record

    def docking(self, device_id: str, takes: list[Take], *, at_us: int | None = None) -> list[str]:
        """One docking of ``device_id`` holding ``takes``: stored, recorded, receipted. Dockings
        of different devices may run in parallel threads."""
        dev = self.device(device_id)
        utc0 = takes[0].start_utc_us if takes else 0
        jobs, rids, events = [], [], []
        for take in takes:
            stamp = dt.datetime.fromtimestamp(take.start_utc_us / 1e6, dt.timezone.utc)
            rid = f"{dev.id}-{stamp:%Y%m%dT%H%M%S}Z-{dev.seq + 1:08d}"
            rids.append(rid)
            mono = dev.mono_us + (take.start_utc_us - utc0)
            events.append(self._event(dev, utc0, "announcement" if take.announced else "gesture_double",
                                      take.start_utc_us, "ANNOUNCING" if take.announced else "READY",
                                      cue="voice", text="Achtung, Videoaufzeichnung"))
            events.append(self._event(dev, utc0, "state", take.start_utc_us, "RECORDING", previous="READY",
                                      recording_id=rid, announced=take.announced))
            seg_us = int(take.segment_s * 1_000_000)
            for i in range(take.segments):
                dev.seq += 1
                start = take.start_utc_us + i * seg_us
                plaintext = take.footage(i, mono + i * seg_us) if take.footage else self._payload(mono + i * seg_us)
                data = self._encrypt(plaintext)
                m = SegmentManifest(
                    device_id=dev.id, device_key=dev.fp, officer_id=take.officer, recording_id=rid, seq=dev.seq,
                    index=i, file=segment_file_name(dev.seq), size=len(data),
                    sha256=signed.digest(data), complete=True, final=i == take.segments - 1,
                    start_utc_us=start, end_utc_us=start + seg_us, start_mono_us=mono + i * seg_us,
                    end_mono_us=mono + (i + 1) * seg_us, first_pts_us=mono + i * seg_us,
                    last_pts_us=mono + (i + 1) * seg_us - 1_000_000 // FPS, frames=int(take.segment_s * FPS),
                    audio_packets=None, video={"codec": "h264", "width": 320, "height": 240, "fps": FPS,
                                               "bitrate": 400_000, "gop_frames": FPS},
                    audio=None, announced=take.announced, pre_record_s=30.0, press_pts_us=mono,
                    recipients=[keys.format_recipient(self.recipient)], prev=dev.prev,
                    clock={"offset_us": self.rng.randint(-2000, 2000), "synced_utc_us": take.start_utc_us - 3_600_000_000,
                           "dock_id": self.dock_id})
                record = m.sign(dev.key)
                dev.prev = signed.digest(record)
                jobs.append((m, record, data))
            for n in range(take.markers):
                events.append(self._event(dev, utc0, "marker", take.start_utc_us + (n + 1) * seg_us // 2, "RECORDING",
                                          recording_id=rid, n=n + 1))
            end = take.start_utc_us + take.segments * seg_us
            events.append(self._event(dev, utc0, "recording_stop", end, "READY", recording_id=rid, reason="hold",
                                      segments=[j[0].seq for j in jobs if j[0].recording_id == rid]))
        dev.mono_us += (max((t.start_utc_us + t.segments * int(t.segment_s * 1e6) for t in takes), default=utc0)
                        - utc0) + 3_600_000_000

        def put(job: tuple[SegmentManifest, bytes, bytes]) -> str:
            m, record, data = job
            part = self.staging / f"{dev.id}-{m.seq}.part"
            part.write_bytes(data)
            return self.store.put_segment(dev.id, m.seq, record, part)
        locations = list(self._pool.map(put, jobs))
        if not dev.keys_registered:
            self.store.register_key("device", dev.id, dev.key.public_key())
            self.store.register_key("dock", self.dock_id, self.dock_key.public_key())
            dev.keys_registered = True
        now = at_us if at_us is not None else (self.now_us() if self.now_us else
                                               max(j[0].end_utc_us or 0 for j in jobs) + 600_000_000)
        audit.append(self.store, self.dock_key, "ingest", device=dev.id, now_us=now, details={
            "dock": self.dock_id, "segments": [m.seq for m, _, _ in jobs], "stored_now": [m.seq for m, _, _ in jobs],
            "recordings": sorted(set(rids)), "bytes": sum(len(d) for _, _, d in jobs)})
        session = os.urandom(16)

        def receipt(args: tuple[tuple[SegmentManifest, bytes, bytes], str]) -> None:
            (m, _, _), location = args
            r = link_auth.sign_command(self.dock_key, self.dock_id, session, "receipt", device_id=dev.id,
                                       kind="segment", seq=m.seq, file=m.file, sha256=m.sha256, size=m.size,
                                       location=location, stored_utc_us=now)
            self.store.put_receipt(dev.id, f"segment-{m.seq:08d}-{r[-8:].hex()}", r)
        list(self._pool.map(receipt, zip(jobs, locations)))
        if events:
            first = signed.open_signed(events[0], None)["seq"]
            self.store.put_events(dev.id, first, first + len(events) - 1, b"".join(events))
        return rids


class TsFootage:
    """Real H.264 in MPEG-TS for a long recording: a clip of one segment's length, encoded
    once by the simulated camera, muxed again for each segment on that segment's clock
    (so a player sees one continuous recording). ``footage(index, first_pts_us)``."""

    def __init__(self, segment_s: float = 10.0, width: int = 320, height: int = 240, fps: int = FPS) -> None:
        from common.clock import VirtualClock
        from device.camera import CameraConfig, VideoParams
        from simulator.camera import SimCamera
        self.video = VideoParams(width=width, height=height, fps=fps, bitrate=250_000, gop_frames=fps)
        cam = SimCamera(CameraConfig("sim", self.video, None, {"seed": 3, "noise": 6}), clock=VirtualClock())
        self.clip = []
        for p in cam.packets():
            if p.pts_us >= segment_s * 1_000_000:
                break
            self.clip.append(p)
        self.t0 = self.clip[0].pts_us

    def __call__(self, index: int, first_pts_us: int) -> bytes:
        from device.camera import EncodedPacket
        from device.muxer import TsMuxer
        out = io.BytesIO()
        mux = TsMuxer(out, self.video)
        for p in self.clip:
            mux.mux(EncodedPacket(p.data, first_pts_us + p.pts_us - self.t0, p.keyframe))
        mux.close()
        return out.getvalue()
