"""Colorization wired into its tools, with an installed colorization bundle (random DDColor weights
in the official format, through modelscope's real class)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import astronaut, completed, encode, submit
from tests.installed import client_with_models

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(aiohttp_client, settings, color_template):
    return await client_with_models(aiohttp_client, settings, color_template)


def grey(side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(astronaut(side)).convert("L").convert("RGB"))


async def test_colorize_tool_on_a_grey_photo(client):
    result = await completed(client, await submit(client, encode(grey(97), "PNG"), tool="colorize",
                                                  filename="grey.png", settings={"strength": 100}))
    assert result["colorized"] is True and result["isGrayscale"] is True
    assert (result["width"], result["height"]) == (97, 97)
    out = np.asarray(Image.open(io.BytesIO(await (await client.get(result["downloadUrl"])).read())), np.float32)
    assert np.abs(out[..., 0] - out[..., 2]).mean() > 1.0  # it has colour now


async def test_colour_photo_is_left_alone_and_says_why(client):
    result = await completed(client, await submit(client, encode(astronaut(64), "PNG"), tool="colorize",
                                                  filename="colour.png"))
    assert result["colorized"] is False and result["steps"] == []
    assert result["skipped"] == [{"step": "colorize", "reason": "the photo already has colour", "bundle": None}]


async def test_restore_photo_colorizes_last(client):
    settings = {"colorize": True, "colorizeStrength": 60, "denoise": False}
    result = await completed(client, await submit(client, encode(grey(80), "PNG"), filename="old.png",
                                                  settings=settings))
    assert result["steps"] == ["scratch_removal", "colorize"] and result["colorized"] is True
