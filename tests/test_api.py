"""restore-photo through the real app: submit, SSE in order, result, download, bad input."""
from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image

from server.app import create_app
from tests.conftest import astronaut, collect, encode, form, submit


async def test_submit_stream_and_download(client, settings):
    image = encode(astronaut(320), "JPEG", quality=92)
    body = await submit(client, image, filename="old photo.jpg", settings={"denoiseStrength": 40})
    job_id = body["jobId"]
    assert body["async"] is True

    events = await collect(client, job_id)
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    assert [e.event for e in events][-1] == "complete"
    assert all(e.event == "progress" for e in events[:-1])
    percents = [e.data["percent"] for e in events if e.data["phase"] == "processing"]
    assert percents == sorted(percents)
    stages = {e.data["stage"] for e in events}
    assert "Removing scratches..." in stages

    result = events[-1].data["result"]
    assert events[-1].data == {"phase": "complete", "stage": "Done", "percent": 100, "result": result}
    assert result["jobId"] == job_id
    assert (result["width"], result["height"]) == (320, 320)
    assert result["originalSize"] == len(image)
    assert result["steps"][0] == "scratch_removal"
    assert result["downloadUrl"] == f"/api/v1/download/{job_id}/old-photo_restored.jpg"
    assert {"step": "face_enhancement", "bundle": "photo-restoration"}.items() <= result["skipped"][0].items()
    assert result["facesEnhanced"] == 0 and result["colorized"] is False and result["isGrayscale"] is False
    assert result["scratchCoverage"] < 0.5
    assert set(result["timings"]) >= {"decode", "scratch_removal", "denoise", "encode"}

    download = await client.get(result["downloadUrl"])
    assert download.status == 200 and download.content_type == "image/jpeg"
    payload = await download.read()
    assert len(payload) == result["processedSize"]
    assert Image.open(io.BytesIO(payload)).size == (320, 320)
    preview = await client.get(result["previewUrl"])
    assert preview.content_type == "image/webp"
    assert max(Image.open(io.BytesIO(await preview.read())).size) <= 1024

    snapshot = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
    assert snapshot["status"] == "complete" and snapshot["result"] == result


@pytest.mark.parametrize("fmt,ext,content_type", [("PNG", "png", "image/png"), ("WEBP", "webp", "image/webp"),
                                                  ("BMP", "png", "image/png")])
async def test_output_format_follows_input(client, fmt, ext, content_type):
    body = await submit(client, encode(astronaut(96), fmt), filename=f"x.{ext}")
    result = (await collect(client, body["jobId"]))[-1].data["result"]
    assert result["downloadUrl"].endswith(f"x_restored.{ext}")
    assert (await client.get(result["downloadUrl"])).content_type == content_type


async def test_settings_as_individual_fields(client):
    body = await submit(client, encode(astronaut(64)), scratchRemoval="false", denoise="false")
    result = (await collect(client, body["jobId"]))[-1].data["result"]
    assert result["steps"] == [] and result["scratchCoverage"] is None
    snapshot = await (await client.get(f"/api/v1/jobs/{body['jobId']}")).json()
    assert snapshot["params"]["scratchRemoval"] is False and snapshot["params"]["fidelity"] == 0.7


async def test_invalid_params_listed_and_nothing_queued(client, settings):
    bad = {"fidelity": 1.5, "denoiseStrength": "lots", "sharpen": True}
    body = await submit(client, encode(astronaut(64)), expect=400, settings=bad)
    assert body["error"]["code"] == "INVALID_PARAMS"
    fields = {f["field"] for f in body["error"]["fields"]}
    assert fields == {"fidelity", "denoiseStrength", "sharpen"}
    assert list(settings.jobs_dir.iterdir()) == []
    assert list((settings.data_dir / "tmp").iterdir()) == []
    health = await (await client.get("/api/v1/health")).json()
    assert health["queueDepth"] == 0


async def test_same_key_in_settings_and_field_is_refused(client):
    body = await submit(client, encode(astronaut(64)), expect=400, denoise="false", settings={"denoise": True})
    assert body["error"]["fields"] == [{"field": "denoise", "message": "given twice"}]


async def test_explicit_step_without_bundle_is_409(client, settings):
    body = await submit(client, encode(astronaut(64)), expect=409, settings={"faceEnhancement": True})
    error = body["error"]
    assert error["code"] == "BUNDLE_NOT_INSTALLED" and error["bundle"] == "photo-restoration"
    assert error["install"] == "restora bundles install photo-restoration"
    assert "photo-restoration" in error["message"]
    body = await submit(client, encode(astronaut(64)), expect=409, settings={"colorize": True})
    assert body["error"]["bundle"] == "colorization"
    assert list(settings.jobs_dir.iterdir()) == []


