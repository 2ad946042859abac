"""Decode, mask, mute, encode: the two passes over an exported recording.

1. :func:`analyse` decodes every frame, runs the detector on every ``every``-th one (scaled
   to ``width``), follows the manual boxes, and returns the :class:`Plan`: the boxes to
   mask on every frame, kept as data so the console can draw them on any frame (preview)
   and the report can name them.
2. :func:`render` decodes again, masks each frame by the plan (a solid fill, or a
   pixelation of at most 6 blocks across a face: both leave nothing to de-blur), mutes or
   bleeps the audio in the chosen ranges, and encodes H.264 + AAC into an MP4 that is
   marked as redacted in its metadata.

Decoding twice costs less than keeping frames: the detector's look-ahead (``track.py``)
would otherwise hold ``every × BRIDGE`` decoded frames in memory, and the plan would not
exist before the output.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

import av
import cv2
import numpy as np

from evidence.redaction import follow, track
from evidence.redaction.detect import Detector
from evidence.redaction.track import Box, Ignore, ManualBox

STYLES = ("fill", "pixelate")
SHAPES = ("box", "ellipse")
PIXEL_BLOCKS = 6            # at most this many blocks across a masked face: nothing left to de-blur
BLEEP_HZ = 1000.0
EDGE_HOLD_S = 1.0           # a face that leaves (or enters) at the border stays masked this much longer
FOLLOWED_MARGIN = 1.3       # a followed box is less sure than a detected one: its margin grows this much more
REACH_S = 1.5               # a face is followed this far before its first and after its last sighting


@dataclass(frozen=True)
class AudioRange:
    start_s: float
    end_s: float
    mode: str = "mute"      # "mute" (silence) or "bleep" (a 1 kHz tone)

    def to_json(self) -> dict[str, Any]:
        return {"start_s": self.start_s, "end_s": self.end_s, "mode": self.mode}


@dataclass
class Settings:
    every: int = 5          # detect on every k-th frame
    width: int = 640        # the detector's input width
    margin: float = 0.45    # each box grown by this share of its size, on each side
    style: str = "fill"
    shape: str = "box"
    manual: list[ManualBox] = field(default_factory=list)
    ignore: list[Ignore] = field(default_factory=list)
    audio: list[AudioRange] = field(default_factory=list)

    def check(self) -> None:
        if not 1 <= self.every <= 30:
            raise ValueError("detect on every 1st to 30th frame")
        if not 160 <= self.width <= 1920:
            raise ValueError("the detector's width: 160–1920 pixels")
        if not 0 <= self.margin <= 1:
            raise ValueError("the margin: 0–1 (a share of the face's size)")
        if self.style not in STYLES or self.shape not in SHAPES:
            raise ValueError(f"style one of {', '.join(STYLES)}; shape one of {', '.join(SHAPES)}")
        for r in [*self.manual, *self.ignore, *self.audio]:
            if not (0 <= r.start_s <= r.end_s) or not all(math.isfinite(v) for v in (r.start_s, r.end_s)):
                raise ValueError(f"a range must run forwards from 0 s: {r.start_s}–{r.end_s}")
        for r in self.audio:
            if r.mode not in ("mute", "bleep"):
                raise ValueError("audio ranges are muted or bleeped")
        for r in [*self.manual, *self.ignore]:
            x0, y0, x1, y1 = r.box
            if not (x1 > x0 and y1 > y0) or not all(math.isfinite(v) for v in r.box):
                raise ValueError(f"a box needs x0 < x1 and y0 < y1: {r.box}")

    def to_json(self) -> dict[str, Any]:
        return {"every": self.every, "width": self.width, "margin": self.margin, "style": self.style,
                "shape": self.shape}


@dataclass
class Plan:
    """What is masked on every frame (index in presentation order), and the frames' times."""
    width: int
    height: int
    times: list[float]                    # seconds from the first frame
    auto: list[list[Box]]                 # grown by the margin
    manual: list[list[Box]]
    detections: int = 0                   # faces the detector found, over all detection frames
    lost: list[float | None] = field(default_factory=list)   # per manual box: when its follower lost it

    def boxes(self, i: int) -> list[Box]:
        return [*self.auto[i], *self.manual[i]]

    def frame_at(self, t: float) -> int:
        import bisect
        return max(0, min(len(self.times) - 1, bisect.bisect_right(self.times, t) - 1))

    def masked_frames(self) -> int:
        return sum(1 for i in range(len(self.times)) if self.boxes(i))


