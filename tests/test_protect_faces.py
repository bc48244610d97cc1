"""Seed 000's promise for restore mode: damage is repaired around faces, faces stay unchanged."""
from __future__ import annotations

import cv2
import numpy as np

from pipelines.base import Picture, StepContext
from pipelines.faces import face_boxes
from pipelines.steps import scratch_removal
from tests.conftest import astronaut


def scratched_portrait() -> np.ndarray:
    rgb = astronaut(512).astype(np.float32) / 255
    cv2.line(rgb, (150, 0), (330, 511), (1.0, 1.0, 1.0), 2)  # crosses the face and the suit
    return rgb


def test_scratch_across_a_face_is_repaired_only_outside_it():
    rgb = scratched_portrait()
    ctx = StepContext(report=lambda f, s: None, is_cancelled=lambda: False)
    [box] = face_boxes(rgb, ctx)  # no photo-restoration bundle here: OpenCV's Haar cascade
    x0, y0, x1, y1 = box
    assert 150 < (x0 + x1) / 2 < 320 and 50 < (y0 + y1) / 2 < 200  # the astronaut's face

    protected = scratch_removal.run(Picture(rgb=rgb), scratch_removal.STEP.checked({"protectFaces": True}), ctx)
    plain = scratch_removal.run(Picture(rgb=rgb), scratch_removal.STEP.checked({}), ctx)
    changed = np.abs(protected.image.rgb - rgb).max(axis=2) > 0
    assert not changed[y0:y1, x0:x1].any()  # the face is bit-identical
    assert changed.sum() > 200  # the scratch over the suit was repaired
    assert np.abs(plain.image.rgb - rgb).max(axis=2)[y0:y1, x0:x1].any()  # without protection it is touched
    assert protected.measurements["protectedFaces"] == [list(box)]
