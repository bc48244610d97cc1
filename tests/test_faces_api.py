"""The face step wired into its three tools, with an installed photo-restoration bundle
(random weights in the official formats; the detector is made to find no faces)."""
from __future__ import annotations

import pytest

from tests.conftest import astronaut, completed, encode, submit
from tests.installed import client_with_models

pytestmark = pytest.mark.slow
FACE_STAGE = "Enhancing faces..."  # each job below must report it


@pytest.fixture
async def client(aiohttp_client, settings, face_template):
    return await client_with_models(aiohttp_client, settings, face_template)


async def test_restore_photo_runs_face_enhancement_when_installed(client):
    settings = {"faceEnhancement": True, "fidelity": 0.5, "scratchRemoval": False, "denoise": False}
    result = await completed(client, await submit(client, encode(astronaut(96)), settings=settings), FACE_STAGE)
    assert result["steps"] == ["face_enhancement"] and result["skipped"] == []
    assert result["facesEnhanced"] == 0 and result["faces"] == [] and result["fidelity"] == 0.5


async def test_face_enhance_tool_with_upscale(client):
    body = await submit(client, encode(astronaut(64)), tool="face-enhance", settings={"upscale": 2})
    result = await completed(client, body, FACE_STAGE)
    assert (result["width"], result["height"]) == (128, 128) and result["facesEnhanced"] == 0


async def test_enhance_type_face_runs_the_face_step(client):
    body = await submit(client, encode(astronaut(64)), tool="enhance", settings={"type": "face", "enhance": False})
    result = await completed(client, body, FACE_STAGE)
    assert result["steps"] == ["face_enhancement"]
