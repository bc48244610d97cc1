"""is_grayscale on real photos: greyscale and toned monochrome versus colour, however muted."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from pipelines.analysis import is_grayscale
from tests.conftest import photo

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
COLOUR_PHOTOS = ("astronaut", "coffee", "chelsea")


def grey(rgb: np.ndarray) -> np.ndarray:
    return np.repeat((rgb @ LUMA)[..., None], 3, axis=2)


Colour = tuple[float, float, float]


def toned(rgb: np.ndarray, shadow: Colour, highlight: Colour) -> np.ndarray:
    """A monochrome print toned from `shadow` colour (black) to `highlight` colour (white)."""
    lightness = (rgb @ LUMA)[..., None]
    return (np.float32(shadow) * (1 - lightness) + np.float32(highlight) * lightness).astype(np.float32)


def sepia(rgb: np.ndarray) -> np.ndarray:
    return toned(rgb, (0.18, 0.10, 0.04), (1.0, 0.94, 0.82))


def cyanotype(rgb: np.ndarray) -> np.ndarray:
    return toned(rgb, (0.02, 0.18, 0.42), (0.94, 0.97, 1.0))


def classic_sepia_filter(rgb: np.ndarray) -> np.ndarray:
    """The common sepia matrix applied to a grey photo; its highlights clip, bending the curve."""
    matrix = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
    return np.clip(grey(rgb) @ matrix.T, 0, 1)


def through_jpeg(rgb: np.ndarray, quality: int = 60) -> np.ndarray:
    encoded = cv2.imencode(".jpg", cv2.cvtColor((rgb * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def grey_scan_with_chroma_noise(rgb: np.ndarray) -> np.ndarray:
    """A grey photo with a slight warm cast and independent per-channel noise, saved as JPEG."""
    rng = np.random.default_rng(0)
    noisy = grey(rgb) + np.float32([0.02, 0.005, -0.02]) + rng.normal(0, 0.02, rgb.shape).astype(np.float32)
    return through_jpeg(np.clip(noisy, 0, 1))


def saturation(rgb: np.ndarray, factor: float) -> np.ndarray:
    neutral = grey(rgb)
    return np.clip(neutral + (rgb - neutral) * factor, 0, 1)


def dominant_hue(rgb: np.ndarray, hue: Colour) -> np.ndarray:
    """60% of the way to a strongly tinted monochrome: a sunset-orange or all-green photo."""
    tint = (rgb @ LUMA)[..., None] * np.float32(hue) * 1.5
    return np.clip(rgb * 0.4 + tint * 0.6, 0, 1).astype(np.float32)


@pytest.mark.parametrize("name", COLOUR_PHOTOS + ("rocket",))
@pytest.mark.parametrize("make", [grey, sepia, cyanotype, classic_sepia_filter, grey_scan_with_chroma_noise])
def test_greyscale_and_toned_monochrome_count_as_grayscale(name, make):
    assert is_grayscale(make(photo(name)))


@pytest.mark.parametrize("name", ("camera", "moon", "coins"))
def test_native_greyscale_photos_count_as_grayscale(name):
    assert is_grayscale(photo(name))


@pytest.mark.parametrize("name", COLOUR_PHOTOS + ("rocket", "immunohistochemistry"))
def test_colour_photos_are_not_grayscale(name):
    assert not is_grayscale(photo(name))


@pytest.mark.parametrize("name", COLOUR_PHOTOS)
def test_half_saturated_colour_photos_are_not_grayscale(name):
    assert not is_grayscale(saturation(photo(name), 0.5))


@pytest.mark.parametrize("name", ("astronaut", "coffee"))
@pytest.mark.parametrize("hue", [(1.0, 0.55, 0.2), (0.3, 0.8, 0.25)], ids=["orange", "green"])
def test_colour_photos_with_a_dominant_hue_are_not_grayscale(name, hue):
    assert not is_grayscale(dominant_hue(photo(name), hue))


def test_the_answer_does_not_depend_on_resolution_and_a_24_mp_photo_costs_little():
    big_sepia = cv2.resize(sepia(photo("chelsea")), (6000, 4000), interpolation=cv2.INTER_LINEAR)
    big_colour = cv2.resize(saturation(photo("chelsea"), 0.5), (6000, 4000), interpolation=cv2.INTER_LINEAR)
    started = time.perf_counter()
    answers = (is_grayscale(big_sepia), is_grayscale(big_colour))
    elapsed = time.perf_counter() - started
    assert answers == (True, False)
    assert elapsed < 1.0  # two 24 MP photos; measured ~0.1 s on 2 busy cores
