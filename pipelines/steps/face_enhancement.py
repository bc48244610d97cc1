"""face_enhancement: restore faces with GFPGAN v1.4 and blend them back by fidelity.

For every face RetinaFace finds, on a copy at most :data:`DETECT_MAX_SIDE` px on its long side
(boxes and landmarks scaled back, so a 24 MP photo costs the detector what a 1 MP one does):

1. align: the 5-point similarity (rotation, uniform scale, shift) that best maps its landmarks
   onto the FFHQ 512 template, estimated and warped as facexlib does;
2. restore the 512² crop with GFPGANv1Clean (see :mod:`pipelines.models.gfpgan`);
3. parse the restored face with ParseNet and keep skin and features (not hair, neck, clothes or
   background: those stay the photo's own), feathered so the face joins its surroundings smoothly;
4. paste back through the inverse similarity, weighted by the mask and by fidelity.

Fidelity (0-1): inside the mask the photo moves towards the restored face by a share
``s = 1 - fidelity²``::

    result = photo + mask * (1 - fidelity²) * (restored - photo)

fidelity 0 gives GFPGAN's face, the default 0.7 a 51 % mix, 1 the photo untouched. The distance
to the photo, (1 - fidelity²) * |mask * (restored - photo)|, falls strictly as fidelity rises.
Squared because a linear share would leave the default at a faint 30 % restoration. The mix is
made at full resolution against the photo itself, not against its 512² crop, so what fidelity
keeps of the original keeps its real sharpness.

``upscale`` 2 resizes the whole photo with Lanczos first (GFPGANer without a background
upsampler) and pastes the faces at twice the size. Alpha follows the same resize.

torch and facexlib are imported inside functions only: the server process imports the step registry.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping

import cv2
import numpy as np

from pipelines.base import Picture, Step, StepContext, StepOutcome
from pipelines.faces import DETECTOR_ID
from pipelines.models.face_helpers import DetectedFace, detect_faces, parse_face
from pipelines.params import Param

BUNDLE = "photo-restoration"
RESTORER_ID, PARSER_ID = "gfpgan-v1.4", "parsenet"
DETECT_MAX_SIDE = 1280
FACE_SIZE = 512
# facexlib's standard 5 landmarks of an FFHQ face in 512x512 (eyes, nose tip, mouth corners).
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]], np.float32)
CROP_BORDER_RGB = (132 / 255, 133 / 255, 135 / 255)  # facexlib's grey (135, 133, 132 in BGR)
# ParseNet labels pasted back: facexlib's MASK_COLORMAP (skin, brows, eyes, glasses, ears, earring,
# nose, mouth, lips; label 15). Neck 14, cloth 16, hair 17, hat 18 and background 0 stay the photo's.
PASTE_LABELS = (*range(1, 14), 15)
# facexlib blurs the mask twice with sigma 11: one blur with sigma 11·√2 is the same.
FEATHER_SIGMA = 11 * math.sqrt(2)
CROP_EDGE_PX = 10  # masked off before the blur so nothing is pasted from the crop's padding
EDGE_TAPER_PX = 24  # then faded to exactly 0 at the crop edge, smoothly
DETECT_SHARE = 0.1  # of this step's progress


FIDELITY = Param("fidelity", "number", 0.7, "Higher keeps more of the original face; lower restores more "
                 "strongly.", 0, 1)
ONLY_CENTER_FACE = Param("onlyCenterFace", "boolean", False, "Restore only the face nearest the centre.")
UPSCALE = Param("upscale", "integer", 1, "Upscale the whole photo by this factor.", choices=(1, 2))
PARAMS = (FIDELITY, ONLY_CENTER_FACE, UPSCALE)


def restoration_strength(fidelity: float) -> float:
    """The share of the restored face in the result inside the mask (see the module notes)."""
    return 1.0 - fidelity**2


def run(image: Picture, params: Mapping[str, Any], ctx: StepContext) -> StepOutcome:
    detector = ctx.model(DETECTOR_ID, BUNDLE)
    ctx.progress(0.0, "Detecting faces...")
    faces = _aligned(detect_faces(detector, image.rgb, DETECT_MAX_SIDE), params["onlyCenterFace"], image)
    ctx.check_cancelled()
    factor = params["upscale"]
    if not faces and factor == 1:
        return StepOutcome(image, measurements=_measurements([], params))
    canvas = upscaled(image.rgb, factor)
    if faces:
        _enhance_faces(image.rgb, canvas, faces, params, ctx)
    alpha = image.alpha
    if alpha is not None and factor != 1:
        alpha = np.clip(upscaled(alpha, factor), 0.0, 1.0)  # Lanczos overshoots
    result = replace(image, rgb=np.clip(canvas, 0.0, 1.0), alpha=alpha)
    return StepOutcome(result, measurements=_measurements([face for face, _ in faces], params))


def _aligned(faces: list[DetectedFace], only_center_face: bool,
             image: Picture) -> list[tuple[DetectedFace, np.ndarray]]:
    """Faces with their alignment matrices; landmarks no similarity fits (all on one spot) are dropped."""
    if only_center_face and faces:
        faces = [center_face(faces, image.width, image.height)]
    pairs = [(face, alignment_matrix(face.landmarks)) for face in faces]
    return [(face, matrix) for face, matrix in pairs if matrix is not None]


def center_face(faces: list[DetectedFace], width: int, height: int) -> DetectedFace:
    """The face whose box centre is nearest the photo's centre (facexlib's get_center_face)."""
    def distance(face: DetectedFace) -> float:
        x0, y0, x1, y1 = face.box
        return math.hypot((x0 + x1 - width) / 2, (y0 + y1 - height) / 2)
    return min(faces, key=distance)


def _enhance_faces(source: np.ndarray, canvas: np.ndarray, faces: list[tuple[DetectedFace, np.ndarray]],
                   params: Mapping[str, Any], ctx: StepContext) -> None:
    """Restore each face from ``source`` and paste it into ``canvas`` (in place)."""
    from pipelines.models.gfpgan import restore_face
    from pipelines.precision import precision_of

    restorer, parser = ctx.model(RESTORER_ID, BUNDLE), ctx.model(PARSER_ID, BUNDLE)
    # The loaders' decisions; fp32 for networks no loader decided for (built by hand, as in tests).
    precision = precision_of(restorer, ctx.device, channels_last=False)
    parse_precision = precision_of(parser, ctx.device, channels_last=False)
    strength = restoration_strength(params["fidelity"])
    for index, (_, matrix) in enumerate(faces):
        ctx.progress(DETECT_SHARE + (1 - DETECT_SHARE) * index / len(faces),
                     f"Enhancing face {index + 1}/{len(faces)}")
        ctx.check_cancelled()
        restored = restore_face(restorer, align_face(source, matrix), precision)
        mask = feathered_mask(parse_face(parser, restored, parse_precision))
        paste_face(canvas, restored, mask * strength, inverse_alignment(matrix, params["upscale"]))
    ctx.progress(1.0, f"Enhanced {len(faces)} face{'s' if len(faces) != 1 else ''}")


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray | None:
    """The 2x3 similarity taking the 5 landmarks onto the FFHQ 512 template, or None if none fits.

    LMEDS as in facexlib: it matches skimage's SimilarityTransform on good landmarks and shrugs
    off one wild point.
    """
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), FFHQ_TEMPLATE_512,
                                            method=cv2.LMEDS)
    return None if matrix is None or not np.all(np.isfinite(matrix)) else matrix


def align_face(rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The 512² aligned crop; outside the photo it is facexlib's neutral grey."""
    return cv2.warpAffine(rgb, matrix, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=CROP_BORDER_RGB)


