"""``restora worker``: run a worker host that takes jobs from the broker (server/worker_host.py)."""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from pathlib import Path

from server.worker_host import HostConfig, WorkerHost
from server.worker_token import read_worker_token


def add_worker_command(sub, common: argparse.ArgumentParser) -> None:
    worker = sub.add_parser("worker", parents=[common],
                            help="run a worker host: take jobs from the broker and run them here")
    worker.add_argument("--broker", default=os.environ.get("RESTORA_BROKER"), required="RESTORA_BROKER" not in os.environ,
                        help="redis://HOST:PORT/DB, the same as the API's --broker")
    worker.add_argument("--api", required=True, help="the API's base URL, e.g. http://api:13490")
    worker.add_argument("--token-file", required=True, type=Path,
                        help="a copy of the API's DATA_DIR/worker-token (keep it 0600)")
    worker.add_argument("--name", default=socket.gethostname(), help="this host's name in health (unique)")
    worker.add_argument("--device", default="auto", help="auto | cpu | cuda:N")
    worker.add_argument("--slots", type=int, default=1, help="worker processes, one job each")
    worker.add_argument("--lock-seconds", type=float, default=30.0,
                        help="BullMQ lock: how long a silent host keeps a job before another host takes it "
                        "(renewed every quarter of it; it does not limit how long a job runs)")
    worker.set_defaults(run=_run)


def _run(args: argparse.Namespace, data_dir: Path) -> int:
    if args.slots < 1:
        raise SystemExit("--slots must be at least 1")
    config = HostConfig(broker=args.broker, api=args.api, token=read_worker_token(args.token_file),
                        data_dir=data_dir, name=args.name, device=args.device, slots=args.slots,
                        lock_s=args.lock_seconds)
    asyncio.run(_serve(WorkerHost(config)))
    return 0


async def _serve(host: WorkerHost) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, host.stop)
    await host.serve()
