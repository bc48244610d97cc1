"""Where the faces are, for steps that must leave them untouched (enhance's restore mode).

RetinaFace (photo-restoration bundle) is used when it is installed; otherwise OpenCV's Haar
cascade, which ships with opencv-python-headless 4.x and needs no download. Detection runs on a
copy at most DETECT_SIDE pixels on its long side, so a 24 MP photo costs what a 1 MP one does.
"""
from __future__ import annotations

import math
import os

import cv2
import numpy as np

from pipelines.base import ModelUnavailable, StepContext
from pipelines.models.face_helpers import detect_faces, shrink_to

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in full-resolution pixels
DETECTOR_ID = "retinaface-resnet50"  # of the photo-restoration bundle
DETECTOR_BUNDLE = "photo-restoration"
DETECT_SIDE = 1024
# Protect hair and chin too: the detectors box the inner face.
MARGIN = 0.25


def face_boxes(rgb: np.ndarray, ctx: StepContext) -> list[Box]:
    """Face boxes, widened by MARGIN and clipped to the image."""
    small, factor = shrink_to(rgb, DETECT_SIDE)
    try:
        boxes = retina_boxes(small, ctx)
    except ModelUnavailable:  # no photo-restoration bundle: the cascade that ships with OpenCV
        boxes = _haar(small)
    height, width = rgb.shape[:2]
    return [_widen(box, factor, width, height) for box in boxes]


def retina_boxes(rgb: np.ndarray, ctx: StepContext) -> list[Box]:
    """RetinaFace boxes in ``rgb``'s pixels (at most DETECT_SIDE on its long side), rounded outwards."""
    detector = ctx.model(DETECTOR_ID, DETECTOR_BUNDLE)
    return [(math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)) for x0, y0, x1, y1 in
            (face.box for face in detect_faces(detector, rgb, DETECT_SIDE))]


def _haar(rgb: np.ndarray) -> list[Box]:
    gray = cv2.cvtColor((np.clip(rgb, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    gray = cv2.equalizeHist(gray)  # old prints are often low-contrast
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in found]


def _widen(box: Box, factor: float, width: int, height: int) -> Box:
    x0, y0, x1, y1 = (v / factor for v in box)
    dx, dy = (x1 - x0) * MARGIN, (y1 - y0) * MARGIN
    return (max(0, int(x0 - dx)), max(0, int(y0 - dy)), min(width, int(np.ceil(x1 + dx))),
            min(height, int(np.ceil(y1 + dy))))
