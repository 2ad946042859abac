"""Following a face (or a drawn region) beyond the frames where it was found.

The detector runs on every k-th frame and misses a face now and then (turned away, at
the edge, on the first frame of a recording). Interpolation (``track.py``) fills the
frames *between* two sightings, but a face that becomes visible before its first sighting,
or stays after its last, would show unmasked on exactly the frames next to masked ones:
the one frame that identifies a person. So the face is *followed*:

* **back** from where it is first found, through the frames just before it (kept in a
  small ring of grey pictures, ``reach`` frames: nothing is decoded twice), as far as it
  can be recognised;
* **forward** from where it was last found, through the frames after it, until it is no
  longer recognised, it is found again, or ``reach`` frames have passed.

:class:`Template` is the follower: normalised cross-correlation of the face's patch in a
window around its last place (OpenCV's ``matchTemplate``), on grey pictures scaled to at
most :data:`TRACK_WIDTH` pixels. It says when it has lost its object (the best match is
poor), rather than wandering off with the background as OpenCV's MIL tracker did (a drawn
box that drifted 170 px in 7 s). Written here because OpenCV's better trackers (CSRT, KCF)
live in the contrib wheel, which clashes with the headless one, and the others need model
files: a template search is what a short reach needs, and it is fast (≈ 0.2 ms a frame).

>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> scene = rng.integers(0, 255, (120, 160), dtype=np.uint8)
>>> face = scene[40:70, 50:80].copy()
>>> moved = np.roll(scene, 6, axis=1)              # the picture moves 6 px to the right
>>> t = Template(scene, (50, 40, 80, 70))
>>> t.step(moved)
(56.0, 40.0, 86.0, 70.0)
>>> t.step(np.zeros_like(scene)) is None           # nothing like it: lost, and says so
True
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from evidence.redaction.track import Box, ManualBox, _iou, _near

TRACK_WIDTH = 640         # grey pictures for following are scaled to at most this width
MATCH = 0.35              # below this correlation the object is taken as lost
RENEW = 0.7               # above it the template is renewed (turning faces), below kept (no drift)
FOUND = 0.3               # a detection overlapping a followed box this much (IoU) is the same face
SAME_FACE = 0.75          # a face continues one of the last detection frame within this many box sizes
JERK = 0.08               # the most its motion may change from one frame to the next (share of its size)
LONG = 4                  # a face not found again is followed on for at most this many reaches
SEARCH = 0.3              # searched this share of the box's size around its expected place
MIN_SIDE = 6              # a template smaller than this (pixels, scaled) cannot be followed


class Template:
    """One box followed on grey pictures (all of one size); coordinates in those pictures."""

    def __init__(self, grey: np.ndarray, box: Box) -> None:
        self.box = box
        self.patch = _crop(grey, box)
        self.lost = self.patch is None
        self.velocity: tuple[float, float] = (0.0, 0.0)     # pixels a frame, in the direction followed
        self.steps = 0

    def ahead(self, frames: int) -> Box:
        """Where the object would be ``frames`` steps on, moving as it last moved."""
        dx, dy = self.velocity[0] * frames, self.velocity[1] * frames
        return (self.box[0] + dx, self.box[1] + dy, self.box[2] + dx, self.box[3] + dy)

    def step(self, grey: np.ndarray) -> Box | None:
        """The box on the next picture, or None (lost: from then on always None)."""
        if self.lost or self.patch is None:
            return None
        import cv2
        x0, y0, x1, y1 = self.box
        w, h = x1 - x0, y1 - y0
        # searched around where it would be moving on as it moved: a face does not jump,
        # and a wide search lets the template slide onto the background beside it
        px0, py0, px1, py1 = self.ahead(1)
        pad = SEARCH * max(w, h) + 3
        H, W = grey.shape[:2]
        sx0, sy0 = max(0, int(px0 - pad)), max(0, int(py0 - pad))
        sx1, sy1 = min(W, int(np.ceil(px1 + pad))), min(H, int(np.ceil(py1 + pad)))
        ph, pw = self.patch.shape
        if sx1 - sx0 < pw or sy1 - sy0 < ph:
            self.lost = True          # at the border: the edge hold of ``track.link`` takes over
            return None
        window = grey[sy0:sy1, sx0:sx1]
        if float(window.std()) < 2.0 or float(self.patch.std()) < 2.0:
            self.lost = True          # a flat picture (a cut to black): nothing to follow
            return None
        scores = cv2.matchTemplate(window, self.patch, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if not np.isfinite(best) or best < MATCH:
            self.lost = True
            return None
        nx0, ny0 = float(sx0 + bx), float(sy0 + by)
        v = (nx0 - x0, ny0 - y0)
        if self.steps and max(abs(v[0] - self.velocity[0]), abs(v[1] - self.velocity[1])) > JERK * max(w, h):
            self.lost = True          # a sudden jump: onto something else (a passing sign), not the face
            return None
        self.steps += 1
        self.velocity = v
        self.box = (nx0, ny0, nx0 + w, ny0 + h)
        if best > RENEW:
            renewed = _crop(grey, self.box)
            if renewed is not None and renewed.shape == self.patch.shape:
                self.patch = renewed
        return self.box


def _crop(grey: np.ndarray, box: Box) -> np.ndarray | None:
    H, W = grey.shape[:2]
    x0, y0 = int(round(box[0])), int(round(box[1]))
    x1, y1 = int(round(box[2])), int(round(box[3]))
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H or x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        return None
    return grey[y0:y1, x0:x1].copy()


def grey_of(frame: Any, width: int) -> tuple[np.ndarray, float]:
    """A decoded PyAV frame as a grey picture at most ``TRACK_WIDTH`` wide, and its scale."""
    import cv2
    scale = min(1.0, TRACK_WIDTH / width)
    grey = frame.to_ndarray(format="gray")
    if scale < 1.0:
        grey = cv2.resize(grey, (int(round(grey.shape[1] * scale)), int(round(grey.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return grey, scale


class Extender:
    """Follows every face back from its first sighting and on from its last (see above).

    Feed it every frame's grey picture (:meth:`frame`, in order) and every detection
    frame's faces (:meth:`detected`, after that frame's :meth:`frame`), then call
    :meth:`finish`; :attr:`extra` then holds, per frame, the boxes found by following
    (full-frame pixels, not grown). Where a follower loses its face (hidden for a moment,
    turned away), the box goes on as the face last moved for ``hold`` frames: a face lost
    is still a face. Memory: ``reach + every`` grey pictures.
    """

    def __init__(self, reach: int, every: int, scale: float, hold: int | None = None) -> None:
        self.reach, self.every, self.scale = reach, every, scale
        self.hold = reach // 3 if hold is None else hold
        self.ring: deque[tuple[int, np.ndarray]] = deque(maxlen=reach + every + 1)
        self.extra: dict[int, list[Box]] = {}
        self.coasting: list[tuple[Template, int]] = []          # (follower, last frame it may reach)
        self.prev: list[Box] = []
        self.prev_frame: int | None = None

    def _small(self, b: Box) -> Box:
        return tuple(v * self.scale for v in b)  # type: ignore[return-value]

    def _add(self, i: int, small: Box) -> None:
        if i >= 0:
            self.extra.setdefault(i, []).append(tuple(v / self.scale for v in small))  # type: ignore[arg-type]

    def _known(self, i: int, b: Box) -> bool:
        """Whether a follower already put a box like ``b`` on frame ``i``."""
        return any(_iou(o, b) >= FOUND for o in self.extra.get(i, []))

    def _lost(self, t: Template, at: int, step: int) -> None:
        """``t`` lost its face at frame ``at`` (going ``step``: +1 on, -1 back): hold it on."""
        for k in range(self.hold):
            self._add(at + step * k, t.ahead(k + 1))

    def _follow(self, t: Template, frames: dict[int, np.ndarray], span: range) -> bool:
        """Step ``t`` through ``span``; False (and the hold added) if it lost its face."""
        for j in span:
            found = t.step(frames[j]) if j in frames else None
            if found is None:
                self._lost(t, j, span.step)
                return False
            self._add(j, found)
        return True

    def frame(self, i: int, grey: np.ndarray) -> None:
        self.ring.append((i, grey))
        still = []
        for t, until in self.coasting:
            if i > until:
                self._lost(t, i, 1)       # followed as far as it may be: held a little longer
            elif self._follow(t, {i: grey}, range(i, i + 1)):
                still.append((t, until))
        self.coasting = still

    def detected(self, i: int, boxes: list[Box]) -> None:
        frames = dict(self.ring)
        if i not in frames:
            raise ValueError(f"frame {i} was not given to the extender before its detections")
        new, ended = _unmatched(self.prev, boxes)
        for b in new:            # found now, not at the last detection frame: followed back
            if self._known(i - 1, b):
                continue         # followed there already (on from an earlier sighting)
            self._follow(Template(frames[i], self._small(b)), frames, range(i - 1, max(-1, i - self.reach - 1), -1))
        if self.prev_frame is not None:
            for p in ended:      # found last time, not now: followed on, through the frames since, then live
                if self._known(self.prev_frame + 1, p):
                    continue
                t = Template(frames.get(self.prev_frame, frames[i]), self._small(p))
                if self._follow(t, frames, range(self.prev_frame + 1, i + 1)):
                    self.coasting.append((t, self.prev_frame + LONG * self.reach))
        # a follower whose face is found again is no longer needed
        self.coasting = [(t, u) for t, u in self.coasting
                         if not any(_iou(tuple(v / self.scale for v in t.box), b) >= FOUND for b in boxes)]
        self.prev, self.prev_frame = list(boxes), i

    def finish(self) -> None:
        """After the last frame: the faces of the last detection frame followed to the end
        (the frames after it were never looked at by the detector)."""
        if self.prev_frame is None:
            return
        frames = dict(self.ring)
        for p in self.prev:
            self._follow(Template(frames[self.prev_frame], self._small(p)), frames,
                         range(self.prev_frame + 1, max(frames) + 1))


def _unmatched(prev: list[Box], now: list[Box]) -> tuple[list[Box], list[Box]]:
    """Faces of ``now`` that continue none of ``prev``, and faces of ``prev`` that none of
    ``now`` continues: one to one, best pairs first (as ``track.link`` pairs them)."""
    pairs = sorted(((_near(p, b, SAME_FACE), pi, bi) for pi, p in enumerate(prev) for bi, b in enumerate(now)),
                   reverse=True)
    used_p: set[int] = set()
    used_b: set[int] = set()
    for score, pi, bi in pairs:
        if score > 0 and pi not in used_p and bi not in used_b:
            used_p.add(pi)
            used_b.add(bi)
    return ([b for bi, b in enumerate(now) if bi not in used_b], [p for pi, p in enumerate(prev) if pi not in used_p])


class Manual:
    """A region the clerk drew, masked from ``start_s`` to ``end_s``: where it was drawn, or
    followed (``follow``) with a :class:`Template` on the grey pictures. When the follower
    loses its object, the box stays where it was last seen and :attr:`lost_s` says when —
    the console and the report tell the clerk to check from there (a box that silently
    wandered off would leave what it covered visible)."""

    def __init__(self, manual: ManualBox) -> None:
        self.manual = manual
        self.template: Template | None = None
        self.box = manual.box
        self.lost_s: float | None = None

    def step(self, grey: np.ndarray, scale: float, t: float) -> Box | None:
        m = self.manual
        if t < m.start_s or t > m.end_s:
            return None
        if not m.follow or self.lost_s is not None:
            return self.box
        if self.template is None:
            self.template = Template(grey, tuple(v * scale for v in m.box))  # type: ignore[arg-type]
            if self.template.lost:
                self.lost_s = t            # too small or off the picture to follow: stays where drawn
            return self.box
        found = self.template.step(grey)
        if found is None:
            self.lost_s = t
        else:
            self.box = tuple(v / scale for v in found)  # type: ignore[assignment]
        return self.box
