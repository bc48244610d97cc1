"""enhance and upscale through the real app, with the real Real-ESRGAN x4plus weights."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import astronaut, collect, completed, encode, submit
from tests.installed import client_with_models

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(aiohttp_client, settings, model_template):
    return await client_with_models(aiohttp_client, settings, model_template)


async def download(client, url: str) -> Image.Image:
    resp = await client.get(url)
    assert resp.status == 200
    return Image.open(io.BytesIO(await resp.read()))


async def test_enhance_auto_scale_and_progress_per_tile(client):
    body = await submit(client, encode(astronaut(40)), tool="enhance", filename="small.jpg")
    events = await collect(client, body["jobId"])
    assert any(e.data["stage"].startswith("Enhancing tile") for e in events)
    result = events[-1].data["result"]
    assert (result["width"], result["height"]) == (160, 160)  # long side <= 512: 4x
    assert result["steps"] == ["upscale"] and result["results"][0]["resultType"] == "enhanced"
    assert result["upscale"]["precision"] in ("bf16", "fp32")


async def test_upscale_any_outscale_and_scale_one_still_enhances(client):
    result = await completed(client, await submit(client, encode(astronaut(40)), tool="upscale",
                                                   settings={"outscale": 2.5}))
    assert (result["width"], result["height"]) == (100, 100)
    original = astronaut(40).astype(np.float32)
    same = await completed(client, await submit(client, encode(astronaut(40), "PNG"), tool="enhance",
                                                 filename="a.png", settings={"scale": 1}))
    out = np.asarray(await download(client, same["downloadUrl"]), np.float32)
    assert out.shape == original.shape and np.abs(out - original).mean() > 0.5  # it did change


async def test_enhance_at_scale_one_shrinks_the_work_as_oversampling_says(client, settings):
    photo = encode(astronaut(128), "PNG")
    shrunk = await completed(client, await submit(client, photo, tool="enhance", filename="a.png",
                                                   settings={"scale": "1"}))
    full = await completed(client, await submit(client, photo, tool="enhance", filename="a.png",
                                                 settings={"scale": "1", "oversampling": 4}))
    assert (shrunk["upscale"]["inputShrink"], shrunk["upscale"]["windowShrink"]) == (2, 2)  # the default, 2
    assert (full["upscale"]["inputShrink"], full["upscale"]["windowShrink"]) == (1, 4)
    assert (shrunk["width"], shrunk["height"]) == (full["width"], full["height"]) == (128, 128)
    body = await submit(client, photo, tool="upscale", filename="a.png", expect=400, settings={"oversampling": 3})
    assert body["error"]["fields"][0]["field"] == "oversampling"
    # The worker kept x4plus's bf16-or-fp32 decision for the next worker to read back.
    decisions = json.loads((settings.data_dir / "precision-decisions.json").read_text())
    assert [entry["name"] for key, entry in decisions.items() if "x4plus" in key.lower()] == [shrunk["upscale"]["precision"]]


async def test_alpha_is_kept_and_16_bit_stays_16_bit(client):
    rgba = np.dstack([astronaut(32), np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))])
    result = await completed(client, await submit(client, encode(rgba, "PNG"), tool="upscale",
                                                   filename="cut.png", settings={"scale": 2}))
    image = await download(client, result["downloadUrl"])
    alpha = np.asarray(image)[..., 3]
    assert image.mode == "RGBA" and image.size == (64, 64) and alpha[:, 0].max() < 20 and alpha[:, -1].min() > 230
    import cv2
    sixteen = (astronaut(32).astype(np.uint16) * 257)[..., ::-1]
    ok, png16 = cv2.imencode(".png", np.ascontiguousarray(sixteen))
    result = await completed(client, await submit(client, png16.tobytes(), tool="upscale", filename="deep.png",
                                                   settings={"scale": 2}))
    raw = await (await client.get(result["downloadUrl"])).read()
    decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16 and decoded.shape == (64, 64, 3)


async def test_output_limit_and_missing_models(client, settings):
    big = encode(np.zeros((2, 5000, 3), np.uint8), "PNG")
    body = await submit(client, big, tool="upscale", filename="wide.png", expect=413)
    assert body["error"]["code"] == "OUTPUT_TOO_LARGE"
    assert list(settings.jobs_dir.iterdir()) == []
    body = await submit(client, encode(astronaut(32)), tool="upscale", expect=409,
                        settings={"model": "realesrgan-x2plus"})
    assert body["error"]["code"] == "MODEL_NOT_INSTALLED" and body["error"]["model"] == "realesrgan-x2plus"
    body = await submit(client, encode(astronaut(32)), tool="upscale", expect=400, settings={"scale": 3})
    assert body["error"]["fields"][0]["field"] == "scale"


async def test_monochrome_stays_monochrome(client):
    from pipelines.analysis import is_grayscale

    gray = np.asarray(Image.fromarray(astronaut(48)).convert("L").convert("RGB"))
    sepia = np.clip(gray * np.array([1.07, 0.87, 0.66]), 0, 255).astype(np.uint8)
    result = await completed(client, await submit(client, encode(sepia, "PNG"), tool="enhance", filename="s.png"))
    out = np.asarray(await download(client, result["downloadUrl"]), np.float32) / 255
    assert result["isGrayscale"] is True and is_grayscale(out)
