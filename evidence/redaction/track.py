"""Which boxes to mask on every frame.

Detection runs on every ``every``-th frame (the slow step); the frames between get boxes
by *linking* the detections of neighbouring detection frames into tracks (greedy, by
overlap or nearness) and interpolating each track linearly. Because redaction is offline,
both ends are known: a face that appears between two detection frames is masked from the
earlier one on, one that leaves is masked until the later one, and a face the detector
misses on one detection frame (turned away for an instant) is bridged across the gap.
Every box is then grown by ``margin`` (a share of its size, on each side).

Manual boxes (:class:`ManualBox`) are followed from their first frame when ``follow`` is
set (``follow.Manual``); :class:`Ignore` regions drop automatic boxes whose centre lies in
them (a false detection on a poster). :func:`spread` makes sure no frame masks less than
its neighbours.

>>> plan = link({0: [(10, 10, 30, 30)], 4: [(18, 10, 38, 30)]}, frames=5, margin=0.0)
>>> plan[2]
[(14.0, 10.0, 34.0, 30.0)]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

Box = tuple[float, float, float, float]

BRIDGE = 4       # detection frames a track may go unseen and still be linked across
REACH = 1.5      # a box's centre may move this many box sizes between two detection frames
EDGE = 0.04      # a box this close to the frame's border (share of its width) is leaving or entering


@dataclass(frozen=True)
class ManualBox:
    """A region the clerk drew on the frame at ``start_s``, masked until ``end_s``."""
    start_s: float
    end_s: float
    box: Box
    follow: bool = True     # follow the object (tracker) or stay where drawn

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "box": [round(v, 1) for v in self.box]}


@dataclass(frozen=True)
class Ignore:
    """Automatic boxes whose centre lies in ``box`` between ``start_s`` and ``end_s`` are dropped."""
    start_s: float
    end_s: float
    box: Box

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "box": [round(v, 1) for v in self.box]}


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _near(a: Box, b: Box, reach: float = 1.0) -> float:
    """How well ``b`` continues ``a``: overlap, or centres within ``reach`` box sizes (fast motion)."""
    iou = _iou(a, b)
    if iou > 0:
        return 1 + iou
    size = reach * max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    d = (dx * dx + dy * dy) ** 0.5
    return 1 - d / size if d < size else 0.0


def _predict(t: list[tuple[int, Box]], f: int) -> Box:
    """Where track ``t`` should be at frame ``f``, moving on as it last moved."""
    (fb, b) = t[-1]
    if len(t) < 2:
        return b
    (fa, a) = t[-2]
    k = (f - fb) / (fb - fa)
    return tuple(y + (y - x) * k for x, y in zip(a, b))  # type: ignore[return-value]


def _lerp(a: Box, b: Box, f: float) -> Box:
    return tuple(x + (y - x) * f for x, y in zip(a, b))  # type: ignore[return-value]


def _at_edge(b: Box, size: tuple[int, int] | None) -> bool:
    if size is None:
        return False
    d = EDGE * size[0]
    return b[0] <= d or b[1] <= d or b[2] >= size[0] - d or b[3] >= size[1] - d


def link(detections: dict[int, list[Box]], frames: int, margin: float, size: tuple[int, int] | None = None,
         edge_hold: int = 0) -> list[list[Box]]:
    """The boxes to mask on each of ``frames`` frames, from detections on some of them.

    ``size`` (width, height) and ``edge_hold`` (frames): a track that ends (or begins) at
    the frame's border is held that much longer (earlier) — a face leaving the picture is
    found less and less as less of it shows, but is still a face."""
    keys = sorted(k for k in detections if 0 <= k < frames)
    tracks: list[list[tuple[int, Box]]] = []
    open_tracks: list[tuple[list[tuple[int, Box]], int]] = []      # (track, index in keys of its last point)
    for ki, f in enumerate(keys):
        boxes = list(detections[f])
        still: list[tuple[list[tuple[int, Box]], int]] = []
        pairs = sorted(((_near(_predict(t, f), b, REACH + 0.5 * (ki - last - 1)), ti, bi)
                        for ti, (t, last) in enumerate(open_tracks) for bi, b in enumerate(boxes)), reverse=True)
        used_t, used_b = set(), set()
        for score, ti, bi in pairs:
            if score <= 0 or ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            open_tracks[ti][0].append((f, boxes[bi]))
            still.append((open_tracks[ti][0], ki))
        for ti, (t, last) in enumerate(open_tracks):
            if ti not in used_t and ki - last <= BRIDGE:
                still.append((t, last))                              # unseen for now: may be bridged
        for bi, b in enumerate(boxes):
            if bi not in used_b:
                t = [(f, b)]
                tracks.append(t)
                still.append((t, ki))
        open_tracks = still
    plan: list[list[Box]] = [[] for _ in range(frames)]
    for t in tracks:
        first_k, last_k = keys.index(t[0][0]), keys.index(t[-1][0])
        # before the first sighting: from the previous detection frame on (it may have come in between)
        start = keys[first_k - 1] + 1 if first_k > 0 else 0
        end = keys[last_k + 1] - 1 if last_k + 1 < len(keys) else frames - 1
        if _at_edge(t[0][1], size):
            start = max(0, start - edge_hold)
        if _at_edge(t[-1][1], size):
            end = min(frames - 1, end + edge_hold)
        for f in range(start, t[0][0]):
            plan[f].append(t[0][1])
        for (fa, a), (fb, b) in zip(t, t[1:]):
            for f in range(fa, fb):
                plan[f].append(_lerp(a, b, (f - fa) / (fb - fa)))
        for f in range(t[-1][0], end + 1):
            plan[f].append(t[-1][1])
    return [[grow(b, margin) for b in boxes] for boxes in plan]


SPREAD = 2       # every frame masks what its neighbours within this many frames mask
SAME = 0.1       # boxes on neighbouring frames overlapping this much (IoU) are one face's
SNAP = 0.02      # a box this close to the frame's border (share of its width) is taken to it


def grow(b: Box, margin: float) -> Box:
    w, h = b[2] - b[0], b[3] - b[1]
    return (b[0] - margin * w, b[1] - margin * h, b[2] + margin * w, b[3] + margin * h)


def spread(plan: list[list[Box]], size: tuple[int, int] | None, k: int = SPREAD) -> list[list[Box]]:
    """Each frame's boxes joined with those of the ``k`` frames either side (overlapping
    ones merged into one), and boxes near the border taken to it.

    A frame must never mask a face less than its neighbours do: a box that lags a moving
    face by a pixel, or a face followed from one frame on and not the one before, would
    leave exactly one frame to identify someone. Joining the neighbours' boxes covers the
    face wherever it is between them.

    >>> spread([[(10, 10, 20, 20)], [], [(14, 10, 24, 20)]], None, k=1)
    [[(10, 10, 20, 20)], [(10, 10, 24, 20)], [(14, 10, 24, 20)]]
    """
    n = len(plan)
    out = []
    for f in range(n):
        boxes = [b for j in range(max(0, f - k), min(n, f + k + 1)) for b in plan[j]]
        out.append([_snap(b, size) for b in _merge(boxes)])
    return out


def _merge(boxes: list[Box]) -> list[Box]:
    """Boxes of one face on neighbouring frames (overlapping well) as their bounding box;
    boxes of different faces stay apart (their bounding box would cover what is between)."""
    out: list[Box] = []
    for b in boxes:
        while True:
            hit = next((i for i, o in enumerate(out) if _iou(o, b) >= SAME), None)
            if hit is None:
                out.append(b)
                break
            o = out.pop(hit)
            b = (min(o[0], b[0]), min(o[1], b[1]), max(o[2], b[2]), max(o[3], b[3]))
    return out


def _snap(b: Box, size: tuple[int, int] | None) -> Box:
    if size is None:
        return b
    d = SNAP * size[0]
    return (0.0 if b[0] < d else b[0], 0.0 if b[1] < d else b[1],
            float(size[0]) if b[2] > size[0] - d else b[2], float(size[1]) if b[3] > size[1] - d else b[3])


def ignored(b: Box, regions: list[Ignore], t: float) -> bool:
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    return any(r.start_s <= t <= r.end_s and r.box[0] <= cx <= r.box[2] and r.box[1] <= cy <= r.box[3]
               for r in regions)
