"""Pictures for the console: poster frames and playback as segments.

**Playback** is HLS over the recording's own segments: the playlist lists them with
their durations from the manifests; the player (hls.js, vendored in ``static/vendor``)
asks for the segment it shows, and only that one is fetched from the store, checked
against its manifest's SHA-256 and decrypted — the camera's MPEG-TS, not re-encoded.
The first frame waits for one segment, whatever the recording's length, and a seek for
the segment at that time.

**One set of tracks from the first segment to the last.** A recording's pre-record is
often silent (``pre_record_audio = false``): its segments carry no sound, and the sound
begins at the press, mid-recording. A player that builds its buffers from the first
segment (hls.js: one SourceBuffer per track it saw) then meets a track it has no buffer
for and stops for good — exactly where the incident begins. So every segment of a
recording with sound is served with sound from its first picture to its last: where the
camera recorded none, :func:`continuous_audio` adds silence (AAC, the recording's own
rate and channels), and the camera's sound is kept as recorded. A segment whose sound
already spans its pictures is served byte for byte as decrypted. Decrypted segments stay in memory only, in a bounded LRU
(bytes and age), each made once however many requests ask for it at the same time
(a lock per segment, no lock across a recording). Deleting a recording drops them.

**Poster frames**: the first keyframe of the first segment, decoded from the first
chunks of its decryption, scaled to 320 px (the list) or 1280 px (the player; never
larger than the picture) and stored as JPEG in the index's ``posters/`` (0600) — made
once, removed with the recording's footage, and never sent to a role that may not see
pictures (the data-protection officer).

**A frame at any time** (``frame.jpg?t=``, for drawing areas to mask): the segment that
holds it, from the same cache as playback, decoded to that picture, JPEG at full size.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
import time
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from flask import Blueprint, Response, abort, request, session, url_for

from common import age_format
from evidence.console import ROLES_REVIEW, ctx, login_required

bp = Blueprint("media", __name__)
POSTER_WIDTHS = (320, 1280)
POSTER_PREFIX = 256 * 1024          # ciphertext bytes decrypted to find the first frame
TTL_S = 600.0
AUDIO_GAP_S = 0.1                   # silence added where the sound leaves more than this uncovered


class Media:
    def __init__(self, console: Any, max_bytes: int, ttl_s: float = TTL_S) -> None:
        self.c = console
        self.max_bytes, self.ttl_s = max_bytes, ttl_s
        self._lru: OrderedDict[tuple[str, int], tuple[float, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._making: dict[Any, threading.Lock] = {}
        self._audio: OrderedDict[str, tuple[int, int] | None] = OrderedDict()   # recording → (rate, channels)

    def _key_lock(self, key: Any) -> threading.Lock:
        with self._lock:
            return self._making.setdefault(key, threading.Lock())

    def _get(self, key: tuple[str, int]) -> bytes | None:
        with self._lock:
            hit = self._lru.get(key)
            if hit is None:
                return None
            if time.monotonic() - hit[0] > self.ttl_s:
                self._drop(key)
                return None
            self._lru.move_to_end(key)
            return hit[1]

    def _drop(self, key: tuple[str, int]) -> None:
        _, data = self._lru.pop(key)
        self._size -= len(data)

    def _put(self, key: tuple[str, int], data: bytes) -> None:
        with self._lock:
            if key in self._lru:
                self._drop(key)
            self._lru[key] = (time.monotonic(), data)
            self._size += len(data)
            while self._size > self.max_bytes and len(self._lru) > 1:
                self._drop(next(iter(self._lru)))
            now = time.monotonic()
            while self._lru and now - next(iter(self._lru.values()))[0] > self.ttl_s:
                self._drop(next(iter(self._lru)))

    @property
    def cached_bytes(self) -> int:
        return self._size

    def forget(self, rid: str) -> None:
        """Drop everything decrypted of ``rid`` (it was deleted)."""
        with self._lock:
            for key in [k for k in self._lru if k[0] == rid]:
                self._drop(key)
            self._making = {k: v for k, v in self._making.items() if not (isinstance(k, tuple) and k[0] == rid)}
            self._audio.pop(rid, None)
        _remove_poster(self.poster_path(rid))

    def segment(self, rid: str, seq: int) -> bytes:
        """The decrypted MPEG-TS of one segment (404 if it is not in the store as recorded)."""
        key = (rid, seq)
        data = self._get(key)
        if data is not None:
            return data
        with self._key_lock(key):
            data = self._get(key)
            if data is None:
                data = _decrypt(self.c, rid, seq, None)
                sound = self.audio_of(rid)
                if sound is not None:
                    data = continuous_audio(data, *sound)
                self._put(key, data)
        with self._lock:
            self._making.pop(key, None)
        return data

    def audio_of(self, rid: str) -> tuple[int, int] | None:
        """(sample rate, channels) of the recording's sound, None if it has none (from its
        manifests; remembered for the last 256 recordings)."""
        with self._lock:
            if rid in self._audio:
                return self._audio[rid]
        rec = self.c.index.recording(rid)
        found = next((s.manifest.audio for s in (rec.segments if rec else []) if s.manifest.audio), None)
        sound = None
        if found and found.get("codec") == "aac" and found.get("sample_rate") and found.get("channels") in (1, 2):
            sound = (int(found["sample_rate"]), int(found["channels"]))
        with self._lock:
            self._audio[rid] = sound
            while len(self._audio) > 256:
                self._audio.popitem(last=False)
        return sound

    def poster_path(self, rid: str, width: int = POSTER_WIDTHS[0]) -> Path:
        return self.c.index.poster_dir() / hashlib.sha256(rid.encode()).hexdigest()[:32] / f"poster-{width}.jpg"

    def poster(self, rid: str, width: int = POSTER_WIDTHS[0]) -> Path:
        path = self.poster_path(rid, width)
        if path.exists():
            return path
        with self._key_lock(("poster", rid)):
            if not path.exists():
                first = self.c.index.conn().execute(
                    "SELECT seq FROM segments WHERE recording = ? AND footage = 1 ORDER BY idx, seq LIMIT 1",
                    (rid,)).fetchone()
                if first is None:
                    abort(404)
                jpeg = _frame_at(_decrypt(self.c, rid, first[0], POSTER_PREFIX), 0.0, width)
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                tmp = path.with_name(f".{os.getpid()}.{threading.get_ident()}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(jpeg)
                os.replace(tmp, path)
        with self._lock:
            self._making.pop(("poster", rid), None)
        return path


def _remove_poster(path: Path) -> None:
    for p in path.parent.glob("*.jpg") if path.parent.is_dir() else []:
        p.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


def _decrypt(c: Any, rid: str, seq: int, prefix: int | None) -> bytes:
    seg = c.index.conn().execute("SELECT device, sha256 FROM segments WHERE recording = ? AND seq = ?",
                                 (rid, seq)).fetchone()
    if seg is None:
        abort(404)
    try:
        data = c.store.footage(seg[0], seq)
    except FileNotFoundError:
        abort(404)
    if hashlib.sha256(data).digest() != bytes(seg[1]):
        abort(404)  # altered footage is never shown as if it were the recording; verify names it
    try:
        return age_format.recover(data if prefix is None else data[:prefix], c.identity).plaintext
    except age_format.AgeError:
        abort(404)


def continuous_audio(ts: bytes, sample_rate: int, channels: int) -> bytes:
    """The MPEG-TS ``ts`` with sound from its first picture to its last: silence (AAC at
    ``sample_rate``, ``channels``) where it has none, its own sound kept. The pictures are
    copied packet for packet with their timestamps, so segments still join without a seam;
    a segment whose sound already covers its pictures comes back unchanged.

    >>> import io, av
    >>> ts = _sample_ts(seconds=1.0)            # pictures only, as a silent pre-record
    >>> out = continuous_audio(ts, 48000, 1)
    >>> with av.open(io.BytesIO(out), format="mpegts") as c:
    ...     a = c.streams.audio[0]
    ...     packets = [p for p in c.demux(a) if p.size]
    >>> a.sample_rate, len(packets) > 40, continuous_audio(out, 48000, 1) == out
    (48000, True, True)
    """
    try:
        with av.open(io.BytesIO(ts), format="mpegts") as inp:
            if not inp.streams.video:
                return ts
            v = inp.streams.video[0]
            a = inp.streams.audio[0] if inp.streams.audio else None
            pictures: list[av.Packet] = []
            sound: list[av.AudioFrame] = []
            v0 = v1 = a0 = a1 = None
            for pkt in inp.demux(*([v, a] if a is not None else [v])):
                if pkt.stream is v:
                    if pkt.pts is None:
                        continue
                    pictures.append(pkt)
                    t = float(pkt.pts * pkt.time_base)
                    v0 = t if v0 is None else min(v0, t)
                    v1 = max(v1 or t, t + float((pkt.duration or 0) * pkt.time_base))
                else:
                    for f in pkt.decode():
                        if f.time is None:
                            continue
                        sound.append(f)
                        a0 = f.time if a0 is None else min(a0, f.time)
                        a1 = max(a1 or f.time, f.time + f.samples / f.sample_rate)
            if v0 is None or (a0 is not None and a0 - v0 <= AUDIO_GAP_S and v1 - a1 <= AUDIO_GAP_S):
                return ts                                    # nothing to fill
            out_buf = io.BytesIO()
            with av.open(out_buf, "w", format="mpegts") as out:
                ov = out.add_stream_from_template(v)
                oa = out.add_stream("aac", rate=sample_rate)
                oa.layout = "mono" if channels == 1 else "stereo"
                oa.codec_context.time_base = Fraction(1, sample_rate)
                for pkt in pictures:
                    pkt.stream = ov
                    out.mux(pkt)
                frames = [*_silence(v0, a0 if a0 is not None else v1, sample_rate, oa.layout.name)]
                for f in sound:
                    if f.sample_rate != sample_rate:
                        continue      # not the recording's sound: silence stands in (never happens on a camera)
                    f.pts, f.time_base = int(round(f.time * sample_rate)), Fraction(1, sample_rate)
                    frames.append(f)
                frames += _silence(a1 if a1 is not None else v1, v1, sample_rate, oa.layout.name)
                for f in frames:
                    for p in oa.encode(f):
                        out.mux(p)
                for p in oa.encode():
                    out.mux(p)
            return out_buf.getvalue()
    except av.error.FFmpegError:
        return ts     # a segment PyAV cannot read is served as it is (verify names it)


def _silence(t0: float, t1: float, rate: int, layout: str) -> list[av.AudioFrame]:
    """AAC-sized frames of silence from ``t0`` to ``t1`` seconds (presentation time)."""
    frames, n, end = [], int(round(t0 * rate)), int(round(t1 * rate))
    channels = 1 if layout == "mono" else 2
    while n < end:
        k = min(1024, end - n)
        f = av.AudioFrame.from_ndarray(np.zeros((channels, k), np.float32), format="fltp", layout=layout)
        f.sample_rate, f.pts, f.time_base = rate, n, Fraction(1, rate)
        frames.append(f)
        n += k
    return frames


def _sample_ts(seconds: float) -> bytes:
    """A small MPEG-TS with pictures only (for the doctest)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * 30)):
            f = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def _jpeg(frame: av.VideoFrame, width: int) -> bytes:
    """``frame`` as a JPEG at most ``width`` wide (never enlarged), its aspect kept."""
    width = min(width, frame.width) // 2 * 2
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuvj420p"
    enc.time_base = Fraction(1, 25)
    enc.qmin, enc.qmax = 2, 5       # sharp: a poster is looked at closely
    small = frame.reformat(width=width, height=height, format="yuvj420p", interpolation="AREA")
    return b"".join(bytes(p) for p in [*enc.encode(small), *enc.encode(None)])


