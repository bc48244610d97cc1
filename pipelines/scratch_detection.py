"""Where the scratches are: thin, long, isolated lines, found without a model.

Detection works on luminance pooled to a long side of at most DETECT_LONG_SIDE (max-pooled for
bright lines, min-pooled for dark ones, so one-pixel lines survive). A pixel is repaired only if:

1. it lies on a thin bright (top-hat) or dark (black-hat) line, narrower than TOPHAT_SIZE;
2. the line runs straight for LOCAL_LENGTH pixels, beats both flanks by the contrast threshold
   and has no opposite-polarity line alongside (a pole, wire or tripod leg is a bright core with
   dark edges; a scratch on a print is not);
3. the line continues, straight and mostly unbroken, over half the photo's short side with no
   parallel twin nearby (ruled lines, lattices, brick joints and wood grain come in families).

Test 3 is global, so the work runs in two passes over bands: pass one computes the local
evidence band by band, keeps it, pools it into a small whole-photo map and finds the long lines
there; pass two keeps, band by band, the evidence that lies on a long line. Bands overlap by more
than any filter reaches, so the evidence, and the mask, equal whole-image processing. The repair
itself is in :mod:`pipelines.steps.scratch_removal`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np

from pipelines.analysis import estimate_noise_sigma
from pipelines.base import StepContext
from pipelines.imaging.pixels import from_unit_float

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
Rows = tuple[int, int]  # [start, stop)
Box = tuple[int, int, int, int]
LineMaps = tuple[np.ndarray, np.ndarray]  # bright, dark

# Photos are analysed at this long side at most, so a 1-4 px scratch on a 2000 px scan and a
# 4-16 px one on an 8000 px scan look alike to every size below (all in detection pixels).
DETECT_LONG_SIDE = 2048
TOPHAT_SIZE = 7  # an OpenCV ellipse: lines up to ~5 px wide count as thin
LOCAL_LENGTH = 21  # local evidence: a straight run this long ...
FLANK = 4  # ... standing out from the runs this far to either side
# A parallel opposite-polarity line this close marks a shaded object (4 missed the dark edges of
# the tripod legs in `camera` enlarged to 768 px: 1.0% of the photo flagged).
FRINGE = 6
FRINGE_CONTRAST = 22
EDGE = FLANK + 1  # a run along the photo's edge has one flank: evidence this close is dropped
# Minimum contrast in 0..255 luminance units, and in noise standard deviations (noise seldom
# fakes a 21 px straight run, but heavy grain raises the bar). On 16 clean scikit-image photos:
# 50 flagged the edge of the rocket's gantry (0.38% of the photo) and a shelf in
# stereo_motorcycle (0.34%); 55 and 60 flagged nothing; 70 lost ~1 dB of repair on damaged ones.
MIN_CONTRAST = 60
NOISE_CONTRAST = 2.5
# Film grain breaks a scratch's straight run (its weakest pixel drops, its flanks' strongest rises):
# at sigma 13 the sample in examples/ had 0.00% detected. Above this noise level, detection (not the
# repaired pixels) reads a copy of the luminance smoothed by NL-means, which keeps long thin lines
# because they repeat along their length. Clean photos (below the level) are read exactly as before.
GRAIN_SIGMA = 3.0
GRAIN_H_PER_SIGMA = 1.3
GRAIN_SEARCH, GRAIN_PATCH = 21, 7  # NL-means windows: 13 px of reach, included in EVIDENCE_REACH

COARSE_LONG_SIDE = 256  # the long-line test runs on evidence max-pooled to this long side
# A scratch must cover MIN_COVERAGE of a straight run of LONG_FRACTION x the photo's short side
# and MIN_LONG_RUN detection pixels; runs PARALLEL_GAP..PARALLEL_REACH coarse pixels to either
# side may cover at most MAX_PARALLEL. Runs of 0.3 of the long side let the tripod in `camera`
# through; coverage 0.6 let wood grain in `coffee` through (0.5-0.8% of the photo); without the
# 128 px minimum, a rocket, a cup's rim and a shelf were flagged in 128-256 px versions; parallel
# runs only 3 away let a line of text in `page` at 1024 px through.
LONG_FRACTION = 0.5
MIN_LONG_RUN = 128
MIN_COVERAGE = 0.75
PARALLEL_GAP = 3
PARALLEL_REACH = 8
MAX_PARALLEL = 0.3
ANGLE_DRIFT = 2.5  # angular step, in pixels of sideways drift over a run's length

BAND_ROWS = 256
# Rows of context per band. Evidence: NL-means 13 (grainy photos) + top-hat 6 + run 10 + fringe 7
# + re-growth along the run 10 + final dilation 1 = 47, rounded up. Telea: measured identical to
# one-piece output.
EVIDENCE_REACH = 56
INPAINT_REACH = 16
SQUARE3 = np.ones((3, 3), np.uint8)


def scratch_mask(
    rgb: np.ndarray, protect_boxes: Sequence[Sequence[float]] = (), band_rows: int = BAND_ROWS
) -> np.ndarray:
    """The full-resolution repair mask `run` uses, assembled band by band (tests, diagnostics)."""
    quiet = StepContext(report=lambda fraction, stage: None, is_cancelled=lambda: False)
    full = np.zeros(rgb.shape[:2], bool)
    for band in band_masks(rgb, protect_boxes, quiet, "", band_rows):
        first = band.rows[0] + band.owned.start
        full[first:band.rows[0] + band.owned.stop] = band.mask[band.owned]
    return full


@dataclass(frozen=True)
class _Geometry:
    height: int
    width: int
    factor: int  # full-resolution pixels per detection pixel
    coarse_factor: int  # detection pixels per coarse pixel
    band_rows: int  # detection rows per band, a multiple of coarse_factor

    @classmethod
    def of(cls, height: int, width: int, band_rows: int) -> "_Geometry":
        factor = -(-max(height, width) // DETECT_LONG_SIDE)
        coarse_factor = -(-max(height, width) // (factor * COARSE_LONG_SIDE))
        return cls(height, width, factor, coarse_factor, -(-band_rows // coarse_factor) * coarse_factor)

    @property
    def detect_height(self) -> int:
        return -(-self.height // self.factor)

    @property
    def detect_width(self) -> int:
        return -(-self.width // self.factor)

    def bands(self) -> list[Rows]:
        """Detection-row ranges covering the photo; starts are coarse-aligned."""
        starts = range(0, self.detect_height, self.band_rows)
        return [(start, min(start + self.band_rows, self.detect_height)) for start in starts]


@dataclass(frozen=True)
class BandMask:
    rows: Rows  # full-resolution rows covered by `mask`: the band plus context
    owned: slice  # the rows of `mask` that belong to the band itself
    mask: np.ndarray  # bool
    factor: int  # full-resolution pixels per detection pixel, for the repair's reach


def band_masks(rgb: np.ndarray, protect_boxes: Sequence[Sequence[float]], ctx: StepContext, stage: str,
               band_rows: int = BAND_ROWS) -> Iterator[BandMask]:
    """Both passes; yields each band's mask and reports progress once the caller is done with it."""
    geometry = _Geometry.of(rgb.shape[0], rgb.shape[1], band_rows)
    sigma = estimate_noise_sigma(rgb)
    detection = _Detection(geometry, int(round(max(MIN_CONTRAST, NOISE_CONTRAST * sigma))),
                           GRAIN_H_PER_SIGMA * sigma if sigma >= GRAIN_SIGMA else 0.0)
    evidence, lines = _evidence_and_long_lines(rgb, detection, ctx, stage)
    boxes = whole_pixel_boxes(protect_boxes)
    bands = geometry.bands()
    for index, band in enumerate(bands):
        ctx.check_cancelled()
        yield _repair_mask(detection, evidence, lines, band, boxes)
        ctx.progress(0.3 + 0.7 * (index + 1) / len(bands), stage)


