"""``restora run TOOL INPUT...``: restore files and folders from the shell.

Without ``--server`` the command starts the real app inside itself (see :mod:`server.run_local`);
with ``--server URL`` it submits to a running Restora. Either way it drives the HTTP API with
:mod:`restora.client`: each file is one job, followed on its progress stream and its results
downloaded atomically. Exit status: 0 when every file succeeded, 1 when any failed, 2 for bad
usage (refused before any work), 130 when interrupted (its unfinished jobs are cancelled).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from restora.client import AsyncClient, RestoraError, result_filename
from server.run_display import Display, Outcome
from server.run_inputs import Item, OutputNames, check_request, collect_inputs, parse_params

_DESCRIPTION = """Restore files and folders with one of Restora's tools. Each file becomes a job with
the same parameters, checks, decoding, steps and output names as the HTTP API. Results are
written next to each input, or under --output-dir (a folder's sub-folders kept), as
NAME_<suffix>.<format> (restore-photo: NAME_restored.jpg).

Without --server, the command runs Restora itself for as long as it works: the same app as
`restora serve`, with its worker processes, on a private socket that only this command uses;
jobs live in a temporary folder, models come from --data-dir. With --server URL it sends the
files to that running server instead (--api-key, or $RESTORA_API_KEY, when it requires keys)."""
_EPILOG = """examples:
  restora run restore-photo examples/damaged-photo.jpg -o out/
  restora run restore-photo scans/ --recursive --set denoiseStrength=40 -o restored/
  restora run enhance photo.png --settings '{"scale": "2", "outputFormat": "webp"}'
  restora run upscale photo.jpg --server http://gpu-box:13490 --api-key KEY

exit status: 0 every file succeeded, 1 one or more failed, 2 bad usage, 130 interrupted."""


@dataclass(frozen=True)
class RunRequest:
    tool: str
    params: dict[str, Any]
    items: list[Item]


def add_run_command(sub: argparse._SubParsersAction) -> None:
    # Not the common --data-dir: here it holds only the models (jobs live in a temporary folder).
    run = sub.add_parser("run", help="restore files and folders from the shell",
                         description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--data-dir", help="the data dir whose models (installed bundles) a local run uses "
                     "(default: $RESTORA_DATA_DIR or a per-user data folder)")
    run.add_argument("tool", metavar="TOOL", help="restore-photo, enhance, upscale, face-enhance, colorize, remove-bg")
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and folders")
    run.add_argument("-o", "--output-dir", type=Path, help="write results here (default: next to each input)")
    run.add_argument("--settings", metavar="JSON", help="the tool's parameters as a JSON object")
    run.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                     help="one parameter (repeatable; applied over --settings)")
    run.add_argument("-r", "--recursive", action="store_true", help="also take images in sub-folders")
    run.add_argument("--server", metavar="URL", help="send the files to this running Restora")
    run.add_argument("--api-key", default=os.environ.get("RESTORA_API_KEY"), help="API key for --server")
    run.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    run.add_argument("--device", default="auto", help="local device: auto | cpu | cuda:N")
    run.add_argument("--no-embedded-default", dest="install_embedded", action="store_false",
                     help="do not install the embedded x4plus model at start when it is missing")
    run.add_argument("--parallel", type=int, help="files in flight at once (default: workers + 1; 4 with --server)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="show the local server's log (on a terminal it is otherwise hidden behind the bars)")
    run.set_defaults(run=run_command)


def run_command(args: argparse.Namespace, data_dir: Path) -> int:
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        if args.workers < 1 or (args.parallel is not None and args.parallel < 1):
            raise RestoraError("INVALID_OPTION", "--workers and --parallel must be at least 1.")
        request = RunRequest(args.tool, parse_params(args.settings, args.assignments),
                             collect_inputs(args.inputs, args.output_dir, args.recursive))
    except RestoraError as exc:
        return _refused(exc)
    try:
        return asyncio.run(_remote(args, request) if args.server else _local(args, data_dir, request))
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: unfinished jobs were cancelled\n")
        return 130


async def _local(args: argparse.Namespace, data_dir: Path, request: RunRequest) -> int:
    from pipelines.tools import build_tool_registry
    from server.run_local import local_server, run_settings, scratch_dir, server_log_to

    registry = build_tool_registry()  # what GET /api/v1/tools of the app below answers
    try:
        check_request([registry.get(name).describe() for name in registry], request.tool, request.params)
    except RestoraError as exc:
        return _refused(exc)
    manifests = os.environ.get("RESTORA_MANIFESTS_DIR")
    hide_log = sys.stderr.isatty() and not args.verbose
    with scratch_dir() as scratch, server_log_to(Path(scratch) / "server.log" if hide_log else None) as progress:
        settings = run_settings(Path(scratch), data_dir / "models", args.workers, args.device,
                                args.install_embedded, Path(manifests) if manifests else None)
        async with local_server(settings) as client:
            return await _run_all(client, request, args.parallel or args.workers + 1, progress)


async def _remote(args: argparse.Namespace, request: RunRequest) -> int:
    async with AsyncClient(args.server, api_key=args.api_key) as client:
        try:
            check_request(await client.tools(), request.tool, request.params)
        except RestoraError as exc:
            # Refused (an unknown tool, a missing key): bad usage. No answer or a server error: a failure.
            return _refused(exc) if exc.status is not None and exc.status < 500 else _failed(exc)
        return await _run_all(client, request, args.parallel or 4, sys.stderr)


async def _run_all(client: AsyncClient, request: RunRequest, parallel: int, progress: TextIO) -> int:
    display = Display(sys.stdout, progress, [item.source for item in request.items], tty=progress.isatty())
    gate, names, unfinished = asyncio.Semaphore(parallel), OutputNames(), set()
    tasks = [_restore(client, request, item, display, gate, names, unfinished) for item in request.items]
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:  # Ctrl-C: the jobs this run queued must not run on without it
        if unfinished:  # best effort, for at most 10 s
            cancels = asyncio.gather(*(client.cancel(job) for job in unfinished), return_exceptions=True)
            await asyncio.wait([cancels], timeout=10)
        raise
    display.summary(request.tool)
    return 1 if any(outcome.error for outcome in display.outcomes) else 0


async def _restore(client: AsyncClient, request: RunRequest, item: Item, display: Display,
                   gate: asyncio.Semaphore, names: OutputNames, unfinished: set[str]) -> None:
    async with gate:
        display.started(item.source)
        outcome, job_id = Outcome(item.source), None
        try:
            job_id = (await client.submit(request.tool, item.source, request.params))["jobId"]
            unfinished.add(job_id)
            result = await client.wait(job_id, lambda event: display.event(item.source, event))
            unfinished.discard(job_id)
            display.stage(item.source, "Downloading")
            for url in _result_urls(result):
                dest = names.claim(item.dest_dir, result_filename(url))
                dest.parent.mkdir(parents=True, exist_ok=True)
                outcome.outputs.append(await client.download(url, dest))
        except RestoraError as exc:
            unfinished.discard(job_id)
            outcome.error = exc
        except OSError as exc:  # reading the input, writing a result
            outcome.error = RestoraError("FILE_ERROR", f"{exc.strerror or exc}: {exc.filename or item.source}")
        display.finished(outcome)


def _result_urls(result: dict[str, Any]) -> list[str]:
    """The main result, then any others (remove-bg's mask, enhance's background-removed copy)."""
    results = result.get("results") or [{"downloadUrl": result["downloadUrl"]}]
    return [entry["downloadUrl"] for entry in results]


def _refused(error: RestoraError) -> int:
    _write_error(error)
    return 2


def _failed(error: RestoraError) -> int:
    _write_error(error)
    return 1


def _write_error(error: RestoraError) -> None:
    status = f" ({error.status})" if error.status else ""
    sys.stderr.write(f"restora run: {error.code}{status}: {error.message}\n")
    for problem in error.details.get("fields", []):
        sys.stderr.write(f"  {problem.get('field')}: {problem.get('message')}\n")
