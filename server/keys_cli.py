"""``restora keys create NAME | list | revoke NAME``."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from server.auth import KeyStore
from server.settings import Settings


def add_key_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke API keys")
    verbs = keys.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", parents=[common], help="create a key and print it (only this once)")
    create.add_argument("name")
    create.set_defaults(run=_create)
    verbs.add_parser("list", parents=[common], help="list keys (never the keys themselves)").set_defaults(run=_list)
    revoke = verbs.add_parser("revoke", parents=[common], help="revoke a key by name or id")
    revoke.add_argument("name")
    revoke.set_defaults(run=_revoke)


def _store(data_dir: Path) -> KeyStore:
    return KeyStore(Settings(data_dir=data_dir).db_path)


def _create(args: argparse.Namespace, data_dir: Path) -> int:
    try:
        key, record = _store(data_dir).create(args.name)
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stderr.write(f"Created key '{record.name}' (id {record.id}). It is shown only now; store it safely:\n")
    sys.stdout.write(key + "\n")
    return 0


def _list(args: argparse.Namespace, data_dir: Path) -> int:
    for key in _store(data_dir).list():
        created = datetime.fromtimestamp(key.created_at).isoformat(timespec="seconds")
        state = "revoked" if key.revoked_at else "active"
        sys.stdout.write(f"{key.id}  {key.name:<24} {key.prefix}…  {state:<8} created {created}\n")
    return 0


def _revoke(args: argparse.Namespace, data_dir: Path) -> int:
    if not _store(data_dir).revoke(args.name):
        sys.stderr.write(f"error: no active key named or with id '{args.name}'\n")
        return 1
    sys.stdout.write(f"revoked {args.name}\n")
    return 0