def inverse_alignment(matrix: np.ndarray, upscale: int) -> np.ndarray:
    """Crop pixels -> pixels of the photo resized by ``upscale``.

    cv2.resize puts pixel centres at ``s·x + (s - 1)/2``: hence the shift (facexlib adds s/2,
    half a pixel too much at 2x).
    """
    inverse = cv2.invertAffineTransform(matrix) * upscale
    inverse[:, 2] += (upscale - 1) / 2
    return inverse


def feathered_mask(labels: np.ndarray) -> np.ndarray:
    """Float32 mask in [0, 1] of the face's skin and features, feathered, exactly 0 at the crop edge."""
    mask = np.isin(labels, PASTE_LABELS).astype(np.float32)
    edge = CROP_EDGE_PX
    mask[:edge], mask[-edge:], mask[:, :edge], mask[:, -edge:] = 0, 0, 0, 0
    mask = cv2.GaussianBlur(mask, (0, 0), FEATHER_SIGMA, borderType=cv2.BORDER_CONSTANT)
    return mask * _edge_taper(mask.shape)


def _edge_taper(shape: tuple[int, ...]) -> np.ndarray:
    """1 inside, falling smoothly (smoothstep) to 0 over EDGE_TAPER_PX at every edge."""
    def ramp(length: int) -> np.ndarray:
        distance = np.minimum(np.arange(length), np.arange(length)[::-1]).astype(np.float32)
        t = np.clip(distance / EDGE_TAPER_PX, 0.0, 1.0)
        return t * t * (3 - 2 * t)
    return ramp(shape[0])[:, None] * ramp(shape[1])[None, :]


