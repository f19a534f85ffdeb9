"""Faces: find them (boxes in DataComp's convention) and blur them beyond recognition.

Detectors, by what the user has:
- ``haar`` (default): OpenCV's frontal-face Haar cascade, shipped inside the opencv-python wheel
  (cv2.data.haarcascades; OpenCV 5 dropped it, hence opencv-python < 5). No download, CPU only.
- ``--face-weights PATH``: a YuNet ONNX file the user supplies, run by OpenCV's FaceDetectorYN
  (finds smaller, turned and partly hidden faces; nothing is downloaded for it).

Boxes are ``[x0, y0, x1, y1]`` as fractions of the image's width and height (the ``face_bboxes``
column of DataComp). Detection runs on a copy whose longer side is at most DETECT_SIDE pixels.

Blurring (blur_faces) covers each box grown by BLUR_MARGIN on every side, pixelates it to BLUR_CELLS
cells across and then blurs it with a Gaussian as wide as a cell: the detector finds no face in it
again (benchmarks/faces.py), for one resize and one blur per face. (The Haar detector equalises the
whole image's histogram first, so blurring one face can change what it sees elsewhere: on the
astronaut photograph a false face appears on her shoulder once her face is blurred.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pixelforge.errors import UsageError

# Measured on scikit-image's 100 LFW faces and 100 non-faces (benchmarks/faces.py): the alt2 cascade
# with 3 neighbours on a 320 px copy found 93 faces, no false face there or in 19 other photos; the
# default cascade 89-90, with false faces in coins, cells and the moon; 640 px found no more, in twice the time
DETECT_SIDE = 320  # detection copy's longer side (larger images are scaled down first)
MIN_FACE = 20  # smallest face side in pixels of the detection copy (the cascade's own window is 24)
BLUR_MARGIN = 0.15  # share of the box's side added around it before blurring (hair, ears, chin)
BLUR_CELLS = 6  # the blurred face is this many cells across
HAAR_FILE = "haarcascade_frontalface_alt2.xml"


@dataclass(frozen=True)
class FaceSettings:
    weights: str | None = None  # YuNet ONNX for FaceDetectorYN; None: the Haar cascade
    min_neighbors: int = 3  # Haar: overlapping detections a face needs (higher: fewer false faces)
    score: float = 0.7  # YuNet: the lowest face score kept

    @property
    def name(self) -> str:
        return f"yunet:{self.weights}" if self.weights else "haar"


class FaceDetector:
    """Finds faces in RGB images (PIL or uint8 arrays); one instance per process (not thread-safe)."""

    def __init__(self, settings: FaceSettings | None = None):
        import cv2

        self.settings = settings or FaceSettings()
        if self.settings.weights:
            try:
                self._yunet = cv2.FaceDetectorYN.create(self.settings.weights, "", (320, 320), self.settings.score)
            except cv2.error as exc:
                why = " ".join(exc.msg.split())  # OpenCV's message ends in a newline: the error stays one line
                raise UsageError(
                    f"--face-weights {self.settings.weights}: not a YuNet ONNX model OpenCV can load ({why})"
                ) from None
            self._haar = None
        else:
            path = cv2.data.haarcascades + HAAR_FILE
            self._haar = cv2.CascadeClassifier(path)
            if self._haar.empty():
                raise UsageError(f"OpenCV's face cascade {path} is missing: reinstall opencv-python (< 5)")
            self._yunet = None

    def detect(self, img) -> list[list[float]]:
        """Face boxes ``[x0, y0, x1, y1]`` as fractions of the image's size, largest first."""
        import cv2

        rgb = np.asarray(img.convert("RGB") if hasattr(img, "convert") else img)
        if rgb.ndim == 2:  # a grey array
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        rgb = np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8, copy=False)  # RGBA: the alpha dropped
        h, w = rgb.shape[:2]
        if not h or not w:
            return []
        scale = min(1.0, DETECT_SIDE / max(h, w))
        if scale < 1.0:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sh, sw = rgb.shape[:2]
        if self._yunet is not None:
            self._yunet.setInputSize((sw, sh))
            _, found = self._yunet.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            rects = [] if found is None else [tuple(float(v) for v in f[:4]) for f in found]
        else:
            grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
            found = self._haar.detectMultiScale(
                grey, scaleFactor=1.1, minNeighbors=self.settings.min_neighbors, minSize=(MIN_FACE, MIN_FACE)
            )
            rects = [tuple(float(v) for v in r) for r in found]
        boxes = []
        for x, y, bw, bh in sorted(rects, key=lambda r: -r[2] * r[3]):
            x0, y0 = max(0.0, x / sw), max(0.0, y / sh)
            x1, y1 = min(1.0, (x + bw) / sw), min(1.0, (y + bh) / sh)
            if x1 > x0 and y1 > y0:
                boxes.append([round(x0, 4), round(y0, 4), round(x1, 4), round(y1, 4)])
        return boxes


def blur_faces(img, boxes: list[list[float]]):
    """A copy of PIL image ``img`` with every box (fractions, as FaceDetector gives) pixelated and blurred."""
    from PIL import Image, ImageFilter

    out = img.convert("RGB").copy()
    w, h = out.size
    for x0, y0, x1, y1 in boxes:
        mx, my = (x1 - x0) * BLUR_MARGIN, (y1 - y0) * BLUR_MARGIN
        box = (
            max(0, int((x0 - mx) * w)),
            max(0, int((y0 - my) * h)),
            min(w, int(np.ceil((x1 + mx) * w))),
            min(h, int(np.ceil((y1 + my) * h))),
        )
        bw, bh = box[2] - box[0], box[3] - box[1]
        if bw < 2 or bh < 2:
            continue
        region = out.crop(box)
        cells = region.resize((BLUR_CELLS, max(1, round(BLUR_CELLS * bh / bw))), Image.Resampling.BOX)
        region = cells.resize((bw, bh), Image.Resampling.NEAREST)
        region = region.filter(ImageFilter.GaussianBlur(max(1.0, bw / BLUR_CELLS)))
        out.paste(region, box[:2])
    return out
