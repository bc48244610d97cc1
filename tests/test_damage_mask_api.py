"""restore-photo shows its work (damage-mask.png) and repairs the caller's own mask, through the real app."""
from __future__ import annotations

import io
import os
import sqlite3

import numpy as np
from PIL import Image, ImageDraw

from server.app import create_app
from server.db import SCHEMA, Store
from tests.conftest import astronaut, collect, encode, form

FAST = {"denoise": False}  # the mask is the scratch step's; denoise would only add time


def scratched(size: tuple[int, int] = (256, 192)) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut at ``size`` with a bright 2 px line drawn across it; (rgb uint8, line mask)."""
    rgb = np.asarray(Image.fromarray(astronaut()).resize(size, Image.Resampling.LANCZOS)).copy()
    line = Image.new("L", size, 0)
    ImageDraw.Draw(line).line([(10, 20), (size[0] - 12, size[1] - 30)], fill=255, width=2)
    scratch = np.asarray(line) > 0
    rgb[scratch] = 250
    return rgb, scratch


def painted(size: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Bool HxW, True inside each box (x0, y0, x1, y1), end exclusive."""
    mask = np.zeros((size[1], size[0]), bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def mask_png(mask: np.ndarray) -> bytes:
    return encode(np.where(mask, 255, 0).astype(np.uint8), "PNG")


def with_mask(image: bytes, mask: bytes, filename: str = "photo.png", **fields):
    data = form(image, filename, **fields)
    data.add_field("mask", mask, filename="mask.png", content_type="image/png")
    return data


async def post(client, data, tool: str = "restore-photo", expect: int = 202) -> dict:
    resp = await client.post(f"/api/v1/tools/{tool}", data=data)
    body = await resp.json()
    assert resp.status == expect, body
    return body


async def result_of(client, body: dict) -> dict:
    events = await collect(client, body["jobId"])
    assert events[-1].event == "complete", events[-1].data
    return events[-1].data["result"]


async def fetch_image(client, url: str) -> Image.Image:
    resp = await client.get(url)
    assert resp.status == 200, await resp.text()
    image = Image.open(io.BytesIO(await resp.read()))
    image.load()
    return image


async def damage_mask(client, result: dict) -> np.ndarray:
    """The job's damage-mask.png as bool HxW, after checking it is an 8-bit grey 0/255 PNG."""
    assert result["damageMaskUrl"] == f"/api/v1/download/{result['jobId']}/damage-mask.png"
    image = await fetch_image(client, result["damageMaskUrl"])
    assert (image.format, image.mode) == ("PNG", "L")
    pixels = np.asarray(image)
    assert set(np.unique(pixels)) <= {0, 255}
    return pixels == 255


def near(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` px (a square neighbourhood)."""
    grown = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            grown |= np.roll(np.roll(mask, dy, axis=0), dx, axis=1)
    return grown


async def test_damage_mask_is_written_and_white_on_a_scratch(client):
    rgb, scratch = scratched()
    result = await result_of(client, await post(client, form(encode(rgb, "JPEG", quality=95), "old.jpg", **FAST)))
    mask = await damage_mask(client, result)
    assert mask.shape == (192, 256)
    assert "damage-mask.png" in result["files"]
    assert [r["resultType"] for r in result["results"]] == ["restored"]  # a mask is no result photo
    assert result["scratchCoverage"] == round(100.0 * mask.mean(), 2)
    # Detection is judged elsewhere; here only that the mask shows what it found: the scratch.
    assert (mask & near(scratch, 2)).sum() >= 0.5 * scratch.sum()
    assert (mask & ~near(scratch, 3)).mean() < 0.02


async def test_nothing_found_still_writes_an_all_black_mask(client):
    ramp = np.linspace(40, 200, 96, dtype=np.float32)
    smooth = np.repeat(np.tile(ramp, (64, 1))[..., None], 3, axis=2).astype(np.uint8)
    result = await result_of(client, await post(client, form(encode(smooth, "PNG"), **FAST)))
    mask = await damage_mask(client, result)
    assert mask.shape == (64, 96) and not mask.any() and result["scratchCoverage"] == 0


async def test_the_conservative_detector_is_chosen_per_request(client):
    from tests.test_damage_detection import brick_wall

    wall = encode((brick_wall() * 255).round().astype(np.uint8), "PNG")
    masks = {}
    for detector in ("standard", "conservative"):
        body = await post(client, form(wall, damageDetector=detector, **FAST))
        masks[detector] = await damage_mask(client, await result_of(client, body))
    # Measured on this drawn wall: the standard detector takes 0.28% of the mortar for damage.
    assert masks["standard"].mean() > 0.001 and not masks["conservative"].any()
    bad = await post(client, form(wall, damageDetector="cautious"), expect=400)
    assert bad["error"]["code"] == "INVALID_PARAMS"
    assert [f["field"] for f in bad["error"]["fields"]] == ["damageDetector"]


async def test_no_repair_no_damage_mask(client):
    result = await result_of(client, await post(client, form(encode(astronaut(64), "PNG"), scratchRemoval=False,
                                                             **FAST)))
    assert result["steps"] == [] and result["damageMaskUrl"] is None
    assert "damage-mask.png" not in result["files"]


async def test_user_mask_alone_repairs_exactly_its_pixels(client):
    rgb, scratch = scratched()
    user = painted((256, 192), [(40, 30, 90, 60), (150, 100, 154, 180)]) | near(scratch, 1)
    data = with_mask(encode(rgb, "PNG"), mask_png(user), scratchRemoval=False, outputFormat="png", **FAST)
    result = await result_of(client, await post(client, data))
    assert result["steps"] == ["scratch_removal"]
    assert np.array_equal(await damage_mask(client, result), user)
    assert result["scratchCoverage"] == round(100.0 * user.mean(), 2)
    out = np.asarray((await fetch_image(client, result["downloadUrl"])).convert("RGB"))
    assert np.array_equal(out[~user], rgb[~user])  # bit-identical outside the mask
    assert np.abs(out[scratch].astype(int) - 250).mean() > 30  # the bright line inside it was filled


async def test_user_mask_is_added_to_what_was_detected(client):
    rgb, scratch = scratched()
    user = painted((256, 192), [(200, 10, 240, 40)])  # far from the scratch
    data = with_mask(encode(rgb, "PNG"), mask_png(user), **FAST)
    mask = await damage_mask(client, await result_of(client, await post(client, data)))
    assert mask[user].all()
    assert (mask & near(scratch, 2)).sum() >= 0.5 * scratch.sum()


async def test_transparent_mask_at_another_size_is_scaled_to_the_photo(client):
    rgb, _ = scratched()
    expected = painted((256, 192), [(20, 20, 60, 50), (100, 140, 130, 150)])
    # Twice the size, red strokes on a transparent layer: opaque pixels are the ones to repair.
    big = np.zeros((384, 512, 4), np.uint8)
    big[np.repeat(np.repeat(expected, 2, axis=0), 2, axis=1)] = (200, 0, 0, 255)
    data = with_mask(encode(rgb, "PNG"), encode(big, "PNG"), scratchRemoval=False, **FAST)
    assert np.array_equal(await damage_mask(client, await result_of(client, await post(client, data))), expected)


async def test_bad_masks_are_refused_and_nothing_is_queued(client, settings):
    rgb, _ = scratched()
    photo = encode(rgb, "PNG")
    good = mask_png(painted((256, 192), [(0, 0, 10, 10)]))
    cases = [
        ("restore-photo", b"these are not pixels" * 50, "INVALID_MASK"),
        ("restore-photo", good[: len(good) // 2], "INVALID_MASK"),  # a PNG header, then nothing
        ("restore-photo", b"", "INVALID_MASK"),
        ("restore-photo", mask_png(painted((256, 256), [])), "MASK_ASPECT_MISMATCH"),
        # Same shape, 9x the photo's pixels: refused from its header, before it is decoded.
        ("restore-photo", mask_png(painted((768, 576), [])), "MASK_TOO_LARGE"),
        ("upscale", good, "MASK_NOT_ACCEPTED"),
    ]
    for tool, mask, code in cases:
        body = await post(client, with_mask(photo, mask), tool=tool, expect=400)
        assert body["error"]["code"] == code, (tool, body)
        assert body["error"]["field"] == "mask"
    assert list(settings.jobs_dir.iterdir()) == []
    assert list(settings.tmp_dir.iterdir()) == []
    health = await (await client.get("/api/v1/health")).json()
    assert health["queueDepth"] == 0


async def test_a_mask_for_a_tool_without_one_is_refused_before_it_is_read(aiohttp_client, settings):
    # Over the upload limit: a server that stored the mask first would answer 413 UPLOAD_TOO_LARGE.
    client = await aiohttp_client(create_app(settings.with_overrides(max_upload_bytes=300_000)))
    rgb, _ = scratched()
    body = await post(client, with_mask(encode(rgb, "PNG"), os.urandom(400_000)), tool="upscale", expect=400)
    assert body["error"]["code"] == "MASK_NOT_ACCEPTED" and body["error"]["field"] == "mask"
    assert list(settings.tmp_dir.iterdir()) == [] and list(settings.jobs_dir.iterdir()) == []


async def test_mask_job_survives_a_restart(aiohttp_client, settings):
    rgb, _ = scratched()
    user = painted((256, 192), [(30, 30, 70, 70)])
    first = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    body = await post(first, with_mask(encode(rgb, "PNG"), mask_png(user), scratchRemoval=False, **FAST))
    assert (settings.jobs_dir / body["jobId"] / "mask.png").is_file()
    await first.close()
    second = await aiohttp_client(create_app(settings))
    assert np.array_equal(await damage_mask(second, await result_of(second, body)), user)


def test_a_database_from_before_masks_gains_the_column(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    before_masks = SCHEMA.replace("    mask_file TEXT NOT NULL DEFAULT '',\n", "")
    assert "mask_file" not in before_masks
    old.executescript(before_masks)
    old.close()
    Store(path).close()
    columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(jobs)")]
    assert "mask_file" in columns
