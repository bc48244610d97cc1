"""The face step wired into its three tools, with an installed photo-restoration bundle
(random weights in the official formats; the detector is made to find no faces)."""
from __future__ import annotations

import pytest

from tests.conftest import astronaut, collect, encode, submit
from tests.installed import client_with_models, face_template  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(aiohttp_client, settings, face_template):  # noqa: F811
    return await client_with_models(aiohttp_client, settings, face_template)


async def finished(client, body) -> dict:
    events = await collect(client, body["jobId"])
    assert events[-1].event == "complete", events[-1].data
    assert any(e.data["stage"] == "Enhancing faces..." for e in events)
    return events[-1].data["result"]


async def test_restore_photo_runs_face_enhancement_when_installed(client):
    settings = {"faceEnhancement": True, "fidelity": 0.5, "scratchRemoval": False, "denoise": False}
    result = await finished(client, await submit(client, encode(astronaut(96)), settings=settings))
    assert result["steps"] == ["face_enhancement"] and result["skipped"] == []
    assert result["facesEnhanced"] == 0 and result["faces"] == [] and result["fidelity"] == 0.5


async def test_face_enhance_tool_with_upscale(client):
    body = await submit(client, encode(astronaut(64)), tool="face-enhance", settings={"upscale": 2})
    result = await finished(client, body)
    assert (result["width"], result["height"]) == (128, 128) and result["facesEnhanced"] == 0


async def test_enhance_type_face_runs_the_face_step(client):
    body = await submit(client, encode(astronaut(64)), tool="enhance", settings={"type": "face", "enhance": False})
    result = await finished(client, body)
    assert result["steps"] == ["face_enhancement"]