@dataclass(frozen=True)
class _Detection:
    geometry: _Geometry
    contrast: int  # 0..255 luminance units
    grain_h: float  # NL-means strength for the detection copy; 0 on clean photos


def _evidence_and_long_lines(
    rgb: np.ndarray, detection: _Detection, ctx: StepContext, stage: str
) -> tuple[LineMaps, LineMaps]:
    """First pass: the whole photo's local evidence per polarity (kept, at detection resolution,
    so pass two slices it instead of recomputing it), and the long isolated lines on its pooled map."""
    geometry = detection.geometry
    parts: list[list[np.ndarray]] = [[], []]
    pooled: list[list[np.ndarray]] = [[], []]
    bands = geometry.bands()
    for index, band in enumerate(bands):
        ctx.check_cancelled()
        for polarity, evidence in enumerate(_band_evidence(rgb, detection, band)):
            parts[polarity].append(evidence)
            pooled[polarity].append(_pool(evidence, geometry.coarse_factor, cv2.dilate))
        ctx.progress(0.3 * (index + 1) / len(bands), stage)
    bright, dark = (np.vstack(polarity) for polarity in parts)
    coarse = np.dstack([np.vstack(polarity) for polarity in pooled])
    shortest = MIN_LONG_RUN / geometry.coarse_factor
    length = int(round(max(LONG_FRACTION * min(coarse.shape[:2]), shortest))) | 1
    lines = _long_lines(coarse, length)
    return (bright, dark), (lines[..., 0], lines[..., 1])