def _video(container: Any) -> Any:
    if not container.streams.video:
        raise ValueError("the recording has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _frames(src: Path, wanted: Callable[[int, float], bool], out: "queue.Queue[Any]", stop: threading.Event) -> None:
    """Decode ``src`` in a thread of its own (libavcodec releases the GIL), so decoding and
    detection overlap: (index, seconds from the first frame, BGR pixels or None, size,
    the small grey picture faces are followed on, its scale)."""
    try:
        with av.open(str(src)) as container:
            stream = _video(container)
            t0 = None
            for i, frame in enumerate(container.decode(stream)):
                if stop.is_set():
                    return
                t = float(frame.time or 0.0)
                t0 = t if t0 is None else t0
                pixels = frame.to_ndarray(format="bgr24") if wanted(i, t - t0) else None
                grey, scale = follow.grey_of(frame, frame.width)
                out.put((i, t - t0, pixels, (frame.width, frame.height), grey, scale))
        out.put(None)
    except Exception as exc:  # handed to the reader, which raises it
        out.put(exc)


def analyse(src: Path, detector: Detector, settings: Settings,
            progress: Callable[[float], None] = lambda f: None) -> Plan:
    """Pass 1: detections and manual tracks, linked into the plan."""
    detections: dict[int, list[Box]] = {}
    followers = [follow.Manual(m) for m in settings.manual]
    manual: list[list[Box]] = []
    times: list[float] = []
    found = 0
    with av.open(str(src)) as container:
        stream = _video(container)
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        rate = stream.average_rate
    w = h = 0

    def wanted(i: int, t: float) -> bool:
        return i % settings.every == 0
    extender: follow.Extender | None = None
    frames: queue.Queue[Any] = queue.Queue(maxsize=8)       # a few decoded frames ahead, no more
    stop = threading.Event()
    reader = threading.Thread(target=_frames, args=(src, wanted, frames, stop), daemon=True)
    reader.start()
    try:
        while (item := frames.get()) is not None:
            if isinstance(item, Exception):
                raise item
            i, t, bgr, (w, h), grey, scale = item
            times.append(t)
            if extender is None:
                fps_guess = float(rate) if rate else 30.0
                extender = follow.Extender(max(1, int(round(REACH_S * fps_guess))), settings.every, scale)
            extender.frame(i, grey)
            if bgr is not None:
                faces = [b for b, _ in detector.detect(bgr) if not track.ignored(b, settings.ignore, t)]
                found += len(faces)
                detections[i] = faces
                extender.detected(i, faces)
            boxes = [b for f in followers if (b := f.step(grey, scale, t)) is not None]
            manual.append(boxes)
            if duration and i % 30 == 0:
                progress(min(1.0, t / duration))
    finally:
        stop.set()
        while reader.is_alive():      # let a reader blocked on a full queue see the stop
            try:
                frames.get_nowait()
            except queue.Empty:
                reader.join(0.05)
    if not times:
        raise ValueError("the recording has no video frames")
    if extender is not None:
        extender.finish()
    n = len(times)
    fps = (n - 1) / times[-1] if n > 1 and times[-1] > 0 else 30.0
    auto = track.link(detections, n, settings.margin, (w, h), edge_hold=int(round(fps * EDGE_HOLD_S)))
    for f, followed in (extender.extra.items() if extender else []):
        if f < n:
            auto[f] += [track.grow(b, settings.margin * FOLLOWED_MARGIN) for b in followed
                        if not track.ignored(b, settings.ignore, times[f])]
    auto = track.spread(auto, (w, h))
    manual = [[track.grow(b, settings.margin / 2) for b in boxes] for boxes in manual]
    return Plan(w, h, times, auto, manual, found, [f.lost_s for f in followers])


def mask(bgr: np.ndarray, boxes: list[Box], style: str, shape: str) -> np.ndarray:
    """Mask ``boxes`` in place on a BGR (or one-channel) image: a solid black fill, or a
    coarse pixelation (at most 6 blocks across)."""
    for c in range(bgr.shape[2]):
        _mask_plane(bgr[:, :, c], boxes, style, shape, 0)
    return bgr


def mask_yuv(planes: np.ndarray, width: int, height: int, boxes: list[Box], style: str, shape: str) -> None:
    """:func:`mask` on an I420 frame (``planes``: the (h·3/2, w) array PyAV gives for
    yuv420p), plane by plane: no conversion to RGB and back for every frame. The chroma
    planes get the boxes halved and grown outwards, so colour never bleeds past a mask."""
    y = planes[:height]
    u = planes[height:height + height // 4].reshape(height // 2, width // 2)
    v = planes[height + height // 4:].reshape(height // 2, width // 2)
    _mask_plane(y, boxes, style, shape, 16)
    half = [(b[0] / 2, b[1] / 2, b[2] / 2, b[3] / 2) for b in boxes]
    _mask_plane(u, half, style, shape, 128)
    _mask_plane(v, half, style, shape, 128)


def _mask_plane(plane: np.ndarray, boxes: list[Box], style: str, shape: str, fill: int) -> None:
    h, w = plane.shape[:2]
    for b in boxes:
        x0, y0 = max(0, int(math.floor(b[0]))), max(0, int(math.floor(b[1])))
        x1, y1 = min(w, int(math.ceil(b[2]))), min(h, int(math.ceil(b[3])))
        if x1 <= x0 or y1 <= y0:
            continue
        region = plane[y0:y1, x0:x1]
        if style == "pixelate":
            bw, bh = max(1, min(PIXEL_BLOCKS, x1 - x0)), max(1, min(PIXEL_BLOCKS, y1 - y0))
            small = cv2.resize(np.ascontiguousarray(region), (bw, bh), interpolation=cv2.INTER_AREA)
            covered = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        else:
            covered = None
        if shape == "ellipse":
            m = np.zeros(region.shape, np.uint8)
            # the ellipse inscribed in the (grown) box: a face's shape, less of the background
            cv2.ellipse(m, ((x1 - x0) // 2, (y1 - y0) // 2), (max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2)), 0, 0,
                        360, 1, -1)
            sel = m.astype(bool)
            region[sel] = fill if covered is None else covered[sel]
        else:
            region[:] = fill if covered is None else covered


def _audio(frame: av.AudioFrame, ranges: list[AudioRange], t0: float) -> av.AudioFrame:
    """Mute or bleep the samples of ``frame`` inside ``ranges`` (times from the first video frame)."""
    start = float(frame.time or 0.0) - t0
    rate = frame.sample_rate
    end = start + frame.samples / rate
    hits = [r for r in ranges if r.start_s < end and r.end_s > start]
    if not hits:
        return frame
    data = frame.to_ndarray().astype(np.float32)        # planar float: (channels, samples)
    for r in hits:
        a = max(0, int(round((r.start_s - start) * rate)))
        b = min(frame.samples, int(round((r.end_s - start) * rate)))
        if r.mode == "bleep":
            n = np.arange(a, b) + int(round(start * rate))
            data[:, a:b] = 0.2 * np.sin(2 * np.pi * BLEEP_HZ * n / rate)
        else:
            data[:, a:b] = 0
    out = av.AudioFrame.from_ndarray(data.astype(frame.to_ndarray().dtype), format=frame.format.name,
                                     layout=frame.layout.name)
    out.sample_rate, out.pts, out.time_base = rate, frame.pts, frame.time_base
    return out


def render(src: Path, plan: Plan, settings: Settings, out: Path, metadata: dict[str, str],
           progress: Callable[[float], None] = lambda f: None) -> dict[str, Any]:
    """Pass 2: the redacted MP4 (H.264 + AAC) at ``out``; facts about it."""
    with av.open(str(src)) as inp, av.open(str(out), "w", format="mp4") as outp:
        vin = _video(inp)
        ain = inp.streams.audio[0] if inp.streams.audio else None
        rate = vin.average_rate or Fraction(30)
        vout = outp.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = plan.width, plan.height, "yuv420p"
        vout.options = {"preset": "superfast", "crf": "20"}
        vout.codec_context.time_base = vin.time_base   # the camera's own timestamps, kept
        vout.thread_type = "AUTO"
        aout = None
        if ain is not None:
            aout = outp.add_stream("aac", rate=ain.codec_context.sample_rate)
            aout.layout = ain.codec_context.layout.name
        for k, v in metadata.items():
            outp.metadata[k] = v
        streams = [vin] + ([ain] if ain is not None else [])
        i, t0, frames, audio_frames = 0, None, 0, 0
        pts0 = None
        n = len(plan.times)
        for packet in inp.demux(*streams):
            for frame in packet.decode():
                if packet.stream is vin:
                    t0 = float(frame.time or 0.0) if t0 is None else t0
                    if i >= n:
                        continue      # a frame pass 1 did not see: never let an unplanned frame out
                    boxes = plan.boxes(i)
                    if boxes:
                        planes = frame.to_ndarray(format="yuv420p")
                        mask_yuv(planes, plan.width, plan.height, boxes, settings.style, settings.shape)
                        vf = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                    else:
                        vf = frame.reformat(format="yuv420p")
                    pts0 = frame.pts if pts0 is None else pts0
                    vf.pts, vf.time_base = frame.pts - pts0, vin.time_base
                    for p in vout.encode(vf):
                        outp.mux(p)
                    i += 1
                    frames += 1
                    if i % 30 == 0:
                        progress(i / n)
                elif aout is not None:
                    if t0 is None:
                        t0 = float(frame.time or 0.0)   # (sound before the first picture: rare, kept)
                    af = _audio(frame, settings.audio, t0)
                    # the sound keeps its place against the pictures (a recording's sound may begin
                    # after its pre-record pictures): its time from the first frame, in samples
                    af.pts = int(round((float(frame.time or 0.0) - t0) * frame.sample_rate))
                    if af.pts < 0:
                        continue
                    af.time_base = Fraction(1, frame.sample_rate)
                    for p in aout.encode(af):
                        outp.mux(p)
                    audio_frames += 1
        for p in vout.encode():
            outp.mux(p)
        if aout is not None:
            for p in aout.encode():
                outp.mux(p)
    if frames != n:
        raise ValueError(f"pass 2 decoded {frames} frames, pass 1 {n}: the source changed between the passes")
    return {"frames": frames, "audio": ain is not None, "duration_s": round(plan.times[-1] + 1 / float(rate), 3)}


def preview(src: Path, plan: Plan, t: float, width: int = 960) -> bytes:
    """A JPEG of the frame at ``t`` seconds with the boxes outlined (red: automatic, blue:
    manual) — what the clerk checks before approving."""
    want = plan.frame_at(t)
    with av.open(str(src)) as container:
        stream = _video(container)
        target = plan.times[want]
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        container.seek(int((start + max(0.0, target - 2.0)) / stream.time_base), stream=stream, backward=True)
        frame_bgr = None
        for frame in container.decode(stream):
            ft = float(frame.time or 0.0) - start
            frame_bgr = frame.to_ndarray(format="bgr24")
            if ft >= target - 1e-3:
                break
    if frame_bgr is None:
        raise ValueError("no frame at that time")
    for boxes, colour in ((plan.auto[want], (0, 0, 230)), (plan.manual[want], (230, 120, 0))):
        for b in boxes:
            cv2.rectangle(frame_bgr, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), colour, 3)
    f = min(1.0, width / frame_bgr.shape[1])
    if f < 1:
        frame_bgr = cv2.resize(frame_bgr, (int(frame_bgr.shape[1] * f), int(frame_bgr.shape[0] * f)))
    ok, jpg = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return jpg.tobytes()
