"""A network partition behaves like a death: a worker host in its own network namespace holds a job,
its link is cut (``ip link set down``), another host finishes the job; when the link comes back the
cut-off host changes nothing. Needs root and ``ip netns``; skipped elsewhere."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import aiohttp
import pytest

from tests.broker_cluster import Cluster, require_redis, wait_for
from tests.conftest import astronaut, encode

pytestmark = pytest.mark.slow


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture
def namespace():
    """(namespace, API-side link, the API side's address) for a veth pair into a fresh namespace."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("the partition test needs root and iproute2 (ip netns) to cut a worker host's link")
    tag = uuid.uuid4().hex[:6]
    name, outside, inside = f"rst-{tag}", f"rsa{tag}", f"rsb{tag}"
    subnet = int(tag[:2], 16)
    if _ip("netns", "add", name).returncode != 0:
        pytest.skip("network namespaces are not available here (ip netns add failed)")
    try:
        for command in (("link", "add", outside, "type", "veth", "peer", "name", inside),
                        ("link", "set", inside, "netns", name),
                        ("addr", "add", f"10.231.{subnet}.1/30", "dev", outside), ("link", "set", outside, "up"),
                        ("-n", name, "addr", "add", f"10.231.{subnet}.2/30", "dev", inside),
                        ("-n", name, "link", "set", inside, "up"), ("-n", name, "link", "set", "lo", "up")):
            done = _ip(*command)
            if done.returncode != 0:
                pytest.skip(f"could not set up the namespace's link (ip {' '.join(command)}: {done.stderr.strip()})")
        yield name, outside, f"10.231.{subnet}.1"
    finally:
        _ip("link", "del", outside)
        _ip("netns", "del", name)


async def test_a_cut_link_behaves_like_a_dead_host(tmp_path, namespace):
    require_redis()
    name, link, address = namespace
    async with aiohttp.ClientSession() as session:
        cluster = Cluster(tmp_path, session, bind=f"127.0.0.1 {address}")
        try:
            await cluster.start(hosts=0)
            broker = f"redis://{address}:{cluster.redis.port}/0"
            cluster.add_host("cut-off", broker=broker, api_base=f"http://{address}:{cluster.api.port}",
                             wrapper=("ip", "netns", "exec", name))
            await cluster.wait_for_hosts(["cut-off"])
            body = await cluster.submit(encode(astronaut(64)))
            assert await cluster.held_on(body["jobId"], attempt=1) == "cut-off"
            cluster.add_host("survivor")
            await cluster.wait_for_hosts(["survivor"])
            assert _ip("link", "set", link, "down").returncode == 0
            assert await cluster.held_on(body["jobId"], attempt=2) == "survivor"
            cluster.release.touch()
            events = await cluster.events(body["jobId"], last_event_id=0)
            assert events[-1].event == "complete"
            assert _ip("link", "set", link, "up").returncode == 0  # it wakes holding a job it lost
            await wait_for(cluster.health, lambda h: any(w["name"] == "cut-off" and w["state"] == "idle"
                                                         for w in h["workers"]),
                           timeout=180, what="the cut-off host to come back and drop its attempt")
            after = await cluster.events(body["jobId"], last_event_id=0)
            assert after == events and sum(e.event == "complete" for e in after) == 1
            snapshot = await cluster.job(body["jobId"])
            assert snapshot["attempts"] == 2 and snapshot["worker"] == "survivor"
        finally:
            cluster.stop()