def paste_face(canvas: np.ndarray, face: np.ndarray, alpha: np.ndarray, inverse: np.ndarray) -> None:
    """Blend ``face`` into ``canvas`` in place: ``canvas += alpha · (face - canvas)`` after warping
    face and alpha by ``inverse``; only the face's footprint is touched (no full-size warps)."""
    x0, y0, x1, y1 = _footprint(inverse, face.shape[:2], canvas.shape[:2])
    if x1 <= x0 or y1 <= y0:
        return
    shifted = inverse.copy()
    shifted[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    face = _anti_aliased(face, inverse)
    warped_face = cv2.warpAffine(face, shifted, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    warped_alpha = cv2.warpAffine(alpha, shifted, size, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    region = canvas[y0:y1, x0:x1]
    region += warped_alpha * (warped_face - region)


def _footprint(inverse: np.ndarray, crop_shape: tuple[int, int], canvas_shape: tuple[int, int]) -> tuple[int, ...]:
    height, width = crop_shape
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], np.float64)
    mapped = corners @ inverse.T
    x0, y0 = np.floor(mapped.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(mapped.max(axis=0)).astype(int) + 1
    return max(0, x0), max(0, y0), min(canvas_shape[1], x1), min(canvas_shape[0], y1)


def _anti_aliased(face: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Blur a face that will shrink on the way back, as skimage's resize(anti_aliasing=True) does;
    bilinear sampling alone would alias GFPGAN's fine detail."""
    scale = math.sqrt(abs(np.linalg.det(inverse[:, :2])))
    if scale >= 1:
        return face
    return cv2.GaussianBlur(face, (0, 0), (1 / scale - 1) / 2)


def upscaled(pixels: np.ndarray, factor: int) -> np.ndarray:
    """A float32 copy resized ``factor`` times with Lanczos (a plain copy at 1)."""
    if factor == 1:
        return pixels.astype(np.float32, copy=True)
    size = (pixels.shape[1] * factor, pixels.shape[0] * factor)
    return cv2.resize(pixels, size, interpolation=cv2.INTER_LANCZOS4)


def _measurements(faces: list[DetectedFace], params: Mapping[str, Any]) -> dict[str, Any]:
    """Boxes are in the result's pixels (so doubled at upscale 2)."""
    return {"facesEnhanced": len(faces), "fidelity": params["fidelity"],
            "faces": [{"box": [round(value * params["upscale"], 1) for value in face.box],
                       "score": round(face.score, 4)} for face in faces]}


STEP = Step(name="face_enhancement", stage="Enhancing faces...", run=run, params=PARAMS, bundle=BUNDLE, weight=3.0)
