"""Each hosted API's documented curl examples, followed literally against the test server."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from aiohttp import FormData, web
from PIL import Image

from server.auth import KeyStore
from server.state import SETTINGS
from tests.conftest import astronaut, encode, wait_until
from tests.installed import client_with_models

pytestmark = pytest.mark.slow


@pytest.fixture
async def photos(aiohttp_server):
    """Stands in for https://example.com/photo.jpg and friends."""
    image = encode(astronaut(48), "JPEG")

    async def serve(request):
        return web.Response(body=image, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def compat(aiohttp_client, settings, model_template):
    key, _ = KeyStore(settings.db_path).create("compat-test")
    client = await client_with_models(aiohttp_client, settings, model_template, auth="on",
                                      allow_private_urls=True, compat_restore_rate_per_hour=3)
    return client, key


async def poll(client, path, headers, done, timeout=240):
    async def fetch():
        return await (await client.get(path, headers=headers)).json()
    return await wait_until(fetch, done, timeout, interval=0.3, what=f"{path} to finish")


async def fetch_asset(client, url: str) -> Image.Image:
    path = url.split("://", 1)[1].split("/", 1)[1]
    resp = await client.get("/" + path)  # no API key: the asset link itself is signed
    assert resp.status == 200, await resp.text()
    return Image.open(io.BytesIO(await resp.read()))


async def assert_only_the_whole_signature_opens(client, url: str) -> None:
    path, query = url.split("://", 1)[1].split("/", 1)[1].split("?", 1)
    expires, sig = (part.split("=", 1)[1] for part in query.split("&"))
    tampered = ("1" if sig[0] == "0" else "0") + sig[1:]  # one character changed, whatever it was
    for broken in ("", f"?sig={sig}", "?sig=", f"?expires={expires}", f"?expires={expires}&sig={tampered}",
                   f"?expires={int(expires) + 1}&sig={sig}"):
        resp = await client.get(f"/{path}{broken}")
        assert resp.status in (401, 403), (broken, resp.status)


async def test_seed_000_image_enhance(compat, photos):
    client, key = compat
    bearer = {"Authorization": f"Bearer {key}"}
    resp = await client.post("/v1/tools/image-enhance/", headers={**bearer, "Content-Type": "application/json"},
                             json={"image_url": f"{photos}/photo.jpg", "enhance": True, "mode": "enhance"})
    assert resp.status == 200, await resp.text()
    task = await resp.json()
    assert set(task) == {"task_id", "created_at"} and task["created_at"].endswith("Z")
    status = await poll(client, f"/v1/generation-request/{task['task_id']}/status/", bearer,
                        lambda b: b["status"] in ("FINISHED", "FAILED"))
    assert status["status"] == "FINISHED" and status["progress"] == 100 and status["failure_reason"] is None
    [result] = status["results"]
    assert result["asset_type"] == "EDITED_IMAGE" and result["metadata"] == {"result_type": "enhanced"}
    assert (await fetch_asset(client, result["asset"])).size == (192, 192)  # 48 px: auto scale 4x
    await assert_only_the_whole_signature_opens(client, result["asset"])


async def test_seed_000_upload_with_background_removal(compat):
    client, key = compat
    form = FormData()
    form.add_field("image_file", encode(astronaut(40)), filename="photo.jpg")
    for name, value in (("enhance", "true"), ("mode", "restore"), ("remove_bg", "true"),
                        ("remove_bg_quality", "medium")):
        form.add_field(name, value)
    resp = await client.post("/v1/tools/image-enhance/", headers={"Authorization": f"Bearer {key}"}, data=form)
    task = await resp.json()
    status = await poll(client, f"/v1/generation-request/{task['task_id']}/status/",
                        {"Authorization": f"Bearer {key}"}, lambda b: b["status"] in ("FINISHED", "FAILED"))
    assert status["status"] == "FINISHED", status
    kinds = [r["metadata"]["result_type"] for r in status["results"]]
    assert kinds == ["enhanced", "background_removed"]
    cutout = await fetch_asset(client, status["results"][1]["asset"])
    assert cutout.format == "PNG" and cutout.mode == "RGBA"


async def test_seed_003_remove_bg(compat, photos):
    client, key = compat
    bearer = {"Authorization": f"Bearer {key}"}
    for body, mode in (({"image_url": f"{photos}/photo.jpg", "quality": "medium"}, "RGBA"),
                       ({"image_url": f"{photos}/portrait.jpg", "quality": "high"}, "RGBA"),
                       ({"image_url": f"{photos}/photo.jpg", "quality": "medium", "return_mask": True}, "L")):
        resp = await client.post("/v1/tools/remove-bg/", headers=bearer, json=body)
        task = await resp.json()
        assert resp.status == 200, task
        status = await poll(client, f"/v1/generation-request/{task['task_id']}/status/", bearer,
                            lambda b: b["status"] in ("FINISHED", "FAILED"))
        [result] = status["results"]
        assert result["metadata"] == {"result_type": "background_removed", "quality": body["quality"]}
        image = await fetch_asset(client, result["asset"])
        assert image.format == "PNG" and image.size == (48, 48)
        assert image.mode in (mode, "RGB" if mode == "L" else mode)


async def test_seed_002_scale_async_and_sync(compat):
    client, key = compat
    headers = {"X-API-KEY": key}
    form = FormData()
    form.add_field("image_file", encode(astronaut(40)), filename="photo.jpg")
    form.add_field("sync", "0")
    created = await (await client.post("/api/tasks/visual/scale", headers=headers, data=form)).json()
    assert created["status"] == 200 and created["message"] == "success"
    task_id = created["data"]["task_id"]
    done = await poll(client, f"/api/tasks/visual/scale/{task_id}", headers, lambda b: b["data"]["state"] in (1, -1))
    data = done["data"]
    assert data["state"] == 1 and data["progress"] == 100 and data["completed_at"] >= data["created_at"]
    assert (await fetch_asset(client, data["image"])).size == (160, 160)

    for return_type in ("2", "3"):
        form = FormData()
        form.add_field("image_file", encode(astronaut(40)), filename="photo.jpg")
        for name, value in (("sync", "1"), ("scale_factor", "2"), ("return_type", return_type)):
            form.add_field(name, value)
        resp = await client.post("/api/tasks/visual/scale", headers=headers, data=form)
        raw = await resp.read() if return_type == "3" else base64.b64decode((await resp.json())["data"]["image"])
        assert Image.open(io.BytesIO(raw)).size == (80, 80)


async def test_seed_002_limits_and_envelope(compat):
    client, key = compat
    form = FormData()
    form.add_field("image_file", encode(astronaut(32), "GIF"), filename="anim.gif")
    resp = await client.post("/api/tasks/visual/scale", headers={"X-API-KEY": key}, data=form)
    body = await resp.json()
    assert resp.status == 415 and body["status"] == 415 and "gif" in body["message"]
    form = FormData()
    form.add_field("image_file", encode(np.zeros((8, 4097, 3), np.uint8), "PNG"), filename="wide.png")
    resp = await client.post("/api/tasks/visual/scale", headers={"X-API-KEY": key}, data=form)
    body = await resp.json()
    assert resp.status == 413 and body["error"]["code"] == "IMAGE_TOO_LARGE" and "4096" in body["message"]
    assert not list(client.app[SETTINGS].tmp_dir.iterdir())  # refused uploads are removed
    resp = await client.post("/api/tasks/visual/scale", data=form)
    assert resp.status == 401


async def test_seed_004_sync_restore_and_rate_limit(compat, photos):
    client, key = compat
    bearer = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    resp = await client.post("/api/v1/restore", headers=bearer, json={"imageUrl": f"{photos}/old.jpg"})
    assert resp.status == 200, await resp.text()
    output = (await resp.json())["output"]
    assert (await fetch_asset(client, output)).size == (48, 48)
    base64_out = await (await client.post("/api/v1/restore", headers=bearer,
                                          json={"imageUrl": f"{photos}/old.jpg", "outputType": "base64"})).json()
    assert Image.open(io.BytesIO(base64.b64decode(base64_out["output"]))).size == (48, 48)
    bad = await client.post("/api/v1/restore", headers=bearer, json={})
    assert bad.status == 400
    limited = await client.post("/api/v1/restore", headers=bearer, json={"imageUrl": f"{photos}/old.jpg"})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    unauthorized = await client.post("/api/v1/restore", json={"imageUrl": f"{photos}/old.jpg"})
    assert unauthorized.status == 401
    wrong = await client.post("/api/v1/restore", headers={"Authorization": "Bearer rst_wrong"},
                              json={"imageUrl": f"{photos}/old.jpg"})
    assert wrong.status == 401 and (await wrong.json())["error"]["code"] == "UNAUTHORIZED"