def _frame_at(ts: bytes, offset_s: float, width: int | None = None) -> bytes:
    """The picture ``offset_s`` seconds into a segment (0: its first, the poster), JPEG at
    most ``width`` wide (default: full size); 404 if it has none."""
    try:
        with av.open(io.BytesIO(ts), format="mpegts") as container:
            stream = next((s for s in container.streams if s.type == "video"), None)
            if stream is None:
                abort(404)
            picked, t0 = None, None
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                t0 = frame.time if t0 is None else t0
                picked = frame
                if frame.time - t0 >= offset_s - 1e-3:
                    break
    except av.error.FFmpegError:
        abort(404)
    if picked is None:
        abort(404)
    return _jpeg(picked, width or picked.width)


def _visible(rid: str) -> dict[str, Any]:
    """The recording's row if this user may see its pictures and it is not deleted."""
    row = ctx().row(rid)
    if row["deleted"]:
        abort(404)
    return row


def _segments(rid: str) -> list[tuple[int, float, float]]:
    """(seq, offset from the start, duration) of each segment with footage, in playing order:
    the playlist's timeline."""
    out, at = [], 0.0
    for seq, start, end, footage in ctx().index.conn().execute(
            "SELECT seq, start_mono_us, end_mono_us, footage FROM segments WHERE recording = ? ORDER BY idx, seq",
            (rid,)):
        if footage:
            seconds = max(0.001, ((end or start) - start) / 1e6)
            out.append((seq, at, seconds))
            at += seconds
    return out


