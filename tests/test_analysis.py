"""is_grayscale and tone on real photos: greyscale and toned monochrome versus colour, however muted."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines.analysis import is_grayscale, read_tone, tone
from tests.conftest import encode, photo

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


def selenium(rgb: np.ndarray) -> np.ndarray:
    """Selenium toning: purple-brown shadows, near-neutral highlights."""
    return toned(rgb, (0.20, 0.08, 0.14), (0.97, 0.95, 0.94))


def classic_sepia_filter(rgb: np.ndarray) -> np.ndarray:
    """The common sepia matrix applied to a grey photo; its highlights clip, bending the curve."""
    matrix = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
    return np.clip(grey(rgb) @ matrix.T, 0, 1)


def through_jpeg(rgb: np.ndarray, quality: int = 60) -> np.ndarray:
    encoded = cv2.imencode(".jpg", cv2.cvtColor((rgb * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def through_jpeg_420(rgb: np.ndarray, quality: int = 75) -> np.ndarray:
    """Saved by Pillow with 4:2:0 chroma subsampling (chroma at half resolution), decoded again."""
    data = encode((rgb * 255).round().astype(np.uint8), "JPEG", quality=quality, subsampling=2)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0


def with_chroma_noise(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Independent Gaussian noise per channel, `sigma` in 0..255 units."""
    noise = np.random.default_rng(seed).normal(0, sigma / 255, rgb.shape).astype(np.float32)
    return np.clip(rgb + noise, 0, 1)


def grey_scan_with_chroma_noise(rgb: np.ndarray) -> np.ndarray:
    """A grey photo with a slight warm cast and independent per-channel noise, saved as JPEG."""
    rng = np.random.default_rng(0)
    noisy = grey(rgb) + np.float32([0.02, 0.005, -0.02]) + rng.normal(0, 0.02, rgb.shape).astype(np.float32)
    return through_jpeg(np.clip(noisy, 0, 1))


def with_scratches(rgb: np.ndarray, seed: int = 1) -> np.ndarray:
    """Three white and three dark anti-aliased scratches, 1-3 px wide, wandering down the frame."""
    rng = np.random.default_rng(seed)
    out = np.ascontiguousarray(rgb * 255, dtype=np.float32)
    height, width = out.shape[:2]
    for index in range(6):
        colour = (250, 250, 250) if index % 2 == 0 else (20, 15, 10)
        xs = np.linspace(rng.uniform(0, width), rng.uniform(0, width), 8) + rng.normal(0, width * 0.02, 8)
        points = np.stack([xs, np.linspace(0, height, 8)], axis=1).astype(np.int32)
        cv2.polylines(out, [points], False, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return out / 255


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


@pytest.mark.parametrize("name", COLOUR_PHOTOS)
def test_quarter_saturated_colour_photos_are_colour(name):
    # The plain percentile this replaced read chelsea at 25% saturation as grey (3.9 < 4.0).
    muted = saturation(photo(name), 0.25)
    assert not is_grayscale(muted)
    assert not is_grayscale(through_jpeg_420(with_chroma_noise(muted, 6)))


def test_a_mostly_black_colour_photo_is_colour():
    # Coloured galaxies on a black sky: under 5% of the pixels carry colour. Read as grey before.
    assert tone(photo("hubble_deep_field")) == "colour"


@pytest.mark.parametrize("name", COLOUR_PHOTOS + ("rocket",))
@pytest.mark.parametrize("make, expected", [(grey, "grey"), (sepia, "sepia"), (cyanotype, "cyanotype"),
                                            (selenium, "toned")], ids=["grey", "sepia", "cyanotype", "selenium"])
def test_noisy_jpeg_monochrome_prints_keep_their_tone(name, make, expected):
    # Chroma noise of sigma 6 per channel, then 4:2:0 JPEG: per-pixel chroma is all over the place.
    print_scan = through_jpeg_420(with_chroma_noise(make(photo(name)), 6))
    assert is_grayscale(print_scan)
    assert tone(print_scan) == expected


@pytest.mark.parametrize("jpeg", [False, True], ids=["png", "jpeg"])
def test_a_noisy_scratched_sepia_portrait_reads_as_sepia(jpeg):
    # White scratches are neutral on a cream print and the clipped highlights bend the curve:
    # the plain percentile this replaced read this portrait as colour (7.0 against 4.0).
    portrait = with_chroma_noise(with_scratches(classic_sepia_filter(photo("astronaut"))), 10, seed=3)
    if jpeg:
        portrait = through_jpeg_420(portrait)
    assert tone(portrait) == "sepia"


@pytest.mark.parametrize("name", COLOUR_PHOTOS + ("rocket",))
@pytest.mark.parametrize("make, expected", [(grey, "grey"), (grey_scan_with_chroma_noise, "grey"), (sepia, "sepia"),
                                            (classic_sepia_filter, "sepia"), (cyanotype, "cyanotype"),
                                            (selenium, "toned"), (lambda rgb: rgb, "colour")],
                         ids=["grey", "grey_scan", "sepia", "classic_sepia", "cyanotype", "selenium", "colour"])
def test_tone_labels(name, make, expected):
    reading = read_tone(make(photo(name)))
    assert reading.tone == expected
    assert reading.is_grayscale == (expected != "colour")


@pytest.mark.parametrize("name", ("camera", "moon", "coins"))
def test_native_greyscale_photos_are_grey(name):
    assert tone(photo(name)) == "grey"


def test_the_answer_does_not_depend_on_resolution():
    big_sepia = cv2.resize(sepia(photo("chelsea")), (6000, 4000), interpolation=cv2.INTER_LINEAR)
    big_colour = cv2.resize(saturation(photo("chelsea"), 0.5), (6000, 4000), interpolation=cv2.INTER_LINEAR)
    assert (is_grayscale(big_sepia), is_grayscale(big_colour)) == (True, False)
    assert (tone(big_sepia), tone(big_colour)) == ("sepia", "colour")
