"""Webhooks against the real app: a receiver on 127.0.0.1 (with allow_private_urls), signatures,
retries with backoff, giving up, a restart between attempts, refused URLs, no redirects."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest
from aiohttp import web

from server.app import create_app
from server.cli import main as cli_main
from server.settings import Settings
from tests.conftest import astronaut, collect, encode, submit, wait_until

FAST = (0.05,) * 6  # the retry waits in tests; the default schedule is minutes long


class Receiver:
    """A webhook receiver that answers with ``statuses`` in turn (then the last one for ever)."""

    def __init__(self, *statuses: int, hang: bool = False):
        self.statuses = list(statuses) or [200]
        self.hang = hang
        self.calls: list[dict] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append({"headers": dict(request.headers), "body": body, "path": request.path})
        if self.hang:
            await asyncio.Event().wait()
        status = self.statuses[min(len(self.calls), len(self.statuses)) - 1]
        if status in (301, 302, 307, 308):
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.Response(status=status, text="ok")

    async def start(self, aiohttp_server) -> "Receiver":
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        app.router.add_post("/elsewhere", self.handle)
        server = await aiohttp_server(app)
        self.url = str(server.make_url("/hook"))
        return self


def hooked(settings: Settings, **changes) -> Settings:
    return settings.with_overrides(allow_private_urls=True, **changes)


async def webhook_of(client, job_id: str) -> dict:
    return (await (await client.get(f"/api/v1/jobs/{job_id}")).json())["webhook"]


async def cancelled_job(client, url: str, how: str = "field") -> str:
    """Queue a job (no workers) with a webhook given ``how``, then cancel it: its end is 'cancelled'."""
    image = encode(astronaut(32))
    fields = {"webhookUrl": url} if how == "field" else {"settings": {"webhookUrl": url}}
    job_id = (await submit(client, image, **fields))["jobId"]
    assert (await client.delete(f"/api/v1/jobs/{job_id}")).status == 200
    return job_id


def secret_of(settings: Settings, capsys) -> str:
    assert cli_main(["webhooks", "secret", "--data-dir", str(settings.data_dir)]) == 0
    return capsys.readouterr().out.strip()


async def test_completed_job_posts_a_signed_body(aiohttp_client, aiohttp_server, settings, capsys):
    receiver = await Receiver(200).start(aiohttp_server)
    client = await aiohttp_client(create_app(hooked(settings)))
    job_id = (await submit(client, encode(astronaut(64)), webhookUrl=receiver.url))["jobId"]
    assert (await collect(client, job_id))[-1].event == "complete"
    hook = await wait_until(lambda: webhook_of(client, job_id), lambda h: h["delivered"], what="delivery")
    assert hook["url"] == receiver.url and hook["attempts"] == 1 and hook["lastStatus"] == 200
    [call] = receiver.calls
    body = json.loads(call["body"])
    assert body["event"] == "job.complete" and body["jobId"] == job_id and body["status"] == "complete"
    assert body["result"]["downloadUrl"] == f"/api/v1/download/{job_id}/photo_restored.jpg" and "error" not in body
    secret = secret_of(settings, capsys)
    expected = "sha256=" + hmac.new(secret.encode(), call["body"], hashlib.sha256).hexdigest()
    assert call["headers"]["X-Restora-Signature"] == expected
    assert call["headers"]["X-Restora-Delivery"] == hook["deliveryId"]
    assert call["headers"]["Content-Type"] == "application/json"
    # The webhook URL is not a tool parameter: the job's params do not carry it.
    snapshot = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
    assert "webhookUrl" not in snapshot["params"]


@pytest.mark.parametrize("how", ["field", "settings"])
async def test_cancelled_job_posts_its_end_whichever_way_the_url_came(aiohttp_client, aiohttp_server, settings, how):
    receiver = await Receiver(204).start(aiohttp_server)
    client = await aiohttp_client(create_app(hooked(settings, workers=0)))
    job_id = await cancelled_job(client, receiver.url, how)
    await wait_until(lambda: webhook_of(client, job_id), lambda h: h["delivered"], what="delivery")
    body = json.loads(receiver.calls[0]["body"])
    assert (body["event"], body["status"], body["error"]["code"]) == ("job.cancelled", "cancelled", "CANCELLED")


async def test_json_submission_takes_a_webhook_url(aiohttp_client, aiohttp_server, settings):
    receiver = await Receiver(200).start(aiohttp_server)
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=encode(astronaut(32)))

    images = web.Application()
    images.router.add_get("/a.jpg", image)
    image_server = await aiohttp_server(images)
    client = await aiohttp_client(create_app(hooked(settings, workers=0)))
    resp = await client.post("/api/v1/tools/restore-photo",
                             json={"imageUrl": str(image_server.make_url("/a.jpg")), "webhookUrl": receiver.url})
    assert resp.status == 202, await resp.json()
    job_id = (await resp.json())["jobId"]
    assert (await webhook_of(client, job_id)) == {"url": receiver.url, "attempts": 0, "lastStatus": None,
                                                  "lastError": None, "delivered": False, "nextAttemptAt": None}
    await client.delete(f"/api/v1/jobs/{job_id}")
    await wait_until(lambda: webhook_of(client, job_id), lambda h: h["delivered"], what="delivery")


async def test_a_job_without_webhook_shows_none(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    job_id = (await submit(client, encode(astronaut(32))))["jobId"]
    assert await webhook_of(client, job_id) is None


async def test_receiver_failing_twice_then_succeeding(aiohttp_client, aiohttp_server, settings):
    receiver = await Receiver(500, 503, 200).start(aiohttp_server)
    client = await aiohttp_client(create_app(hooked(settings, workers=0, webhook_backoff_s=FAST)))
    job_id = await cancelled_job(client, receiver.url)
    hook = await wait_until(lambda: webhook_of(client, job_id), lambda h: h["delivered"], what="delivery")
    assert hook["attempts"] == 3 and hook["lastStatus"] == 200 and hook["lastError"] is None
    assert len(receiver.calls) == 3
    # Every attempt is the same delivery: same id, same bytes, same signature.
    assert len({c["headers"]["X-Restora-Delivery"] for c in receiver.calls}) == 1
    assert len({(c["body"], c["headers"]["X-Restora-Signature"]) for c in receiver.calls}) == 1


async def test_gives_up_after_the_last_retry(aiohttp_client, aiohttp_server, settings):
    receiver = await Receiver(500).start(aiohttp_server)
    client = await aiohttp_client(create_app(hooked(settings, workers=0, webhook_backoff_s=(0.01, 0.01))))
    job_id = await cancelled_job(client, receiver.url)
    hook = await wait_until(lambda: webhook_of(client, job_id), lambda h: h["attempts"] == 3, what="3 attempts")
    assert hook["delivered"] is False and hook["lastStatus"] == 500 and hook["nextAttemptAt"] is None
    assert len(receiver.calls) == 3


async def test_delivery_resumes_after_a_restart(aiohttp_client, aiohttp_server, settings):
    receiver = await Receiver(500, 200).start(aiohttp_server)
    # First server: the retry would come an hour later; it stops before that.
    first = await aiohttp_client(create_app(hooked(settings, workers=0, webhook_backoff_s=(3600.0,) * 6)))
    job_id = await cancelled_job(first, receiver.url)
    hook = await wait_until(lambda: webhook_of(first, job_id), lambda h: h["attempts"] == 1, what="1st attempt")
    assert hook["lastStatus"] == 500 and hook["nextAttemptAt"] is not None and not hook["delivered"]
    await first.close()
    assert len(receiver.calls) == 1
    # Second server on the same data dir, with short waits: the pending delivery goes out.
    second = await aiohttp_client(create_app(hooked(settings, workers=0, webhook_backoff_s=FAST)))
    hook = await wait_until(lambda: webhook_of(second, job_id), lambda h: h["delivered"], what="delivery")
    assert hook["attempts"] == 2 and hook["lastStatus"] == 200
    assert receiver.calls[0]["headers"]["X-Restora-Delivery"] == receiver.calls[1]["headers"]["X-Restora-Delivery"]
    assert receiver.calls[0]["body"] == receiver.calls[1]["body"]


async def test_redirects_are_not_followed(aiohttp_client, aiohttp_server, settings):
    receiver = await Receiver(307).start(aiohttp_server)
    client = await aiohttp_client(create_app(hooked(settings, workers=0, webhook_backoff_s=())))
    job_id = await cancelled_job(client, receiver.url)
    hook = await wait_until(lambda: webhook_of(client, job_id), lambda h: h["attempts"] == 1, what="the attempt")
    assert hook["lastStatus"] == 307 and not hook["delivered"] and hook["nextAttemptAt"] is None
    assert [c["path"] for c in receiver.calls] == ["/hook"]


async def test_a_receiver_that_never_answers_times_out(aiohttp_client, aiohttp_server, settings):
    receiver = await Receiver(hang=True).start(aiohttp_server)
    client = await aiohttp_client(create_app(hooked(settings, workers=0, webhook_backoff_s=(), webhook_timeout_s=0.2)))
    job_id = await cancelled_job(client, receiver.url)
    hook = await wait_until(lambda: webhook_of(client, job_id), lambda h: h["attempts"] == 1, what="the attempt")
    assert hook["lastStatus"] is None and hook["lastError"] == "timed out" and not hook["delivered"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://[::1]:9/hook", "http://10.0.0.1/hook",
                                 "http://169.254.169.254/latest", "ftp://example.com/hook", "file:///etc/passwd",
                                 "http://user:pw@example.com/hook", "not a url", ""])
async def test_refused_webhook_urls_queue_nothing(aiohttp_client, settings, url):
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0)))
    body = await submit(client, encode(astronaut(32)), expect=400, webhookUrl=url)
    assert body["error"]["code"] == "INVALID_WEBHOOK_URL" and body["error"]["field"] == "webhookUrl"
    health = await (await client.get("/api/v1/health")).json()
    assert health["queueDepth"] == 0 and not any(settings.jobs_dir.iterdir())


def test_default_schedule_retries_at_least_six_times_over_ten_minutes(tmp_path):
    backoff = Settings(data_dir=tmp_path).webhook_backoff_s
    assert len(backoff) + 1 >= 6 and sum(backoff) >= 600


async def test_every_attempt_checks_the_address_again(aiohttp_client, settings, monkeypatch):
    """A name that was public at submission and points to loopback later (DNS rebinding) is refused
    at the attempt, before any connection."""
    import server.webhooks as webhooks

    connections = []
    canary = await asyncio.start_server(lambda r, w: connections.append(w.close()), "127.0.0.1", 0)
    port = canary.sockets[0].getsockname()[1]
    real, calls = webhooks.resolve_checked, []

    async def rebinding(host, port_, allow_private, what="image URL"):
        calls.append(host)
        if host == "hook.test" and len(calls) == 1:
            return ["93.184.215.14"]  # a public address: the submission is accepted
        return await real("127.0.0.1", port_, allow_private, what)

    monkeypatch.setattr(webhooks, "resolve_checked", rebinding)
    client = await aiohttp_client(create_app(settings.with_overrides(workers=0, webhook_backoff_s=())))
    job_id = await cancelled_job(client, f"http://hook.test:{port}/hook")
    hook = await wait_until(lambda: webhook_of(client, job_id), lambda h: h["attempts"] == 1, what="the attempt")
    assert hook["lastStatus"] is None and "non-public address (127.0.0.1)" in hook["lastError"]
    assert calls == ["hook.test", "hook.test"] and connections == []
    canary.close()