def _repair_mask(
    detection: _Detection, evidence: LineMaps, lines: LineMaps, band: Rows, boxes: Sequence[Box]
) -> BandMask:
    """Second pass: the full-resolution mask of a band plus INPAINT_REACH rows either side."""
    geometry = detection.geometry
    start, stop = max(0, band[0] - INPAINT_REACH), min(geometry.detect_height, band[1] + INPAINT_REACH)
    on_lines = np.zeros_like(evidence[0][start:stop])
    for polarity_evidence, polarity_lines in zip(evidence, lines):
        on_lines |= polarity_evidence[start:stop] & _coarse_rows(polarity_lines, geometry, start, stop)
    rows = (start * geometry.factor, min(geometry.height, stop * geometry.factor))
    mask = _upsample(cv2.dilate(on_lines, SQUARE3), geometry.factor)[: rows[1] - rows[0], : geometry.width]
    for x0, y0, x1, y1 in boxes:
        mask[max(0, y0 - rows[0]):max(0, y1 - rows[0]), x0:x1] = 0
    owned_stop = min(geometry.height, band[1] * geometry.factor) - rows[0]
    owned = slice(band[0] * geometry.factor - rows[0], owned_stop)
    return BandMask(rows, owned, mask.astype(bool), geometry.factor)


def _band_evidence(rgb: np.ndarray, detection: _Detection, band: Rows) -> LineMaps:
    """Local thin-line evidence (uint8 0/1) for the detection rows of `band`."""
    geometry = detection.geometry
    start, stop = max(0, band[0] - EVIDENCE_REACH), min(geometry.detect_height, band[1] + EVIDENCE_REACH)
    luma = rgb[start * geometry.factor:stop * geometry.factor] @ LUMA
    luma = from_unit_float(luma, np.uint8)
    element = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (TOPHAT_SIZE, TOPHAT_SIZE))
    bright, dark = (_ungrained(_pool(luma, geometry.factor, pool), detection.grain_h) for pool in (cv2.dilate, cv2.erode))
    responses = (cv2.morphologyEx(bright, cv2.MORPH_TOPHAT, element),
                 cv2.morphologyEx(dark, cv2.MORPH_BLACKHAT, element))
    evidence = _local_line_evidence(responses, detection.contrast)
    for polarity in evidence:  # a run along the photo's edge has one flank only: no evidence there
        polarity[: max(0, EDGE - start)] = polarity[max(0, geometry.detect_height - EDGE - start):] = 0
        polarity[:, :EDGE] = polarity[:, -EDGE:] = 0
    keep = slice(band[0] - start, band[1] - start)
    return evidence[0][keep], evidence[1][keep]


def _ungrained(luma: np.ndarray, h: float) -> np.ndarray:
    if h <= 0:
        return luma
    return cv2.fastNlMeansDenoising(luma, None, h=float(h), templateWindowSize=GRAIN_PATCH,
                                    searchWindowSize=GRAIN_SEARCH)


