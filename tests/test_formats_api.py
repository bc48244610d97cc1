"""Every input format through a real tool, end to end: right size, right way up, right output format."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from tests.conftest import collect
from tests.test_formats import H, W, WRITERS, samples  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

EXPECTED_EXTENSION = {"jpeg": "jpg", "png": "png", "gif": "png", "bmp": "png", "webp": "webp", "tiff": "tif",
                      "heic": "png", "avif": "avif", "tga": "png", "psd": "png", "exr": "png", "hdr": "png",
                      "raw": "png"}
SIXTEEN_BIT = {"png16-exif6", "tiff16-orient6", "exr-openexr", "exr-opencv", "hdr", "dng"}
QUIET = '{"scratchRemoval": false, "denoise": false}'  # the decode/encode path is what is tested here


def upright(rgb: np.ndarray) -> bool:
    block = rgb[2: H // 4 - 2, 2: W // 4 - 2].reshape(-1, 3).mean(axis=0)
    rest = rgb[H // 2:, W // 2:].reshape(-1, 3).mean(axis=0)
    return bool(block[0] > block[1] + 0.3 and block[0] > block[2] + 0.3 and rest[0] < rest[2])


async def test_every_format_through_restore_photo(client, samples):  # noqa: F811
    failures = []
    for name, path in samples.items():
        from aiohttp import FormData

        form = FormData()
        form.add_field("file", path.read_bytes(), filename=path.name)  # the name lies about the format
        form.add_field("settings", QUIET)
        resp = await client.post("/api/v1/tools/restore-photo", data=form)
        if resp.status != 202:
            failures.append((name, resp.status, await resp.text()))
            continue
        events = await collect(client, (await resp.json())["jobId"])
        result = events[-1].data.get("result")
        if result is None or (result["width"], result["height"]) != (W, H):
            failures.append((name, "result", events[-1].data))
            continue
        failures += check_output(name, result, await (await client.get(result["downloadUrl"])).read())
    assert failures == []


def check_output(name: str, result: dict, payload: bytes) -> list[tuple]:
    extension = result["downloadUrl"].rsplit(".", 1)[-1]
    if extension != EXPECTED_EXTENSION[WRITERS[name][0]]:
        return [(name, "extension", extension)]
    decoded = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:  # OpenCV has no AVIF decoder here; Pillow does
        from PIL import Image

        decoded = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))[..., ::-1]
    deep = decoded.dtype == np.uint16
    if deep != (name in SIXTEEN_BIT and extension in ("png", "tif")):
        return [(name, "bit depth", decoded.dtype)]
    rgb = decoded[..., 2::-1].astype(np.float32) / (65535.0 if deep else 255.0)
    return [] if upright(rgb) else [(name, "orientation", rgb[:4, :4].tolist())]