def _seen(row: dict[str, Any]) -> None:
    """Pictures of ``row`` were sent: a ``view`` {playback} on record, once per session."""
    seen = session.get("seen", [])
    if row["id"] not in seen:
        ctx().record("view", row, what="playback")
        session["seen"] = [*seen[-30:], row["id"]]  # the session cookie must stay small


@bp.get("/recordings/<rid>/frame.jpg")
@login_required("clerk")
def frame(rid: str) -> Any:
    """The picture at ``t`` seconds (to draw areas to mask on)."""
    row = _visible(rid)
    try:
        t = float(request.args.get("t", "0").replace(",", "."))
    except ValueError:
        abort(400)
    if not math.isfinite(t):
        abort(400)
    segments = _segments(row["id"])
    if not segments:
        abort(404)
    seq, at, _ = next((s for s in reversed(segments) if s[1] <= max(0.0, t)), segments[0])
    jpeg = _frame_at(ctx().media.segment(row["id"], seq), max(0.0, t) - at)
    _seen(row)
    return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "private, no-store"})


@bp.get("/recordings/<rid>/poster.jpg")
@login_required(*ROLES_REVIEW)
def poster(rid: str) -> Any:
    width = request.args.get("w", type=int) or POSTER_WIDTHS[0]
    if width not in POSTER_WIDTHS:
        abort(404)
    path = ctx().media.poster(_visible(rid)["id"], width)
    resp = Response(path.read_bytes(), mimetype="image/jpeg")
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


