"""The worker process: runs one job at a time, reports progress as JSON lines.

Protocol (one JSON object per line):
  pool -> worker on stdin:  {"op": "run", "job": {...}} | {"op": "cancel", "jobId"} | {"op": "stop"}
  worker -> pool on the original stdout: ready, progress, done, failed, cancelled, interrupted.
File descriptor 1 is redirected to stderr at start so that nothing a library prints can corrupt
the protocol. When stdin closes (the server died, even by SIGKILL) the worker exits at once.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, TextIO

from pipelines.base import Cancelled, InvalidStepParams, PipelineError
from pipelines.imaging.isolated import decode_isolated
from pipelines.models.precision_cache import PrecisionCache
from pipelines.runner import RunRequest, run_tool_job
from pipelines.steps import build_step_registry
from server.bundles.catalog import BundleCatalog
from server.executor.models import InstalledModels

log = logging.getLogger("restora.worker")
_PROGRESS_MIN_INTERVAL_S = 0.1


class Channel:
    """The protocol stream back to the pool; thread-safe, one line per message."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message_type: str, **fields: Any) -> None:
        line = json.dumps({"type": message_type, **fields})
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class Worker:
    def __init__(self, config: dict[str, Any], channel: Channel):
        self.config = config
        self.channel = channel
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        # Cancels may arrive before the job starts; remember them by id.
        self.cancel_requests: set[str] = set()
        self.stopping = threading.Event()
        self.steps = build_step_registry()
        self.device = "cpu"
        self.models: InstalledModels | None = None

    def serve(self) -> None:
        from server.executor.runtime import configure_runtime

        self.device = configure_runtime(self.config)
        catalog = BundleCatalog.open(Path(self.config["modelsDir"]),
                                     Path(self.config["manifestsDir"]) if self.config.get("manifestsDir") else None)
        cache = self.config.get("precisionCache")
        self.models = InstalledModels(catalog, self.device, int(self.config["threads"]),
                                      PrecisionCache(Path(cache)) if cache else None)
        if "background-removal" in catalog.installed_names():
            # Importing rembg takes seconds even with its kernels compiled: not on a job's clock.
            threading.Thread(target=_warm_rembg, name="warm-rembg", daemon=True).start()
        threading.Thread(target=self._read_commands, name="commands", daemon=True).start()
        self.channel.send("ready", pid=os.getpid(), device=self.device, threads=self.config["threads"])
        while not self.stopping.is_set():
            command = self.commands.get()
            if command.get("op") == "run":
                self._run(command["job"])

    def _read_commands(self) -> None:
        for line in sys.stdin:
            command = json.loads(line)
            op = command.get("op")
            if op == "cancel":
                self.cancel_requests.add(command["jobId"])
            elif op == "stop":
                self.stopping.set()
                self.commands.put({"op": "stop"})
            elif op == "run":
                self.commands.put(command)
        # stdin closed: the server is gone; nobody will read our results.
        os._exit(0)

    def _run(self, job: dict[str, Any]) -> None:
        job_id = job["job_id"]
        reporter = _ProgressReporter(self.channel, job_id)

        def is_cancelled() -> bool:
            return job_id in self.cancel_requests or self.stopping.is_set()
        try:
            request = RunRequest.from_message(job)
            result = run_tool_job(
                request, self.steps, report=reporter, is_cancelled=is_cancelled, device=self.device,
                models=self.models, decode=self._isolated_decoder(request.output_dir, is_cancelled))
            self.channel.send("done", jobId=job_id, result=result)
        except Cancelled:
            self.channel.send("interrupted" if self.stopping.is_set() else "cancelled", jobId=job_id)
        except PipelineError as exc:
            if isinstance(exc, InvalidStepParams):  # a tool planned a call its step refuses: a bug
                log.error("job %s: %s %s", job_id, exc.message, exc.details)
            self.channel.send("failed", jobId=job_id, code=exc.code, message=exc.message, details=exc.details)
        except MemoryError:
            self.channel.send("failed", jobId=job_id, code="OUT_OF_MEMORY",
                              message="The image needs more memory than this machine has free.")
        except Exception:  # report, never swallow: the traceback goes to the server log
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            self.channel.send("failed", jobId=job_id, code="INTERNAL",
                              message="An internal error stopped this job; the server log has details.")
        finally:
            self.cancel_requests.discard(job_id)

    def _isolated_decoder(self, work_dir: Path, is_cancelled: Callable[[], bool]):
        """Untrusted bytes are decoded in a limited child: a decoder crash fails the job, not us.
        A cancel stops the child at once (a decode may take longer than the cancel grace period)."""
        def decode(path: Path):
            return decode_isolated(path, work_dir, timeout_s=float(self.config["decodeTimeout"]),
                                   max_pixels=int(self.config["maxPixels"]), is_cancelled=is_cancelled)
        return decode


def _warm_rembg() -> None:
    from pipelines.models.rembg_sessions import warm_up_rembg

    warm_up_rembg()


class _ProgressReporter:
    """Throttles progress: a message when the stage changes or the percent moves, at most ~10/s."""

    def __init__(self, channel: Channel, job_id: str):
        self._channel, self._job_id = channel, job_id
        self._last: tuple[str, int] = ("", -1)
        self._last_sent = 0.0

    def __call__(self, percent: float, stage: str) -> None:
        rounded = int(percent)
        now = time.monotonic()
        changed_stage = stage != self._last[0]
        if not changed_stage and (rounded == self._last[1] or now - self._last_sent < _PROGRESS_MIN_INTERVAL_S):
            return
        self._last, self._last_sent = (stage, rounded), now
        self._channel.send("progress", jobId=self._job_id, stage=stage, percent=rounded)


def main() -> None:
    config = json.loads(sys.argv[1])
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s worker-{config['index']} %(levelname)s %(name)s: %(message)s")
    Worker(config, Channel(protocol)).serve()


if __name__ == "__main__":
    main()
