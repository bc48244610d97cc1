"""The OpenAPI document: valid 3.1, every served route in it and nothing more, the tools' schemas
and the error codes the source raises; the docs page renders from local assets only."""
from __future__ import annotations

import re
from pathlib import Path

from openapi_spec_validator import validate

from server.app import create_app
from server.auth import KeyStore
from server.error_codes import ERROR_CODES
from server.openapi import served_operations
from server.openapi_ops import OPERATIONS

ROOT = Path(__file__).resolve().parent.parent
_CODE = re.compile(r'\bcode\b\s*=\s*(?:\d+\s*,\s*)?"([A-Z][A-Z0-9_]+)"|"code"\s*:\s*"([A-Z][A-Z0-9_]+)"')


async def test_document_is_valid_openapi_31(client):
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    document = await resp.json()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any schema violation


async def test_every_served_route_is_documented_and_nothing_more(client):
    document = await (await client.get("/api/v1/openapi.json")).json()
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = set(served_operations(client.app))
    assert documented == served
    assert {key for key in OPERATIONS} <= served, "an OPERATIONS entry names a route the app does not serve"
    assert ("POST", "/api/v1/tools/{tool}") in served and ("GET", "/api/v1/jobs/{id}/progress") in served


async def test_tool_schemas_are_the_registry_schemas(client):
    document = await (await client.get("/api/v1/openapi.json")).json()
    tools = (await (await client.get("/api/v1/tools")).json())["tools"]
    schemas = document["components"]["schemas"]
    for tool in tools:
        assert schemas["Params_" + tool["name"].replace("-", "_")] == tool["parameters"]
    submit = document["paths"]["/api/v1/tools/{tool}"]["post"]
    assert submit["parameters"][0]["schema"]["enum"] == [t["name"] for t in tools]
    progress = document["paths"]["/api/v1/jobs/{id}/progress"]["get"]
    assert "text/event-stream" in progress["responses"]["200"]["content"]
    assert {"bearer", "apiKeyHeader"} <= set(document["components"]["securitySchemes"])


def test_every_error_code_in_the_source_is_documented():
    raised = set()
    for path in [*ROOT.joinpath("server").rglob("*.py"), *ROOT.joinpath("pipelines").rglob("*.py")]:
        raised |= {a or b for a, b in _CODE.findall(path.read_text())}
    assert len(raised) > 40  # the scan found the codes (guards the pattern itself)
    assert raised - set(ERROR_CODES) == set()


async def test_unknown_names_answer_documented_codes(client):
    resp = await client.post("/api/v1/tools/no-such-tool", data=b"")
    assert (await resp.json())["error"]["code"] in ERROR_CODES
    resp = await client.get("/api/v1/bundles/no-such-bundle")
    assert resp.status == 404 and (await resp.json())["error"]["code"] in ERROR_CODES


async def test_public_operations_are_public_when_keys_are_on(aiohttp_client, settings):
    KeyStore(settings.db_path).create("me")
    client = await aiohttp_client(create_app(settings.with_overrides(auth="on")))
    document = await (await client.get("/api/v1/openapi.json")).json()
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method != "get" or "{" in path:
                continue
            resp = await client.get(path)
            assert (resp.status != 401) == (op.get("security") == []), (path, resp.status)


async def test_docs_page_renders_from_local_assets(client):
    page = await (await client.get("/api/v1/docs")).text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/") for s in sources)  # nothing from a CDN
    for source in sources:
        resp = await client.get(source)
        assert resp.status == 200 and len(await resp.read()) > 0, source
    bundle = await (await client.get("/api/v1/docs/assets/swagger-ui-bundle.js")).text()
    assert "SwaggerUIBundle" in bundle
    assert (await client.get("/api/v1/docs/assets/swagger-editor-bundle.js")).status == 404


async def test_every_operation_has_a_declared_tag(client):
    document = await (await client.get("/api/v1/openapi.json")).json()
    declared = {tag["name"] for tag in document["tags"]}
    used = {tag for item in document["paths"].values() for op in item.values() for tag in op["tags"]}
    assert used == declared