def _local_line_evidence(responses: LineMaps, contrast: int) -> LineMaps:
    tolerant = [cv2.dilate(response, SQUARE3) for response in responses]  # 1 px of slack for fringes
    found = [np.zeros_like(response) for response in responses]
    for angle in _angles(LOCAL_LENGTH):
        run = _line_kernel(LOCAL_LENGTH, angle)
        centres = [_isolated_run_centres(response, run, angle, contrast) for response in responses]
        fringe = _line_kernel(2 * FRINGE + 1, angle + np.pi / 2)
        alongside = [cv2.dilate(cv2.erode(spread, run), fringe) >= FRINGE_CONTRAST for spread in tolerant]
        for polarity in (0, 1):
            kept = (centres[polarity] & ~alongside[1 - polarity]).astype(np.uint8)
            found[polarity] |= cv2.dilate(kept, run)
    bright, dark = (hits & (response >= contrast // 2) for hits, response in zip(found, responses))
    return bright, dark


def _isolated_run_centres(response: np.ndarray, run: np.ndarray, angle: float, contrast: int) -> np.ndarray:
    """Centres of straight runs whose weakest pixel beats the runs on both flanks by `contrast`."""
    # One pixel of sideways slack: a 1 px scratch and the run's own rasterisation rarely agree.
    weakest = cv2.erode(cv2.dilate(response, _line_kernel(3, angle + np.pi / 2)), run)
    flanks = np.zeros((2 * FLANK + 1, 2 * FLANK + 1), np.uint8)
    # The run goes along (x, y) = (cos, -sin); its flanks lie along (sin, cos).
    down, right = (int(round(FLANK * value)) for value in (np.cos(angle), np.sin(angle)))
    flanks[FLANK + down, FLANK + right] = flanks[FLANK - down, FLANK - right] = 1
    return cv2.subtract(weakest, cv2.dilate(weakest, flanks)) >= contrast


def _long_lines(coarse: np.ndarray, length: int) -> np.ndarray:
    """Pixels of `coarse` (H x W x 2 polarities, 0/1) on long, isolated straight runs."""
    found = np.zeros_like(coarse)
    if not coarse.any():
        return found
    support = cv2.dilate(coarse, SQUARE3) * np.uint8(255)
    for slope in np.linspace(-1.0, 1.0, max(3, int(np.ceil(2 * length / ANGLE_DRIFT)) | 1)):
        found |= _long_lines_sheared(support, slope, length)  # within 45 degrees of horizontal
        found |= _long_lines_sheared(support.transpose(1, 0, 2), slope, length).transpose(1, 0, 2)
    return found


def _long_lines_sheared(support: np.ndarray, slope: float, length: int) -> np.ndarray:
    """Runs along `slope` (rows per column): shear them onto rows, filter along rows, shear back.

    A shear by whole pixels is a lossless re-indexing, several times cheaper than a rotation.
    """
    height, width = support.shape[:2]
    stretch = np.hypot(1.0, slope)  # a shear stretches lengths along the run and gaps across it
    gap = int(np.ceil(PARALLEL_GAP * stretch))
    shifts = np.round(np.arange(width) * slope).astype(np.intp)
    rows = np.arange(height)[:, None] + (shifts - shifts.min() + gap)[None, :]
    cols = np.broadcast_to(np.arange(width), rows.shape)
    sheared = np.zeros((height + int(np.ptp(shifts)) + 2 * gap, width, 2), np.uint8)
    sheared[rows, cols] = support
    run = max(5, int(round(length / stretch))) | 1  # columns spanned by `length`
    covered = cv2.blur(sheared, (run, 1), borderType=cv2.BORDER_CONSTANT)  # 255 = fully covered
    reach = int(np.ceil(PARALLEL_REACH * stretch))
    twins = np.zeros((2 * reach + 1, 1), np.uint8)
    twins[: reach - gap + 1] = twins[reach + gap:] = 1  # offsets gap..reach on either side
    parallel = cv2.dilate(covered, twins)
    hits = ((covered >= 255 * MIN_COVERAGE) & (parallel <= 255 * MAX_PARALLEL)).astype(np.uint8)
    if not hits.any():
        return np.zeros_like(support)
    return cv2.dilate(hits, np.ones((1, run), np.uint8))[rows, cols]


def _coarse_rows(lines: np.ndarray, geometry: _Geometry, start: int, stop: int) -> np.ndarray:
    """Detection rows [start, stop) of a coarse map, upsampled to detection resolution."""
    step = geometry.coarse_factor
    upsampled = _upsample(lines[start // step: -(-stop // step)], step)
    offset = start % step
    return upsampled[offset:offset + stop - start, : geometry.detect_width]


def _upsample(values: np.ndarray, factor: int) -> np.ndarray:
    return values if factor == 1 else np.repeat(np.repeat(values, factor, axis=0), factor, axis=1)


def _pool(values: np.ndarray, factor: int, extreme: Callable[..., np.ndarray]) -> np.ndarray:
    """Block maximum (extreme=cv2.dilate) or minimum (cv2.erode) over factor x factor blocks."""
    if factor == 1:
        return values
    block = np.ones((factor, factor), np.uint8)  # anchored top-left: each pixel sees its block
    return np.ascontiguousarray(extreme(values, block, anchor=(0, 0))[::factor, ::factor])


def _angles(length: int) -> np.ndarray:
    return np.linspace(0.0, np.pi, max(8, int(np.ceil(np.pi * length / ANGLE_DRIFT))), endpoint=False)


def _line_kernel(length: int, angle: float) -> np.ndarray:
    centre = (length - 1) / 2
    dx, dy = centre * np.cos(angle), -centre * np.sin(angle)
    ends = [(int(round(centre + sign * dx)), int(round(centre + sign * dy))) for sign in (-1, 1)]
    return cv2.line(np.zeros((length, length), np.uint8), ends[0], ends[1], 1, 1)


def whole_pixel_boxes(boxes: Sequence[Sequence[float]]) -> list[Box]:
    """[x0, y0, x1, y1] pixel boxes, widened to whole pixels and clipped at zero."""
    whole = [(np.floor(x0), np.floor(y0), np.ceil(x1), np.ceil(y1)) for x0, y0, x1, y1 in boxes]
    return [(max(0, int(x0)), max(0, int(y0)), max(0, int(x1)), max(0, int(y1))) for x0, y0, x1, y1 in whole]
