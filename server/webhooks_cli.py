"""``restora webhooks secret``: print the key that signs webhook deliveries."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server.webhooks import load_secret


def add_webhook_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    hooks = sub.add_parser("webhooks", help="webhook deliveries")
    verbs = hooks.add_subparsers(dest="verb", required=True)
    verbs.add_parser("secret", parents=[common], help="print the secret that signs webhook bodies "
                     "(X-Restora-Signature: sha256=HMAC-SHA256 of the body under this text)").set_defaults(run=_secret)


def _secret(args: argparse.Namespace, data_dir: Path) -> int:
    sys.stdout.write(load_secret(data_dir) + "\n")
    return 0
