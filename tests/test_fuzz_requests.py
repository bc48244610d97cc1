"""Hostile requests at the real app's submission routes: every one a 4xx JSON error (or accepted),
never a 5xx, nothing queued on refusal, no traceback in the log.

First the cases found by hand (each answered 500 before), then a few hundred generated ones
(fixed seed): bodies, JSON, multipart structure, part and request headers, numbers, methods.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any
from urllib.parse import quote

import pytest

from server.app import create_app
from tests.conftest import astronaut, encode

BOUNDARY = "fuzzBOUNDARY"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
NATIVE = "/api/v1/tools/restore-photo"
ROUTES = (NATIVE, "/api/v1/tools/upscale", "/api/v1/tools/remove-bg", "/v1/tools/image-enhance/",
          "/v1/tools/remove-bg/", "/api/tasks/visual/scale", "/api/v1/restore")
PHOTO = encode(astronaut(32))
FILE_HEADERS = b'Content-Disposition: form-data; name="file"; filename="photo.jpg"\r\nContent-Type: image/jpeg'
AS_MULTIPART, AS_JSON = {"Content-Type": MULTIPART}, {"Content-Type": "application/json"}
DEEP = "[" * 10_000 + "]" * 10_000


def field_headers(name: str) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"'.encode()


def multipart(*parts: tuple[bytes, bytes], close: bool = True) -> bytes:
    body = b"".join(b"--%s\r\n%s\r\n\r\n%s\r\n" % (BOUNDARY.encode(), headers, data) for headers, data in parts)
    return body + (b"--%s--\r\n" % BOUNDARY.encode() if close else b"")


def with_settings(settings: str) -> bytes:
    return multipart((FILE_HEADERS, PHOTO), (field_headers("settings"), settings.encode()))


def with_filename(filename: bytes) -> bytes:
    return multipart((b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"', PHOTO))


KNOWN_500S = {  # name: (headers, body, status, code)
    "settings nested 10,000 deep": (AS_MULTIPART, with_settings('{"denoise": %s}' % DEEP), 400, "INVALID_JSON"),
    "JSON body nested 10,000 deep": (AS_JSON, ('{"imageUrl": %s}' % DEEP).encode(), 400, "INVALID_JSON"),
    "400-digit number": (AS_MULTIPART, with_settings('{"denoiseStrength": %s}' % ("9" * 400)), 400, "INVALID_PARAMS"),
    "5,000-digit number": (AS_MULTIPART, with_settings('{"denoiseStrength": %s}' % ("9" * 5000)), 400, "INVALID_JSON"),
    "multipart without a boundary": ({"Content-Type": "multipart/form-data"}, multipart((FILE_HEADERS, PHOTO)),
                                     400, "INVALID_REQUEST"),
    "body never starts the boundary": (AS_MULTIPART, b"no boundary here\r\n" * 8, 400, "INVALID_REQUEST"),
    "part cut off mid-body": (AS_MULTIPART, multipart((FILE_HEADERS, PHOTO))[:-200], 400, "INVALID_REQUEST"),
    "part headers never end": (AS_MULTIPART, b"--%s\r\n%s\r\nX-Pad: aaaa" % (BOUNDARY.encode(), FILE_HEADERS),
                               400, "INVALID_REQUEST"),
    "NUL in the filename": (AS_MULTIPART, with_filename(b"a\x00.jpg"), 400, "INVALID_REQUEST"),
    "CR in the filename": (AS_MULTIPART, with_filename(b"a\r.jpg"), 400, "INVALID_REQUEST"),
    "LF in the filename": (AS_MULTIPART, with_filename(b"a\n.jpg"), 400, "INVALID_REQUEST"),
    "body not the gzip it claims": ({**AS_JSON, "Content-Encoding": "gzip"}, b'{"denoise": true}',
                                    400, "INVALID_REQUEST"),
    "unknown charset in a field": (AS_MULTIPART, multipart(
        (FILE_HEADERS, PHOTO), (field_headers("denoise") + b"\r\nContent-Type: text/plain; charset=x-nope", b"true")),
        400, "INVALID_REQUEST"),
}
# These answered 400 already (the params validator refuses non-finite numbers); kept as guards.
NON_FINITE = {literal: (AS_MULTIPART, with_settings('{"fidelity": %s}' % literal), 400, "INVALID_PARAMS")
              for literal in ("NaN", "Infinity", "-Infinity")}


@pytest.fixture
async def fuzz_client(aiohttp_client, settings):
    # workers=0: accepted jobs stay queued (countable); short sync waits for the synchronous adapters.
    app_settings = settings.with_overrides(workers=0, sync_timeout_s=0.1, compat_restore_rate_per_hour=10**6)
    return await aiohttp_client(create_app(app_settings)), app_settings


def assert_nothing_kept(settings, accepted: int = 0) -> None:
    assert len(list(settings.jobs_dir.iterdir())) == accepted
    assert list(settings.tmp_dir.glob("upload-*")) == []


def assert_no_traceback(caplog) -> None:
    noisy = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert noisy == [], [r.getMessage() for r in noisy]


@pytest.mark.filterwarnings("ignore:form-data")
@pytest.mark.parametrize("case", [*KNOWN_500S, *NON_FINITE])
async def test_malformed_submission_is_a_400_json_error(fuzz_client, caplog, case):
    client, settings = fuzz_client
    headers, body, status, code = {**KNOWN_500S, **NON_FINITE}[case]
    caplog.set_level(logging.WARNING)
    errors = {}
    for path in (NATIVE, "/api/tasks/visual/scale"):  # native, and the adapter with its own envelope
        resp = await client.post(path, data=body, headers=headers)
        errors[path] = error = (await resp.json())["error"]
        assert (resp.status, error["code"]) == (status, code), error
        assert error["message"]
    if code == "INVALID_PARAMS":
        assert [f["field"] for f in errors[NATIVE]["fields"]] in (["denoiseStrength"], ["fidelity"])
    assert_nothing_kept(settings)
    assert_no_traceback(caplog)


# ---- generated requests ------------------------------------------------------------------------

NAMES = ("denoiseStrength", "fidelity", "scale", "outscale", "tileSize", "quality", "outputFormat", "denoise",
         "imageUrl", "image_url", "sync", "type", "scale_factor", "return_type", "outputType", "mode", "sharpen", "")


def hostile_value(rng: random.Random) -> str:
    depth = rng.choice((40, 900, 1200, 20_000))
    return rng.choice((
        lambda: "[" * depth + "]" * depth,
        lambda: '{"a":' * depth + "1" + "}" * depth,
        lambda: rng.choice(("", "-")) + "9" * rng.choice((17, 309, 400, 4300, 4301, 5000)),
        lambda: rng.choice(("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "0.5", "4", "true",
                            "false", '"png"', '"face"', "1")),
        lambda: json.dumps(rng.choice(("\x00", "\ud800", "a" * 70_000, "http://127.0.0.1:9/x.jpg", "ftp://x", "2"))),
        lambda: rng.choice(("[]", "null", '"x"', "{}", '{"a": 1, "a": 2}', '{"', "{'a': 1}", "\ufeff{}")),
    ))()


def hostile_settings(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return hostile_value(rng)
    pairs = (f"{json.dumps(rng.choice(NAMES))}: {hostile_value(rng)}" for _ in range(rng.randint(1, 3)))
    return "{" + ", ".join(pairs) + "}"


def file_bytes(rng: random.Random) -> bytes:
    return rng.choice((PHOTO, PHOTO[: rng.randint(1, len(PHOTO))], b"", rng.randbytes(rng.randint(1, 400)),
                       b"\x89PNG\r\n\x1a\n" + rng.randbytes(40)))


def mostly(rng: random.Random, usual: tuple, odd: tuple, odds: float = 0.3):
    """Usually a well-formed choice, so that requests get past one check and meet the next."""
    return rng.choice(odd) if rng.random() < odds else rng.choice(usual)


def multipart_request(rng: random.Random) -> tuple[str, bytes]:
    file_name = mostly(rng, ("file", "image_file"), ("mask", "settings", ""))
    filename = mostly(rng, (b"photo.jpg", "f\u00f6t\u00f6.jpg".encode(), b"../../etc/passwd", b"%00.jpg"),
                      (b"a\x00b.jpg", b"a\rb", b"a\nb", b"", b"\xff\xfe.jpg"))
    file_headers = mostly(rng, (b"", b"\r\nContent-Type: image/jpeg"),
                          (b"\r\nContent-Transfer-Encoding: base64", b"\r\nContent-Type: text/plain; charset=x-nope"))
    parts = [(b'Content-Disposition: form-data; name="%s"; filename="%s"' % (file_name.encode(), filename)
              + file_headers, file_bytes(rng))]
    for _ in range(rng.randint(0, 3)):
        name = rng.choice(("settings", "settings", *NAMES))
        headers = field_headers(name) + mostly(rng, (b"", b"\r\nContent-Type: text/plain; charset=utf-8"), (
            b"\r\nContent-Type: text/plain; charset=x-nope", b"\r\nContent-Type: multipart/mixed; boundary=in",
            b"\r\nContent-Type: text/plain; charset=utf-16"))
        parts.append((headers, (hostile_settings(rng) if name == "settings" else hostile_value(rng)).encode()))
    rng.shuffle(parts)
    return mutated_multipart(rng, multipart(*parts, close=rng.random() > 0.1))


def mutated_multipart(rng: random.Random, body: bytes) -> tuple[str, bytes]:
    content_type = mostly(rng, (MULTIPART, f'multipart/form-data; boundary="{BOUNDARY}"'), (
        "multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=other",
        "multipart/form-data; boundary=" + "b" * 300, "multipart/mixed; boundary=" + BOUNDARY))
    at = rng.randint(0, len(body))
    mutation = mostly(rng, ("none",), ("truncate", "junk", "flip", "drop-crlf", "prefix"), odds=0.5)
    if mutation == "truncate":
        body = body[:at]
    elif mutation == "junk":
        body = body[:at] + rng.choice((b"\x00", b"\r", b"\n", b"\r\n\r\n", b"--", b'"', rng.randbytes(16))) + body[at:]
    elif mutation == "flip" and body:
        body = body[:at] + bytes([rng.randrange(256)]) + body[at + 1:]
    elif mutation == "drop-crlf":
        body = body.replace(b"\r\n\r\n", b"\r\n", 1)
    elif mutation == "prefix":
        body = rng.randbytes(rng.randint(1, 64)) + body
    return content_type, body


def json_request(rng: random.Random) -> tuple[str, bytes]:
    content_type = rng.choice(("application/json", "application/json", "application/json; charset=utf-16",
                               "application/json; charset=x-nope", "text/json"))
    body = hostile_settings(rng).encode()
    if rng.random() < 0.2:
        body = body[: rng.randint(0, len(body))] + rng.choice((b"", b"\xff\xfe", b"\x00"))
    return content_type, body


def form_request(rng: random.Random) -> tuple[str, bytes]:
    content_type = rng.choice(("application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=x-nope",
                               "application/x-www-form-urlencoded; charset=utf-16"))
    pairs = [f"{quote(rng.choice(('settings', *NAMES)))}={quote(hostile_settings(rng))}"
             for _ in range(rng.randint(1, 3))]
    return content_type, "&".join(pairs).encode() + rng.choice((b"", b"&%zz=%ff%fe", b"&a=\xff", b"&&=&"))


def other_request(rng: random.Random) -> tuple[str, bytes]:
    content_type = rng.choice(("", "text/plain", "image/jpeg", "application/octet-stream", "a/b; c", ";;;",
                               "multipart/form-data; boundary=a; boundary=b", "application/json; charset"))
    return content_type, rng.choice((PHOTO, b"", rng.randbytes(rng.randint(1, 2000))))


GENERATORS = (multipart_request, multipart_request, multipart_request, json_request, form_request, other_request)


def generated_request(rng: random.Random) -> dict[str, Any]:
    content_type, body = rng.choice(GENERATORS)(rng)
    headers = {"Content-Type": content_type} if content_type else {}
    if rng.random() < 0.1:  # a body that does not decompress as it says
        headers["Content-Encoding"] = rng.choice(("gzip", "deflate", "br", "x-nope"))
        # Answered before its body is read (405, no boundary), aiohttp then drains the body, fails
        # to decode it and drops the connection: a client must not send another request into it.
        headers["Connection"] = "close"
    method = "POST" if rng.random() < 0.9 else rng.choice(("PUT", "PATCH", "DELETE", "GET"))
    return {"method": method, "path": rng.choice(ROUTES), "headers": headers, "data": body}


RAW_REQUEST = (b"POST %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: " + MULTIPART.encode()
               + b"\r\nX-Client: fuzz\r\nContent-Length: %d\r\n\r\n")


def raw_request(rng: random.Random) -> bytes:
    """A request whose framing (request line, headers) is broken: aiohttp's parser answers it."""
    body = multipart((FILE_HEADERS, b"not an image"))
    head = RAW_REQUEST % (rng.choice(ROUTES).encode(), len(body))
    at = rng.randint(0, head.index(b"\r\n\r\n"))
    head = head[:at] + rng.choice((b"\x00", b"\r", b"\n", b"\x7f", b"\xff", b" ", b":", b"\t", b"\x01")) + head[at:]
    return head + body