@pytest.mark.parametrize("payload,status,code", [
    (b"", 415, "EMPTY_FILE"),
    (b"hello, I am a text file\n" * 10, 415, "UNSUPPORTED_FORMAT"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 415, "UNSUPPORTED_FORMAT"),  # a header that lies
])
async def test_not_an_image(client, settings, payload, status, code):
    body = await submit(client, payload, expect=status)
    assert body["error"]["code"] == code
    assert list(settings.jobs_dir.iterdir()) == []


async def test_missing_file(client):
    resp = await client.post("/api/v1/tools/restore-photo", data={"settings": "{}"})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "MISSING_FILE"


async def test_upload_over_limit(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(max_upload_bytes=10_000)))
    body = await submit(client, encode(astronaut(256), "PNG"), expect=413)
    assert body["error"]["code"] == "UPLOAD_TOO_LARGE"
    assert list((settings.data_dir / "tmp").iterdir()) == []


async def test_pixel_limit_checked_from_header(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(max_pixels=100 * 100)))
    body = await submit(client, encode(astronaut(128), "PNG"), expect=413)
    assert body["error"]["code"] == "IMAGE_TOO_LARGE"


async def test_decompression_bomb_header_is_413(client):
    # A PNG whose header claims 60000x60000 pixels: refused from the header, never decoded.
    png = encode(astronaut(8), "PNG")
    ihdr = b"IHDR" + (60000).to_bytes(4, "big") * 2 + png[24:29]
    bomb = png[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + png[33:]
    body = await submit(client, bomb, filename="bomb.png", expect=413)
    assert body["error"]["code"] == "IMAGE_TOO_LARGE"


async def test_unknown_tool_and_job_and_route(client):
    resp = await client.post("/api/v1/tools/sharpen-everything", data=form(encode(astronaut(32))))
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["code"] == "UNKNOWN_TOOL" and "restore-photo" in body["error"]["known"]
    for path in ("/api/v1/jobs/00000000-0000-0000-0000-000000000000", "/api/v1/jobs/../../etc",
                 "/api/v1/nothing-here"):
        resp = await client.get(path)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] in ("JOB_NOT_FOUND", "NOT_FOUND")


async def test_download_refuses_files_the_job_did_not_produce(client):
    body = await submit(client, encode(astronaut(64)))
    await collect(client, body["jobId"])
    for name in ("input.jpeg", "..%2F..%2Frestora.sqlite3", "%2Fetc%2Fpasswd", ".preview.webp.partial"):
        resp = await client.get(f"/api/v1/download/{body['jobId']}/{name}")
        assert resp.status == 404, name
        assert (await resp.json())["error"]["code"] in ("FILE_NOT_FOUND", "NOT_FOUND")


async def test_tools_and_health(client):
    tools = await (await client.get("/api/v1/tools")).json()
    restore = next(t for t in tools["tools"] if t["name"] == "restore-photo")
    props = restore["parameters"]["properties"]
    assert restore["parameters"]["additionalProperties"] is False
    assert props["fidelity"] == {"type": "number", "description": props["fidelity"]["description"],
                                 "default": 0.7, "minimum": 0, "maximum": 1}
    health = await (await client.get("/api/v1/health")).json()
    assert health["status"] in ("ok", "starting")
    assert len(health["workers"]) == 1
    assert health["bundles"]["photo-restoration"] == "not_installed"
    assert health["queueDepth"] == 0
    assert health["installedBundles"] == [name for name, state in health["bundles"].items() if state == "installed"]


async def test_garbage_pixel_data_fails_the_job_with_undecodable(client, settings):
    good = encode(astronaut(64), "JPEG")
    broken = good[:600] + bytes(range(256)) * 8  # a valid header, then noise instead of scan data
    body = await submit(client, broken, filename="broken.jpg")
    events = await collect(client, body["jobId"])
    assert events[-1].event == "failed"
    assert events[-1].data["error"]["code"] == "UNDECODABLE"
    health = await (await client.get("/api/v1/health")).json()
    assert health["workers"][0]["restarts"] == 0  # the decoder ran isolated: the worker never died


async def test_broken_heic_is_refused_at_request_time(client, settings):
    import pillow_heif
    from PIL import Image as PILImage

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    PILImage.fromarray(astronaut(64)).save(buf, "HEIF")
    resp = await client.post("/api/v1/tools/restore-photo", data=form(buf.getvalue()[:300], "phone.heic"))
    assert resp.status in (415, 422), await resp.text()
    assert (await resp.json())["error"]["code"] in ("UNDECODABLE", "UNSUPPORTED_FORMAT")
    assert list((settings.data_dir / "tmp").iterdir()) == []
    assert list(settings.jobs_dir.iterdir()) == []
