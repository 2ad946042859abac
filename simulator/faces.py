"""A scene with real faces whose positions are known: the ground truth for redaction.

The faces are photographs that ship inside an installed package: scikit-image's
``astronaut.png`` (Eileen Collins, NASA, public domain) and ``camera.png`` (the
"cameraman", MIT). Each actor is a crop of one, composited onto the simulator's moving
background; actors walk across the frame, grow and shrink (walking towards the camera),
turn (mirrored, tilted up to ±25°), leave the frame at an edge, and one is half hidden
behind a passing sign. Every frame comes with the boxes of the faces in it, as visible.

>>> scene = FaceScene(640, 360, seed=1)
>>> frame, faces = scene.draw(0)
>>> frame.shape, len(faces) >= 1
((360, 640, 3), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[float, float, float, float]

# Where the face is inside each photograph (x0, y0, x1, y1), checked by eye and by CenterFace
# (astronaut: 181,58–270,178; camera: 202,119–258,197), and the crop taken around it.
_SOURCES = {
    "astronaut": {"face": (178, 52, 272, 182), "crop": (110, 0, 350, 300)},
    "camera": {"face": (198, 114, 262, 200), "crop": (140, 50, 330, 300)},
}


@dataclass(frozen=True)
class Face:
    box: Box          # the visible face, in frame pixels, clipped to the frame
    actor: int
    kind: str         # "walking", "turned", "hidden", "edge", "small"


def _load(name: str) -> np.ndarray:
    import skimage.data
    img = getattr(skimage.data, name)()
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.ndim == 2 else cv2.COLOR_RGB2BGR)


@dataclass
class _Actor:
    source: str
    kind: str
    base: float        # face height as a share of the frame height
    speed: float       # cycles per 10 s
    phase: float
    tilt: float = 0.0  # degrees
    mirror: bool = False


class FaceScene:
    """Frames of ``width``×``height`` (BGR) with up to five faces, and their boxes."""

    def __init__(self, width: int, height: int, seed: int = 0, fps: float = 30.0) -> None:
        self.w, self.h, self.fps = width, height, fps
        rng = np.random.default_rng(seed)
        y = np.linspace(60, 170, height, dtype=np.float32)[:, None]
        x = np.linspace(0, 50, width, dtype=np.float32)[None, :]
        grad = y + x
        self.background = np.dstack([grad, np.full_like(grad, 100), 190 - grad]).astype(np.uint8)
        self.photos = {name: _load(name) for name in _SOURCES}
        self.actors = [
            _Actor("astronaut", "walking", 0.26, 0.6, rng.uniform(0, 6.28)),
            _Actor("camera", "turned", 0.22, 0.45, rng.uniform(0, 6.28), tilt=20, mirror=True),
            _Actor("astronaut", "hidden", 0.20, 0.35, rng.uniform(0, 6.28), mirror=True),
            _Actor("camera", "edge", 0.18, 0.8, rng.uniform(0, 6.28), tilt=-15),
            _Actor("astronaut", "small", 0.09, 0.5, rng.uniform(0, 6.28), tilt=8),
        ]

    def draw(self, n: int) -> tuple[np.ndarray, list[Face]]:
        img = self.background.copy()
        owner = np.full(img.shape[:2], -1, np.int8)   # who is seen at each pixel: later actors hide earlier ones
        t = n / self.fps
        polygons = [self._place(img, owner, i, a, t) for i, a in enumerate(self.actors)]
        faces: list[Face] = []
        for i, poly in enumerate(polygons):
            face = self._visible(owner, i, poly)
            if face is not None:
                faces.append(face)
        return img, faces

    def _visible(self, owner: np.ndarray, i: int, poly: np.ndarray) -> Face | None:
        """The box of what can be seen of actor ``i``'s face, or None when less than a third
        of it is in the frame and not hidden (not a recognisable face)."""
        x0, y0 = np.floor(poly.min(axis=0)).astype(int)
        x1, y1 = np.ceil(poly.max(axis=0)).astype(int)
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(self.w, x1), min(self.h, y1)
        if cx0 >= cx1 or cy0 >= cy1:
            return None
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.round(poly - [x0, y0]).astype(np.int32), 1)
        full = int(mask.sum())
        seen = mask[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].astype(bool) & (owner[cy0:cy1, cx0:cx1] == i)
        if full == 0 or seen.sum() < full / 3:
            return None
        ys, xs = np.nonzero(seen)
        return Face((float(cx0 + xs.min()), float(cy0 + ys.min()), float(cx0 + xs.max() + 1), float(cy0 + ys.max() + 1)),
                    i, self.actors[i].kind)

    def _place(self, img: np.ndarray, owner: np.ndarray, i: int, a: _Actor, t: float) -> np.ndarray:
        """Paint actor ``i``; the polygon of its face in frame pixels."""
        src = _SOURCES[a.source]
        w = 2 * np.pi * a.speed * t / 10 + a.phase
        grow = 1 + 0.35 * np.sin(w * 0.7)                     # towards the camera and away
        face_h = a.base * self.h * grow
        fx0, fy0, fx1, fy1 = src["face"]
        cx0, cy0, cx1, cy1 = src["crop"]
        k = face_h / (fy1 - fy0)
        sprite = self.photos[a.source][cy0:cy1, cx0:cx1]
        sprite = cv2.resize(sprite, (max(2, int((cx1 - cx0) * k)), max(2, int((cy1 - cy0) * k))),
                            interpolation=cv2.INTER_LINEAR)
        corners = np.array([[fx0 - cx0, fy0 - cy0], [fx1 - cx0, fy0 - cy0], [fx1 - cx0, fy1 - cy0],
                            [fx0 - cx0, fy1 - cy0]], np.float32) * k
        sh, sw = sprite.shape[:2]
        if a.mirror:
            sprite = sprite[:, ::-1]
            corners[:, 0] = sw - corners[:, 0]
        angle = a.tilt * np.sin(w * 1.3)
        m = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, 1.0)
        sprite = cv2.warpAffine(sprite, m, (sw, sh), borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        alpha = cv2.warpAffine(np.full((sh, sw), 255, np.uint8), m, (sw, sh))
        corners = np.hstack([corners, np.ones((4, 1), np.float32)]) @ m.T
        # the path: across the frame (the "edge" actor goes beyond it), bobbing a little
        span = 0.75 if a.kind == "edge" else 0.36
        x = self.w / 2 + self.w * span * np.sin(w) - sw / 2
        y = self.h * (0.25 + 0.12 * i) + self.h * 0.05 * np.sin(w * 2.1) - sh / 3
        ox, oy = int(round(x)), int(round(y))
        self._paste(img, owner, i, sprite, alpha, ox, oy)
        poly = corners + [ox, oy]
        if a.kind == "hidden" and np.sin(w * 1.7) > 0:
            # a sign passes in front: it hides the lower half of the face for part of the time
            top, bottom = poly[:, 1].min(), poly[:, 1].max()
            p0 = (int(poly[:, 0].min() - 20), int(top + 0.5 * (bottom - top)))
            p1 = (int(poly[:, 0].max() + 20), int(bottom + 30))
            cv2.rectangle(img, p0, p1, (40, 160, 230), -1)
            cv2.rectangle(owner, p0, p1, -1, -1)
        return poly

    @staticmethod
    def _paste(img: np.ndarray, owner: np.ndarray, i: int, sprite: np.ndarray, alpha: np.ndarray, ox: int,
               oy: int) -> None:
        h, w = img.shape[:2]
        sh, sw = sprite.shape[:2]
        x0, y0, x1, y1 = max(0, ox), max(0, oy), min(w, ox + sw), min(h, oy + sh)
        if x0 >= x1 or y0 >= y1:
            return
        s = sprite[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        m = alpha[y0 - oy:y1 - oy, x0 - ox:x1 - ox] > 127
        np.copyto(img[y0:y1, x0:x1], s, where=m[:, :, None])      # (boolean indexing: 4× slower)
        np.copyto(owner[y0:y1, x0:x1], np.int8(i), where=m)
