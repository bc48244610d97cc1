"""Image URLs: refused addresses never see a connection; redirects, size and time are bounded."""
from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

import server.fetch as fetch
from server.app import create_app
from tests.conftest import astronaut, collect, encode, form


class Canary:
    """A TCP listener that only counts connections."""

    def __init__(self):
        self.connections = 0
        self.servers: list[asyncio.AbstractServer] = []
        self.port = 0

    async def start(self) -> "Canary":
        async def seen(reader, writer):
            self.connections += 1
            writer.close()
        v4 = await asyncio.start_server(seen, "127.0.0.1", 0)
        self.port = v4.sockets[0].getsockname()[1]
        self.servers.append(v4)
        try:
            self.servers.append(await asyncio.start_server(seen, "::1", self.port))
        except OSError:
            pass  # no IPv6 loopback here; the v6 URLs are still refused before any connect
        return self

    def close(self) -> None:
        for srv in self.servers:
            srv.close()


@pytest.fixture
async def canary():
    c = await Canary().start()
    yield c
    c.close()


REFUSED = ["http://127.0.0.1:{port}/a.png", "http://[::1]:{port}/a.png", "http://[::ffff:127.0.0.1]:{port}/a.png",
           "http://[::ffff:7f00:1]:{port}/a.png", "http://2130706433:{port}/a.png", "http://0x7f000001:{port}/a.png",
           "http://0177.0.0.1:{port}/a.png", "http://127.1:{port}/a.png", "http://localhost:{port}/a.png",
           "http://0.0.0.0:{port}/a.png", "http://[::]:{port}/a.png", "http://169.254.169.254:{port}/latest",
           "http://10.0.0.1:{port}/a.png", "http://100.64.0.1:{port}/a.png", "http://224.0.0.1:{port}/a.png"]


@pytest.mark.parametrize("template", REFUSED)
async def test_refused_addresses_see_no_connection(client, canary, template):
    url = template.format(port=canary.port)
    resp = await client.post("/api/v1/tools/restore-photo", json={"image_url": url})
    body = await resp.json()
    assert resp.status in (400, 422), body
    assert body["error"]["code"] in ("URL_NOT_ALLOWED", "URL_FETCH_FAILED")
    await asyncio.sleep(0.05)
    assert canary.connections == 0


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://127.0.0.1/",
                                 "http://user:pw@example.com/a.png", "http:///nohost"])
async def test_bad_schemes_and_forms(client, url):
    resp = await client.post("/api/v1/tools/restore-photo", json={"image_url": url})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "URL_NOT_ALLOWED"


@pytest.fixture
async def redirector(aiohttp_server, canary, monkeypatch):
    """'public.test' is pinned to a local redirector; every other name goes through the real check."""
    hops = {"count": 0}

    async def redirect(request):
        hops["count"] += 1
        target = request.query.get("to", f"http://127.0.0.1:{canary.port}/a.png")
        if target == "self":
            raise web.HTTPFound(f"http://public.test:{request.url.port}/r?to=self")
        raise web.HTTPFound(target)

    app = web.Application()
    app.router.add_get("/r", redirect)
    server = await aiohttp_server(app)
    real = fetch.resolve_checked

    async def resolve(host, port, allow_private):
        return ["127.0.0.1"] if host == "public.test" else await real(host, port, allow_private)

    monkeypatch.setattr(fetch, "resolve_checked", resolve)
    return {"base": f"http://public.test:{server.port}", "hops": hops}


async def test_redirect_to_loopback_is_refused(client, canary, redirector):
    resp = await client.post("/api/v1/tools/restore-photo", json={"image_url": redirector["base"] + "/r"})
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "URL_NOT_ALLOWED"
    assert redirector["hops"]["count"] == 1 and canary.connections == 0


async def test_too_many_redirects(client, redirector):
    resp = await client.post("/api/v1/tools/restore-photo", json={"image_url": redirector["base"] + "/r?to=self"})
    body = await resp.json()
    assert resp.status == 422 and "redirected more than 5" in body["error"]["message"]
    assert redirector["hops"]["count"] == 6


@pytest.fixture
async def image_host(aiohttp_server):
    image = encode(astronaut(64))

    async def serve(request):
        kind = request.match_info["kind"]
        if kind == "big":
            return web.Response(body=b"\xff\xd8\xff" + b"\0" * 3_000_000)
        if kind == "slow":
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(50):
                await resp.write(b"\0" * 10)
                await asyncio.sleep(0.5)
            return resp
        if kind == "text":
            return web.Response(text="not an image")
        return web.Response(body=image, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{kind}", serve)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def lan_client(aiohttp_client, settings):
    """A trusted-LAN server: private addresses allowed, small limits so limits can be hit."""
    app = create_app(settings.with_overrides(allow_private_urls=True, max_upload_bytes=1_000_000))
    return await aiohttp_client(app)


async def test_trusted_lan_setting_allows_private_urls(lan_client, image_host):
    resp = await lan_client.post("/api/v1/tools/restore-photo", json={"image_url": image_host + "/ok.jpg"})
    assert resp.status == 202, await resp.json()
    events = await collect(lan_client, (await resp.json())["jobId"])
    assert events[-1].event == "complete" and events[-1].data["result"]["width"] == 64


async def test_oversized_body_is_413_and_leaves_nothing(lan_client, image_host, settings):
    resp = await lan_client.post("/api/v1/tools/restore-photo", json={"image_url": image_host + "/big"})
    assert resp.status == 413
    assert list((settings.data_dir / "tmp").iterdir()) == []


async def test_slow_body_times_out(lan_client, image_host, monkeypatch):
    monkeypatch.setattr(fetch.FetchPolicy, "__init__", _short_timeouts(fetch.FetchPolicy.__init__))
    resp = await lan_client.post("/api/v1/tools/restore-photo", json={"image_url": image_host + "/slow"})
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "URL_FETCH_FAILED"


def _short_timeouts(init):
    def patched(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "read_timeout_s": 0.3, "total_timeout_s": 2.0})
    return patched


async def test_bytes_must_be_an_image(lan_client, image_host):
    resp = await lan_client.post("/api/v1/tools/restore-photo", json={"image_url": image_host + "/text"})
    assert resp.status == 415


async def test_exactly_one_source(lan_client, image_host):
    data = form(encode(astronaut(32)), image_url=image_host + "/ok.jpg")
    resp = await lan_client.post("/api/v1/tools/restore-photo", data=data)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "TOO_MANY_SOURCES"
    resp = await lan_client.post("/api/v1/tools/restore-photo",
                                 json={"image_url": image_host + "/ok.jpg", "imageUrl": image_host + "/ok.jpg"})
    assert resp.status == 400


def test_address_rules():
    import ipaddress

    allowed = ["8.8.8.8", "2606:4700:4700::1111", "93.184.216.34"]
    refused = ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1", "100.64.0.1", "0.0.0.0",
               "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "ff02::1",
               "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"]
    assert all(fetch.address_allowed(ipaddress.ip_address(a), False) for a in allowed)
    assert not any(fetch.address_allowed(ipaddress.ip_address(a), False) for a in refused)
    assert fetch.address_allowed(ipaddress.ip_address("192.168.1.1"), True)
    assert not fetch.address_allowed(ipaddress.ip_address("224.0.0.1"), True)