async def raw_status(client, request: bytes) -> int:
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        status_line = await asyncio.wait_for(reader.readline(), timeout=30)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/"), f"no answer to {request[:80]!r}"
    return int(status_line.split()[1])


@pytest.mark.filterwarnings("ignore:form-data")
async def test_generated_malformed_requests_never_answer_5xx(fuzz_client, caplog):
    client, settings = fuzz_client
    caplog.set_level(logging.WARNING)
    rng = random.Random(1515)
    accepted, codes = 0, set()
    for number in range(360):
        request = generated_request(rng)
        async with client.request(**request) as resp:
            body = await resp.read()
        assert resp.status < 500, (number, request["path"], request["headers"], body[:300])
        if resp.status >= 400 and resp.content_type == "text/plain":  # aiohttp's parser refused its headers
            assert resp.status == 400, body
        elif resp.status >= 400:
            error = json.loads(body)["error"]
            assert error["code"] and error["message"], body
            codes.add(error["code"])
        accepted += resp.status < 300
    assert {"INVALID_REQUEST", "INVALID_JSON", "INVALID_PARAMS", "METHOD_NOT_ALLOWED"} <= codes, codes
    assert_nothing_kept(settings, accepted)
    assert_no_traceback(caplog)


async def test_broken_http_framing_is_a_400_without_a_traceback(fuzz_client, caplog):
    """aiohttp's parser answers these itself (400, text/plain) before the app sees them; it used
    to log each one as an ERROR with a traceback, which any client can make it do."""
    client, settings = fuzz_client
    caplog.set_level(logging.WARNING)
    rng = random.Random(1516)
    statuses = [await raw_status(client, raw_request(rng)) for _ in range(40)]
    assert max(statuses) < 500 and statuses.count(400) > 20, statuses
    assert_nothing_kept(settings)
    assert_no_traceback(caplog)
