"""A worker that breaks the protocol, or an event the manager cannot apply, never wedges a job."""
from __future__ import annotations

import logging
import sys
import textwrap

import pytest

from server.app import create_app
from server.executor import pool
from tests.conftest import astronaut, collect, encode, submit, wait_until

# The real worker, with its job runner replaced by one that sends what a broken worker might.
_FAULTY_WORKER = textwrap.dedent("""
    import sys, time
    from pipelines.imaging import isolated
    from server.executor import worker

    FAULT = sys.argv.pop(1)

    def faulty_run(self, job):
        job_id = job["job_id"]
        if FAULT == "long-line":
            self.channel.send("progress", jobId=job_id, stage="x" * (17 * 2**20), percent=1)
        elif FAULT == "not-json":
            self.channel.send_raw("this is not JSON")
        elif FAULT == "not-an-object":
            self.channel.send_raw("[1, 2]")
        elif FAULT == "no-stage":
            self.channel.send("progress", jobId=job_id, percent=1)
        elif FAULT == "bad-result":
            self.channel.send("done", jobId=job_id, result={"files": {}})
            return
        elif FAULT == "bad-percent":
            self.channel.send("progress", jobId=job_id, stage="Working...", percent="half")
            while job_id not in self.cancel_requests:
                time.sleep(0.05)
            self.channel.send("cancelled", jobId=job_id)
            return
        self.stopping.wait()  # a worker that lives on after its bad message

    def send_raw(self, line):
        with self._lock:
            self._stream.write(line + "\\n")
            self._stream.flush()

    def decoder_after_cancel(self, *args, make=worker.Worker._isolated_decoder):
        decode = make(self, *args)
        def after_cancel(path):
            while not self.cancel_requests:  # the cancel arrives while the photo is being decoded
                time.sleep(0.05)
            return decode(path)
        return after_cancel

    if FAULT == "decode-after-cancel":
        worker.Worker._isolated_decoder = decoder_after_cancel
    elif FAULT == "decoder-hangs":
        isolated.CHILD_COMMAND = (sys.executable, "-c", "import time; time.sleep(3600)")
    else:
        worker.Worker._run = faulty_run
    worker.Channel.send_raw = send_raw
    worker.main()
""")


@pytest.fixture
def faulty_worker(monkeypatch):
    def use(fault: str) -> None:
        monkeypatch.setattr(pool, "WORKER_COMMAND", (sys.executable, "-c", _FAULTY_WORKER, fault))
    return use


async def _job(client, job_id):
    return await (await client.get(f"/api/v1/jobs/{job_id}")).json()


async def _finished(client, job_id):
    """Wait for the job to end; before these fixes it stayed running for ever."""
    return await wait_until(lambda: _job(client, job_id), lambda s: s["status"] in ("complete", "failed"),
                            timeout=30, what=f"job {job_id} to finish")


async def _health(client):
    return await (await client.get("/api/v1/health")).json()


@pytest.mark.parametrize("fault", ["long-line", "not-json", "not-an-object", "no-stage"])
async def test_a_message_that_breaks_the_reader_ends_the_worker_and_loses_its_job(
        aiohttp_client, settings, faulty_worker, fault, caplog):
    faulty_worker(fault)
    client = await aiohttp_client(create_app(settings))
    body = await submit(client, encode(astronaut(64)))
    await _finished(client, body["jobId"])
    events = await collect(client, body["jobId"], last_event_id=0)
    # LOST, so the usual rule applies: retried once on a fresh worker, then failed.
    assert any("could not read" in e.data["stage"] and "retrying" in e.data["stage"] for e in events)
    assert events[-1].event == "failed" and events[-1].data["error"]["code"] == "WORKER_CRASHED"
    assert (await _job(client, body["jobId"]))["attempts"] == 2
    health = await wait_until(lambda: _health(client), lambda h: h["workers"][0]["state"] == "idle")
    assert health["workers"][0]["restarts"] == 2
    assert sum("could not read" in r.getMessage() and "stopping it" in r.getMessage()
               for r in caplog.records if r.name == "restora.pool") == 2


@pytest.mark.parametrize("fault", ["bad-result", "bad-percent"])
async def test_an_event_that_cannot_be_applied_fails_its_job(aiohttp_client, settings, faulty_worker, fault,
                                                               caplog):
    faulty_worker(fault)
    caplog.set_level(logging.ERROR, logger="restora.jobs")
    client = await aiohttp_client(create_app(settings))
    body = await submit(client, encode(astronaut(64)))
    await _finished(client, body["jobId"])
    events = await collect(client, body["jobId"], last_event_id=0)
    assert events[-1].event == "failed" and events[-1].data["error"]["code"] == "INTERNAL"
    assert (await _job(client, body["jobId"]))["status"] == "failed"
    # The worker is free again (a cancelled run ends, a finished one was already released).
    await wait_until(lambda: _health(client), lambda h: h["workers"][0]["state"] == "idle")
    tracebacks = [r for r in caplog.records if r.name == "restora.jobs" and r.exc_info]
    assert len(tracebacks) == 1


@pytest.mark.parametrize("fault", ["decode-after-cancel", "decoder-hangs"])
async def test_cancel_during_decode_ends_the_job_without_a_traceback(aiohttp_client, settings, faulty_worker,
                                                                   fault, capfd):
    faulty_worker(fault)
    client = await aiohttp_client(create_app(settings.with_overrides(cancel_grace_s=30.0)))
    body = await submit(client, encode(astronaut(64)))
    await wait_until(lambda: _job(client, body["jobId"]), lambda s: s["stage"] == "Decoding image...")
    assert (await (await client.delete(f"/api/v1/jobs/{body['jobId']}")).json())["status"] == "cancelled"
    # The worker ends the job itself (it is not killed after the cancel grace period).
    health = await wait_until(lambda: _health(client), lambda h: h["workers"][0]["state"] == "idle")
    assert health["workers"][0]["restarts"] == 0
    assert "Traceback" not in capfd.readouterr().err
    assert not (settings.jobs_dir / body["jobId"]).exists()
