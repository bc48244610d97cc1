"""Typed application keys: everything the handlers share lives in the app under one of these."""
from __future__ import annotations

import asyncio
from aiohttp import web

from pipelines.base import Step
from pipelines.registry import Registry
from pipelines.tools import Tool
from server.auth import KeyStore
from server.bundles.catalog import BundleCatalog
from server.capacity import QueuePlaces
from server.db import Store
from server.events import EventHub
from server.executor.base import Executor
from server.lifecycle import Lifecycle
from server.manager import JobManager
from server.settings import Settings
from server.signing import UrlSigner


SETTINGS = web.AppKey("settings", Settings)
TOOLS = web.AppKey("tools", Registry[Tool])
STEPS = web.AppKey("steps", Registry[Step])
BUNDLES = web.AppKey("bundles", BundleCatalog)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", EventHub)
EXECUTOR = web.AppKey("executor", Executor)
MANAGER = web.AppKey("manager", JobManager)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
# Places in the job queue held by submissions still being read.
QUEUE_PLACES = web.AppKey("queue_places", QueuePlaces)
# Bundle installs running in this process, by bundle name.
INSTALLS = web.AppKey("installs", dict)
KEYS = web.AppKey("keys", KeyStore)
SIGNER = web.AppKey("signer", UrlSigner)
# Bounds how many isolated header probes (child processes) run at once.
PROBES = web.AppKey("probes", asyncio.Semaphore)
# Rate limiters by group ("submit", "compat-restore"); None where unlimited.
LIMITS = web.AppKey("limits", dict)
# SUBMISSIONS (the submission service) is declared next to its class in server/submissions.py:
# the service uses the access checks, which read KEYS from here.