@bp.get("/recordings/<rid>/hls/index.m3u8")
@login_required(*ROLES_REVIEW)
def playlist(rid: str) -> Any:
    rid = _visible(rid)["id"]
    lines, durations, gap = [], [], False
    for seq, start, end, footage in ctx().index.conn().execute(
            "SELECT seq, start_mono_us, end_mono_us, footage FROM segments WHERE recording = ? ORDER BY idx, seq",
            (rid,)):
        if not footage:
            gap = True
            continue
        seconds = max(0.001, ((end or start) - start) / 1e6)
        durations.append(seconds)
        if gap and lines:
            lines.append("#EXT-X-DISCONTINUITY")
        gap = False
        lines += [f"#EXTINF:{seconds:.3f},", url_for("media.segment", rid=rid, seq=seq)]
    if not durations:
        abort(404)
    body = "\n".join(["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{math.ceil(max(durations))}",
                      "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD", *lines, "#EXT-X-ENDLIST", ""])
    return Response(body, mimetype="application/vnd.apple.mpegurl")


@bp.get("/recordings/<rid>/hls/<int:seq>.ts")
@login_required(*ROLES_REVIEW)
def segment(rid: str, seq: int) -> Any:
    c = ctx()
    row = _visible(rid)
    if seq > 2**53:  # no segment number is that large (and SQLite's integers end at 2**63)
        abort(404)
    data = c.media.segment(row["id"], seq)
    _seen(row)
    resp = Response(data, mimetype="video/mp2t")
    resp.headers["Cache-Control"] = "private, no-store"
    return resp
